package vm

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// File descriptors QEMU inherits, in the order of exec.Cmd.ExtraFiles.
const (
	fdConsole = 3 + iota // the guest's serial console
	fdControl            // the guest protocol port (package guest)
	fdQMP                // the QMP monitor
)

// Limits on the machine's size. QEMU accepts more, but a microVM for one
// application that asks for more is almost certainly a typo.
const (
	MinMemoryMiB = 32
	MaxMemoryMiB = 1 << 20
	MaxCPUs      = 255
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
	// RunAs, when set, are the credentials QEMU is started with: an
	// unprivileged user (and the kvm group, for /dev/kvm) instead of the
	// caller's. The kernel and initramfs must be readable by it.
	RunAs *syscall.Credential
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
	return nil
}

// KernelCmdline is the guest kernel command line for c.
//
// reboot=t makes the guest's reset a triple fault, which with QEMU's
// -no-reboot ends QEMU at once: that is how arrow-init powers off, since
// microvm without ACPI has no power-off device. panic=-1 turns a guest
// panic into the same immediate exit instead of a hang.
func (c Config) KernelCmdline() string {
	args := []string{"console=ttyS0", "reboot=t", "panic=-1", "rdinit=/init"}
	if !c.Verbose {
		args = append(args, "quiet")
	}
	if c.Cmdline != "" {
		args = append(args, c.Cmdline)
	}
	return strings.Join(args, " ")
}

// Args returns QEMU's arguments for c.
func (c Config) Args() []string {
	accel := "kvm"
	cpu := "host"
	if c.Accel.Name == AccelTCG {
		accel = "tcg"
		cpu = "max"
	}
	args := []string{
		// ACPI off and no option ROMs: measured faster to boot, and
		// neither is needed by a guest that only has virtio-mmio devices.
		"-M", "microvm,x-option-roms=off,acpi=" + onOff(c.ACPI),
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot",
		"-kernel", c.Kernel,
		"-initrd", c.Initrd,
		"-append", c.KernelCmdline(),
		"-chardev", "socket,id=console,fd=" + strconv.Itoa(fdConsole),
		"-serial", "chardev:console",
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=control,fd=" + strconv.Itoa(fdControl),
		"-device", "virtserialport,chardev=control,name=arrow.0",
		"-device", "virtio-rng-device",
		"-chardev", "socket,id=qmp,fd=" + strconv.Itoa(fdQMP),
		"-mon", "chardev=qmp,mode=control",
		"-sandbox", c.sandbox(),
	}
	return args
}

// sandbox is QEMU's own seccomp filter: no obsolete system calls, no
// privilege changes, no new processes, no resource control calls.
//
// QEMU's -runas is not used to drop privileges: the setuid it does after
// start-up clears the parent-death signal, and a QEMU whose arrow was killed
// would then run on. Arrow starts QEMU with the unprivileged credentials
// instead (Config.RunAs), so the signal, set after them, survives.
func (c Config) sandbox() string {
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
