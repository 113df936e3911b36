package vm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
)

// Limits on the machine's size. QEMU accepts more, but a microVM for one
// application that asks for more is almost certainly a typo.
const (
	MinMemoryMiB = 32
	MaxMemoryMiB = 1 << 20
	MaxCPUs      = 255
)

// Device slots for drives, shares and NICs. microvm has 8 virtio-mmio
// transports without ACPI and 24 with it (a second I/O APIC); Arrow's
// serial port and RNG take two.
const (
	MaxDevices     = 6
	MaxDevicesACPI = 22
)

// Config describes one VM.
type Config struct {
	// QEMU is the qemu-system-x86_64 binary; see [FindQEMU].
	QEMU string
	// Kernel is the guest kernel: an ELF vmlinux (booted through PVH) or
	// a bzImage.
	Kernel string
	// Initrd is the initramfs holding the guest's root file system.
	Initrd string
	// Cmdline is appended to the kernel command line Arrow sets.
	Cmdline string
	// MemoryMiB is the guest's RAM.
	MemoryMiB int
	// CPUs is the number of vCPUs.
	CPUs int
	// Accel is the accelerator, from [DetectAccel].
	Accel Accel
	// ACPI describes the devices to the guest through ACPI tables, for
	// kernels that cannot take virtio-mmio devices from their command
	// line (distribution kernels). Arrow's own kernel does not need it,
	// and booting without it is faster.
	ACPI bool
	// Verbose lets the kernel log to the console at its normal level
	// instead of only errors.
	Verbose bool
	// Jail, when set, confines QEMU and its virtiofsd processes (see
	// [Jail] and package jail). Without it they run as the caller, with
	// QEMU's own seccomp sandbox only: for debugging, or a caller who is
	// not root.
	Jail *Jail
	// Drives are disk images the guest sees as virtio block devices.
	Drives []Drive
	// Shares are host directories the guest can mount (volumes).
	Shares []Share
	// Virtiofsd is the virtiofsd binary serving virtiofs shares;
	// [DefaultVirtiofsd] when empty.
	Virtiofsd string
	// Memory, when set, backs the guest's RAM with a file: a VM
	// template's RAM, or a clone's copy-on-write view of it (vm/snapshot.go).
	Memory *MemoryFile
	// Incoming starts QEMU waiting for a saved state instead of booting
	// (see [Machine.Restore]).
	Incoming bool
	// NICs are the guest's network cards (virtio-net); none leaves the
	// guest with its loopback interface only.
	NICs []NIC
}

// Drive is a disk image attached as a virtio block device. The guest finds
// it by Serial in /sys/block/vd*/serial (guest.Root.Device): the order of
// /dev/vd* names is the kernel's probing order, not a promise.
type Drive struct {
	// Path is the raw image file (an erofs image from image/rootfs, say)
	// or a block device. Arrow opens it with its own credentials and
	// passes QEMU the open file, so a jailed QEMU needs no access to it.
	Path string
	// Serial is the virtio-blk serial number the guest sees: 1 to 20
	// bytes of A-Z a-z 0-9 . _ -. Optional, but the only stable name.
	Serial string
	// ReadOnly opens the image read-only, for QEMU as for the guest:
	// nothing the guest does can change it.
	ReadOnly bool
	// Cache is QEMU's cache mode: writeback (the default: the host page
	// cache, shared by every VM reading the same image), none (O_DIRECT),
	// writethrough, directsync or unsafe.
	Cache string
}

// Share transports, as guest.Mount.FSType names them.
const (
	// ShareVirtiofs serves a share with virtiofsd, a process Arrow starts
	// as itself (root) next to QEMU. Files the guest creates get the
	// guest's uid and gid on the host. It needs root, and costs the VM a
	// shared-memory RAM backend.
	ShareVirtiofs = "virtiofs"
	// Share9P serves a share from QEMU itself (virtio-9p, security model
	// none): files the guest creates belong to the user QEMU runs as,
	// ownership changes are ignored. It works without root, and not in
	// a jail, where QEMU sees no host directory.
	Share9P = "9p"
)

// Share is a host directory exported to the guest under a mount tag.
type Share struct {
	// Tag is the name the guest mounts it by (guest.Mount.Tag): 1 to 36
	// bytes of A-Z a-z 0-9 . _ -, unique in the VM.
	Tag string
	// Path is the absolute host directory. Symbolic links in it are
	// resolved when the VM starts.
	Path string
	// ReadOnly makes the share read-only on the host side: for virtiofs,
	// virtiofsd sees the directory through a read-only bind mount in a
	// mount namespace of its own; for 9p, QEMU refuses writes. A guest
	// remounting it read-write gains nothing.
	ReadOnly bool
	// FS is the transport: [ShareVirtiofs] or [Share9P]. See [ShareFS].
	FS string
}

// DefaultVirtiofsd is where Debian's qemu-system-common installs virtiofsd.
const DefaultVirtiofsd = "/usr/lib/qemu/virtiofsd"

// VirtiofsdPackage is the Debian package that provides [DefaultVirtiofsd].
const VirtiofsdPackage = "qemu-system-common"

// ShareFS returns the share transport this host supports best, and why:
// virtiofs when Arrow runs as root and virtiofsd is installed, 9p
// otherwise.
func ShareFS() (fs, reason string) {
	if os.Geteuid() != 0 {
		return Share9P, "not root: virtiofsd needs root to sandbox itself and give files the guest's owners"
	}
	if fi, err := os.Stat(DefaultVirtiofsd); err != nil || !fi.Mode().IsRegular() {
		return Share9P, DefaultVirtiofsd + " not found (package " + VirtiofsdPackage + ")"
	}
	return ShareVirtiofs, "root, and " + DefaultVirtiofsd + " is installed"
}

// virtiofs reports whether c has a virtiofs share: the guest's RAM must
// then be shareable with virtiofsd.
func (c Config) virtiofs() bool {
	for _, s := range c.Shares {
		if s.FS == ShareVirtiofs {
			return true
		}
	}
	return false
}

// DeviceSlots returns how many virtio-mmio device slots c's drives, shares
// and network cards need, and how many the machine has for them.
func (c Config) DeviceSlots() (need, have int) {
	have = MaxDevices
	if c.ACPI {
		have = MaxDevicesACPI
	}
	return len(c.Drives) + len(c.Shares) + len(c.NICs), have
}

// Validate checks the parts of c a user sets.
func (c Config) Validate() error {
	switch {
	case c.Kernel == "":
		return errors.New("no guest kernel")
	case c.Initrd == "":
		return errors.New("no initramfs")
	case c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > MaxMemoryMiB:
		return fmt.Errorf("memory %d MiB: want %d MiB to %d MiB", c.MemoryMiB, MinMemoryMiB, MaxMemoryMiB)
	case c.CPUs < 1 || c.CPUs > MaxCPUs:
		return fmt.Errorf("cpus %d: want 1 to %d", c.CPUs, MaxCPUs)
	case c.Accel.Name != AccelKVM && c.Accel.Name != AccelTCG:
		return fmt.Errorf("accelerator %q: want kvm or tcg", c.Accel.Name)
	}
	if err := c.validateSnapshot(); err != nil {
		return err
	}
	if need, have := c.DeviceSlots(); need > have {
		return fmt.Errorf("%d drives, %d shares and %d network cards: the machine has room for %d in all", len(c.Drives), len(c.Shares), len(c.NICs), have)
	}
	if len(c.NICs) > MaxNICs {
		return fmt.Errorf("%d network cards, at most %d", len(c.NICs), MaxNICs)
	}
	if c.Jail != nil {
		for _, n := range c.NICs {
			if n.User == nil {
				continue
			}
			for _, f := range n.User.Forwards {
				if f.Protocol() == api.UDP && f.HostPort < UnprivilegedPortStart() {
					return fmt.Errorf("publish %s: a UDP port below %d cannot be published from the VM's jail (QEMU opens it as its own unprivileged uid, which may not bind below %d): use a host port of %d or more", hostfwd(f), UnprivilegedPortStart(), UnprivilegedPortStart(), UnprivilegedPortStart())
				}
			}
		}
	}
	macs := make(map[string]bool, len(c.NICs))
	for i, n := range c.NICs {
		if err := n.validate(); err != nil {
			return fmt.Errorf("network card %d: %w", i, err)
		}
		if macs[n.MAC] {
			return fmt.Errorf("network card %d: MAC %s used twice", i, n.MAC)
		}
		macs[n.MAC] = true
	}
	serials := make(map[string]bool, len(c.Drives))
	for i, d := range c.Drives {
		if err := d.validate(); err != nil {
			return fmt.Errorf("drive %d: %w", i, err)
		}
		if d.Serial != "" && serials[d.Serial] {
			return fmt.Errorf("drive %d: serial %q used twice", i, d.Serial)
		}
		serials[d.Serial] = true
	}
	tags := make(map[string]bool, len(c.Shares))
	for _, s := range c.Shares {
		if err := s.validate(); err != nil {
			return err
		}
		if s.FS == Share9P && c.Jail != nil {
			return fmt.Errorf("share %s: 9p is served by QEMU itself, which sees no host directory in its jail: install virtiofsd (package %s)", s.Tag, VirtiofsdPackage)
		}
		if tags[s.Tag] {
			return fmt.Errorf("share tag %q used twice", s.Tag)
		}
		tags[s.Tag] = true
	}
	return nil
}

func (d Drive) validate() error {
	switch {
	case !filepath.IsAbs(d.Path):
		return fmt.Errorf("image path %q is not absolute", d.Path)
	case d.Serial != "" && !guest.IsSerial(d.Serial):
		return fmt.Errorf("serial %q: want 1 to 20 of A-Z a-z 0-9 . _ -", d.Serial)
	}
	switch d.Cache {
	case "", "writeback", "none", "writethrough", "directsync", "unsafe":
		return nil
	}
	return fmt.Errorf("cache mode %q: want writeback, none, writethrough, directsync or unsafe", d.Cache)
}

func (s Share) validate() error {
	switch {
	case !guest.IsMountTag(s.Tag):
		return fmt.Errorf("share tag %q: want 1 to 36 of A-Z a-z 0-9 . _ -", s.Tag)
	case s.FS != ShareVirtiofs && s.FS != Share9P:
		return fmt.Errorf("share %s: transport %q: want %s or %s", s.Tag, s.FS, ShareVirtiofs, Share9P)
	case !filepath.IsAbs(s.Path):
		return fmt.Errorf("share %s: host path %q is not absolute", s.Tag, s.Path)
	case strings.IndexByte(s.Path, 0) >= 0:
		return fmt.Errorf("share %s: host path %q contains a NUL byte", s.Tag, s.Path)
	}
	return nil
}

// KernelCmdline is the guest kernel command line for c.
//
// reboot=t makes the guest's reset a triple fault, which with QEMU's
// -no-reboot ends QEMU at once: that is how arrow-init powers off, since
// microvm without ACPI has no power-off device. panic=-1 turns a guest
// panic into the same immediate exit instead of a hang.
//
// no_timer_check skips the kernel's check that the IO-APIC timer ticks
// during a short calibration window. Under TCG on a loaded host the vCPU
// may not run for that whole window, and the check then panics ("IO-APIC +
// timer doesn't work!"): seen with ten VMs booting at once on two cores.
// Virtual machines' timers are known good, which is why cloud images set
// it too.
func (c Config) KernelCmdline() string {
	args := []string{"console=ttyS0", "reboot=t", "panic=-1", "no_timer_check", "rdinit=/init"}
	if !c.Verbose {
		args = append(args, "quiet")
	}
	if c.Cmdline != "" {
		args = append(args, c.Cmdline)
	}
	return strings.Join(args, " ")
}

// Args returns QEMU's arguments for c, its inherited descriptors numbered
// as [Start] numbers them: template and clone compare their command lines
// through it.
func (c Config) Args() []string {
	_, fds := c.number(guestFiles{})
	return c.args(fds)
}

// args returns QEMU's arguments for c, naming its inherited files by fds.
func (c Config) args(fds qemuFDs) []string {
	accel := "kvm"
	cpu := "host"
	if c.Accel.Name == AccelTCG {
		accel = "tcg"
		cpu = "max"
	}
	machine := "microvm,x-option-roms=off,acpi=" + onOff(c.ACPI)
	if c.virtiofs() || c.Memory != nil {
		machine += ",memory-backend=mem"
	}
	args := []string{
		// ACPI off and no option ROMs: measured faster to boot, and
		// neither is needed by a guest that only has virtio-mmio devices.
		"-M", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot",
		"-kernel", fdPath(fds.kernel),
		"-initrd", fdPath(fds.initrd),
		"-append", c.KernelCmdline(),
		"-chardev", "socket,id=console,fd=" + strconv.Itoa(fds.console),
		"-serial", "chardev:console",
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=control,fd=" + strconv.Itoa(fds.control),
		"-device", "virtserialport,chardev=control,name=arrow.0",
		"-device", "virtio-rng-device",
		"-chardev", "socket,id=qmp,fd=" + strconv.Itoa(fds.qmp),
		"-mon", "chardev=qmp,mode=control",
		"-sandbox", c.sandbox(),
	}
	for i, d := range c.Drives {
		args = append(args, d.args(i, fds.drives[i])...)
	}
	if c.virtiofs() {
		// vhost-user hands virtiofsd the guest's memory: it must be a
		// shareable memfd. vhost-user-fs also needs modern (version 2)
		// virtio-mmio transports, where microvm defaults to legacy ones.
		args = append(args,
			"-object", "memory-backend-memfd,id=mem,size="+strconv.Itoa(c.MemoryMiB)+"M,share=on",
			"-global", "virtio-mmio.force-legacy=false")
	}
	for i, s := range c.Shares {
		args = append(args, s.args(i, fds.shares[i])...)
	}
	for i, n := range c.NICs {
		args = append(args, n.args(i, fds.nics[i], c.Jail != nil)...)
	}
	args = append(args, c.snapshotArgs(fds.memory)...)
	return args
}

// cacheMode is d's QEMU cache mode: d.Cache, writeback when empty.
func (d Drive) cacheMode() string {
	if d.Cache == "" {
		return "writeback"
	}
	return d.Cache
}

// driveNode is the node name of drive i's format (raw) node.
func driveNode(i int) string { return "drive" + strconv.Itoa(i) + "-raw" }

// args are QEMU's arguments for drive i, whose image QEMU inherits on fd:
// an fd set of its own that the drive opens through /dev/fdset.
func (d Drive) args(i, fd int) []string {
	cache := d.cacheMode()
	id := "drive" + strconv.Itoa(i)
	set := strconv.Itoa(i + 1)
	// The format node is named so that SwapDrive can point it at
	// another image.
	drive := "if=none,id=" + id + ",node-name=" + driveNode(i) + ",file=/dev/fdset/" + set + ",format=raw,cache=" + cache
	if d.ReadOnly {
		drive += ",readonly=on"
	}
	dev := "virtio-blk-device,drive=" + id
	if d.Serial != "" {
		dev += ",serial=" + d.Serial
	}
	return []string{"-add-fd", "fd=" + strconv.Itoa(fd) + ",set=" + set, "-drive", drive, "-device", dev}
}

// args are QEMU's arguments for share i; a virtiofs share's vhost-user
// socket is inherited on fd.
func (s Share) args(i, fd int) []string {
	id := "share" + strconv.Itoa(i)
	if s.FS == ShareVirtiofs {
		return []string{
			"-chardev", "socket,id=" + id + ",fd=" + strconv.Itoa(fd),
			"-device", "vhost-user-fs-device,chardev=" + id + ",tag=" + s.Tag,
		}
	}
	// QEMU's option syntax escapes a comma by doubling it.
	fsdev := "local,id=" + id + ",path=" + strings.ReplaceAll(s.Path, ",", ",,") + ",security_model=none"
	if s.ReadOnly {
		fsdev += ",readonly=on"
	}
	return []string{"-fsdev", fsdev, "-device", "virtio-9p-device,fsdev=" + id + ",mount_tag=" + s.Tag}
}

// sandbox is QEMU's own seccomp filter: no obsolete system calls, no new
// processes, no resource control calls, and, outside a jail, no privilege
// changes. A jailed QEMU must change its uid once, at the end of its
// start-up (-runas), which elevateprivileges=deny would kill it for; there
// the jail's allowlist applies instead, and after -runas QEMU has no
// capability left that a privilege call could use.
func (c Config) sandbox() string {
	if c.Jail != nil {
		return "on,obsolete=deny,spawn=deny,resourcecontrol=deny"
	}
	return "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// QEMUPackage is the Debian package that provides the hypervisor.
const QEMUPackage = "qemu-system-x86"

// ErrNoQEMU is returned by [FindQEMU] when QEMU is not installed.
var ErrNoQEMU = errors.New("qemu-system-x86_64 not found: install it with `apt-get install " + QEMUPackage + "`")

// FindQEMU returns the path of qemu-system-x86_64.
func FindQEMU() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", ErrNoQEMU
	}
	return p, nil
}
