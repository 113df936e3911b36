// Package template keeps pre-booted VM templates and starts copy-on-write
// clones of them.
//
// A template is a VM booted once with Arrow's kernel and a generic
// arrow-init (no application: arrow-init waits on the control port for it)
// whose RAM is a file, mapped shared. The file is in [Config.MemDir]: for
// Arrow's runs templates/.mem under the data root, so that templates go
// with their root (only an empty MemDir means tmpfs, [DefaultMemDir]).
// Once arrow-init said hello the VM is paused and its device state saved
// with the migration capability x-ignore-shared: the stream holds the
// devices only (about 50 KB), the RAM stays in the file. A clone is a
// QEMU with the same machine and devices, its RAM the same file mapped
// privately (copy-on-write: the clone shares every page it does not write
// with the template and its other clones, through the page cache),
// loading the saved state and resumed. The host then hands arrow-init the
// application, exactly as after a cold boot.
//
// The application's files reach a clone on its one virtio disk (serial
// [RootSerial]): the template boots with a placeholder image in that slot,
// and the clone's QEMU points the slot at the application's root image.
// arrow-init releases the disk before the template is saved and probes it
// again in the clone, so the guest reads the clone's size, serial and data
// (see guest/agent/template.go).
//
// Templates are keyed by everything that must match between a template and
// its clones ([Key]): the kernel, arrow-init, memory size, vCPUs, the
// accelerator, the machine and device layout and the QEMU binary. A
// template whose files are missing or damaged is refused with an
// [ErrUnusable] error, which callers turn into a warning and a cold boot.
package template

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/initramfs"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/vm"
)

// RootSerial is the serial of a clone's disk: the application's root file
// system (guest.Root.Device).
const RootSerial = "arrow-root"

// DefaultMemDir is where template memory files live when
// [Config.MemDir] is empty: tmpfs. Arrow's runs name a directory under
// the data root instead; wherever the file is, the clones' private
// mappings share the template's pages in the page cache.
const DefaultMemDir = "/dev/shm/arrow-templates"

// formatVersion changes when the files of a template change meaning.
const formatVersion = "arrow-template-2"

// ErrUnusable wraps every reason a template cannot be cloned: missing or
// damaged files, a key that does not match, a state QEMU refused. Callers
// fall back to a cold boot.
var ErrUnusable = errors.New("template unusable")

// Config is what a template is built from.
type Config struct {
	// Root is Arrow's data directory; templates live in Root/templates.
	Root string
	// MemDir holds the memory files; [DefaultMemDir] when empty.
	MemDir string
	// QEMU is the qemu-system-x86_64 binary; found on PATH when empty.
	QEMU string
	// Kernel is Arrow's guest kernel (a vmlinux with its drivers built in:
	// templates have no modules).
	Kernel string
	// Init is the arrow-init binary.
	Init string
	// MemoryMiB and CPUs size the guest.
	MemoryMiB int
	CPUs      int
	// Accel is the accelerator.
	Accel vm.Accel
	// Jail confines the template's QEMU and its clones' (vm.Config.Jail).
	Jail *vm.Jail
	// BootTimeout bounds the template's boot; 30 s when zero.
	BootTimeout time.Duration
	// UserNet gives the machine a virtio-net card on QEMU's user-mode
	// network, with the MAC [UserMAC]: a user-mode network is private to
	// its VM, so every clone may have the same address on it.
	UserNet bool
	// Forwards are a clone's published ports on its user-mode network.
	// They are host-side only (QEMU's listening sockets), not guest
	// state, so they are not part of the key and may differ per clone;
	// a template itself never listens.
	Forwards []api.Port
	// TapNet gives the machine a virtio-net card whose clones plug it
	// into a tap device (a bridge network's), Tap. The template's card
	// is plugged into nothing (vm.NIC.Placeholder): QEMU's user-mode
	// network keeps state of its own in a snapshot, which a clone on a
	// tap could not load. The card's MAC is [UserMAC] too; arrow-init
	// gives it the run's own. At most one of UserNet and TapNet.
	TapNet bool
	// Tap is a clone's tap device, with TapNet; not part of the key.
	Tap *os.File
}

// UserMAC is the MAC of a template's network card.
const UserMAC = "02:a7:70:00:00:01"

// Template is a built template, as published.
type Template struct {
	// Key identifies the template: see [Key].
	Key string `json:"key"`
	// Dir holds meta.json, the device state and the placeholder disk.
	Dir string `json:"-"`
	// MemFile is the guest memory file.
	MemFile string `json:"mem_file"`
	// Inputs describe what the key was computed from.
	Inputs Inputs `json:"inputs"`
	// StateSHA256 is the hash of the saved device state.
	StateSHA256 string `json:"state_sha256"`
	// MemSize, MemInode and MemCtime identify the memory file as it was
	// published; MemCtime is its change time in nanoseconds, which every
	// write moves and no unprivileged process can set back.
	MemSize  int64  `json:"mem_size"`
	MemInode uint64 `json:"mem_inode"`
	MemCtime int64  `json:"mem_ctime_ns"`
	// Created is when the template was published; BootTime is how long
	// its boot took.
	Created  time.Time     `json:"created"`
	BootTime time.Duration `json:"boot_ns"`
}

// Inputs are the parts of a [Key].
type Inputs struct {
	Format    string `json:"format"`
	Kernel    string `json:"kernel"` // path
	KernelSHA string `json:"kernel_sha256"`
	Initrd    string `json:"initrd"` // path of the template's initramfs
	InitSHA   string `json:"init_sha256"`
	MemoryMiB int    `json:"memory_mib"`
	CPUs      int    `json:"cpus"`
	Accel     string `json:"accel"`
	Layout    string `json:"layout"`
	QEMU      string `json:"qemu"`
}

// Key returns the key of the template built from these inputs.
func (in Inputs) Key() string {
	h := sha256.New()
	for _, s := range []string{in.Format, in.KernelSHA, in.InitSHA, strconv.Itoa(in.MemoryMiB), strconv.Itoa(in.CPUs), in.Accel, in.Layout, in.QEMU} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Dir is where the templates under Arrow's data root live.
func Dir(root string) string { return dataroot.Root(root).Templates() }

func (c *Config) memDir() string {
	if c.MemDir != "" {
		return c.MemDir
	}
	return DefaultMemDir
}

// vmConfig is the machine of the template and its clones, with the disk
// slot holding disk.
func (c *Config) vmConfig(initrd, disk string) vm.Config {
	return vm.Config{
		QEMU:      c.QEMU,
		Kernel:    c.Kernel,
		Initrd:    initrd,
		Cmdline:   guest.CmdlineTemplate,
		MemoryMiB: c.MemoryMiB,
		CPUs:      c.CPUs,
		Accel:     c.Accel,
		Jail:      c.Jail,
		Drives:    []vm.Drive{{Path: disk, Serial: RootSerial, ReadOnly: true}},
		NICs:      c.nics(false),
	}
}

// nics is the machine's network card: the template's, or with clone set a
// clone's (with its forwards, or its tap).
func (c *Config) nics(clone bool) []vm.NIC {
	switch {
	case c.TapNet && clone:
		return []vm.NIC{{MAC: UserMAC, Tap: c.Tap}}
	case c.TapNet:
		return []vm.NIC{{MAC: UserMAC, Placeholder: true}}
	case !c.UserNet:
		return nil
	}
	u := &vm.UserNet{Net: vm.DefaultUserNet}
	if clone {
		u.Forwards = c.Forwards
	}
	return []vm.NIC{{MAC: UserMAC, User: u}}
}

// layout is the machine and device layout as QEMU is told it, with the
// paths that differ between a template and its clones left out: the
// arguments the clone's QEMU gets must describe the same devices in the
// same order.
func (c *Config) layout(initrd string) string {
	cfg := c.vmConfig(initrd, "/placeholder")
	cfg.Memory = &vm.MemoryFile{Path: "/mem", Shared: true}
	return strings.Join(cfg.Args(), " ")
}

// Inputs computes what the template for c is keyed by. It builds the
// template's initramfs (arrow-init alone; cached by content) when needed.
func (c *Config) Inputs(ctx context.Context) (Inputs, error) {
	if err := c.defaults(); err != nil {
		return Inputs{}, err
	}
	initrd, err := c.initramfs(ctx)
	if err != nil {
		return Inputs{}, err
	}
	in := Inputs{Format: formatVersion, Kernel: c.Kernel, Initrd: initrd, MemoryMiB: c.MemoryMiB, CPUs: c.CPUs, Accel: c.Accel.Name}
	if in.KernelSHA, err = c.memo().FileSum(c.Kernel); err != nil {
		return in, fmt.Errorf("template: kernel: %w", err)
	}
	if in.InitSHA, err = c.memo().FileSum(initrd); err != nil {
		return in, fmt.Errorf("template: initramfs: %w", err)
	}
	if in.QEMU, err = qemuVersion(c.memo(), c.QEMU); err != nil {
		return in, err
	}
	in.Layout = c.layout(initrd)
	return in, nil
}

func (c *Config) defaults() error {
	if c.Root == "" || c.Kernel == "" || c.Init == "" {
		return errors.New("template: Root, Kernel and Init are required")
	}
	if c.UserNet && c.TapNet {
		return errors.New("template: UserNet and TapNet exclude each other")
	}
	if c.QEMU == "" {
		q, err := vm.FindQEMU()
		if err != nil {
			return err
		}
		c.QEMU = q
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 30 * time.Second
	}
	return nil
}

// initramfs builds the template's initramfs: arrow-init and nothing else.
func (c *Config) initramfs(ctx context.Context) (string, error) {
	b := &initramfs.Builder{Dir: dataroot.Root(c.Root).Initramfs()}
	p, err := b.Build(ctx, closure.NewSet(), initramfs.Entry{Path: "/init", Source: c.Init, Mode: 0o755})
	if err != nil {
		return "", fmt.Errorf("template: initramfs: %w", err)
	}
	return p, nil
}

// memo is the memo of the templates under c.Root: the hashes of the
// kernel, the template's initramfs and QEMU, and QEMU's version line.
func (c *Config) memo() cachefile.Memo { return rootMemo(c.Root) }

// rootMemo is the memo of the templates under Arrow's data root root.
func rootMemo(root string) cachefile.Memo {
	return cachefile.Memo{Dir: dataroot.Root(root).TemplateMemo()}
}

// qemuVersion is QEMU's version line and the binary's hash: a rebuilt
// QEMU of the same version may lay its devices' state out differently.
func qemuVersion(m cachefile.Memo, qemu string) (string, error) {
	sum, err := m.FileSum(qemu)
	if err != nil {
		return "", fmt.Errorf("template: qemu: %w", err)
	}
	if v, ok := m.Get("version:" + sum); ok {
		return v, nil
	}
	out, err := exec.Command(qemu, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("template: %s --version: %w", qemu, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	v := strings.TrimSpace(line) + " " + sum
	m.Put("version:"+sum, v)
	return v, nil
}

// Lookup returns the published template for key, checked: its metadata,
// its state's hash and its memory file. Every failure wraps [ErrUnusable].
func Lookup(root, key string) (*Template, error) {
	dir := filepath.Join(Dir(root), key)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnusable, key, err)
	}
	t := &Template{}
	if err := json.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("%w: %s: meta.json: %v", ErrUnusable, key, err)
	}
	t.Dir = dir
	if t.Key != key || t.Inputs.Key() != key {
		return nil, fmt.Errorf("%w: %s: meta.json describes another template", ErrUnusable, key)
	}
	if err := t.verify(root); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnusable, key, err)
	}
	return t, nil
}

// verify checks the files of a template as meta.json describes them: the
// state's hash and the memory file's identity.
func (t *Template) verify(root string) error {
	// Memoized like the kernel's hash: a state file changed in any way
	// (its size, times or inode) is hashed again.
	sum, err := rootMemo(root).FileSum(t.statePath())
	if err != nil {
		return fmt.Errorf("state: %v", err)
	}
	if sum != t.StateSHA256 {
		return errors.New("the saved state is damaged (hash mismatch)")
	}
	fi, err := os.Lstat(t.MemFile)
	if err != nil {
		return fmt.Errorf("memory file: %v", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Size() != t.MemSize || st == nil || st.Ino != t.MemInode {
		return fmt.Errorf("the memory file %s is not the one it was saved with", t.MemFile)
	}
	if err := checkMem(st, t.MemCtime); err != nil {
		return fmt.Errorf("memory file %s: %v", t.MemFile, err)
	}
	return nil
}

// checkMem refuses a template memory file that anyone but root could
// write, or that changed since it was published.
//
// A clone's QEMU maps the file privately, but QEMU 7.2 opens it read-write
// all the same (8.2's rom=off is what would let it open read-only), and a
// QEMU a guest took over could write to it through that descriptor: every
// later clone would then run the attacker's memory. Writes through a
// descriptor cannot be stopped on 7.2, but they cannot be hidden either:
// each moves the file's change time, which only the clock's owner could
// set back. So every clone, and every spare, is refused a template whose
// change time is not the one recorded when it was published; the run then
// builds a new template and boots cold meanwhile.
func checkMem(st *syscall.Stat_t, published int64) error {
	switch {
	case st.Uid != 0 && st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("owned by uid %d", st.Uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("mode %o: others may open it", st.Mode&0o777)
	case st.Nlink != 1:
		return fmt.Errorf("%d links to it", st.Nlink)
	case ctime(st) != published:
		return errors.New("changed since the template was published")
	}
	return nil
}

// ctime is st's change time in nanoseconds.
func ctime(st *syscall.Stat_t) int64 { return st.Ctim.Sec*1e9 + st.Ctim.Nsec }

func (t *Template) statePath() string       { return filepath.Join(t.Dir, "state") }
func (t *Template) placeholderPath() string { return filepath.Join(t.Dir, "placeholder.img") }

// Exists reports whether a template of key was published, usable or not.
func Exists(root, key string) bool {
	_, err := os.Lstat(filepath.Join(Dir(root), key))
	return err == nil
}

// Ensure returns the template for c, building it when there is none or
// when the one there is unusable. Concurrent callers (processes) wanting
// the same template build it once: the others wait for it.
func Ensure(ctx context.Context, c Config) (*Template, error) {
	in, err := c.Inputs(ctx)
	if err != nil {
		return nil, err
	}
	key := in.Key()
	if t, err := Lookup(c.Root, key); err == nil {
		return t, nil
	}
	unlock, err := lockKey(ctx, c.Root, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t, err := Lookup(c.Root, key); err == nil {
		return t, nil // built while this one waited
	}
	t, err := build(ctx, &c, in)
	if err == nil {
		// A new template is often the successor of others (a rebuilt
		// kernel or arrow-init): those are never used again.
		PruneUnused(c.Root, MaxUnused, time.Now())
	}
	return t, err
}

// MaxUnused is how long a template may go unused before [PruneUnused]
// removes it.
const MaxUnused = 7 * 24 * time.Hour

// PruneUnused removes the templates under root that no clone used for
// longer than maxAge (a template's directory is touched by every clone).
// It returns how many it removed.
func PruneUnused(root string, maxAge time.Duration, now time.Time) int {
	list, err := List(root)
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range list {
		fi, err := os.Stat(t.Dir)
		if err != nil || now.Sub(fi.ModTime()) <= maxAge {
			continue
		}
		if Remove(root, t.Key) == nil {
			n++
		}
	}
	return n
}

// touch marks t as used now, for [PruneUnused].
func (t *Template) touch() {
	now := time.Now()
	_ = os.Chtimes(t.Dir, now, now)
}

// lockKey takes the build lock of the template key (flock on a file in
// the templates directory), waiting for it until ctx ends.
func lockKey(ctx context.Context, root, key string) (func(), error) {
	if err := os.MkdirAll(Dir(root), 0o700); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(Dir(root), ".lock-"+key), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("template: lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Build boots a template for c and publishes it, replacing one of the same
// key.
func Build(ctx context.Context, c Config) (*Template, error) {
	in, err := c.Inputs(ctx)
	if err != nil {
		return nil, err
	}
	return build(ctx, &c, in)
}

func build(ctx context.Context, c *Config, in Inputs) (t *Template, err error) {
	key := in.Key()
	tdir := Dir(c.Root)
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	// The memory directory is root's and closed: QEMU reaches its file
	// through the descriptor Arrow hands it, nobody else reaches it.
	if err := os.MkdirAll(c.memDir(), 0o700); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	tmp, err := os.MkdirTemp(tdir, ".build-"+key[:8]+"-")
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	suffix := randomSuffix()
	tmpMem := filepath.Join(c.memDir(), ".build-"+key+"-"+suffix)
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
			os.Remove(tmpMem)
		}
	}()
	t = &Template{Key: key, Dir: tmp, Inputs: in, MemFile: filepath.Join(c.memDir(), key+"-"+suffix+".mem")}
	if err := writePlaceholder(ctx, t.placeholderPath()); err != nil {
		return nil, fmt.Errorf("template: placeholder disk: %w", err)
	}
	if err := createMem(tmpMem); err != nil {
		return nil, err
	}
	cfg := c.vmConfig(in.Initrd, t.placeholderPath())
	cfg.Memory = &vm.MemoryFile{Path: tmpMem, Shared: true}
	if got := c.layout(in.Initrd); got != in.Layout {
		return nil, errors.New("template: layout changed while building")
	}
	bctx, cancel := context.WithTimeout(ctx, c.BootTimeout)
	defer cancel()
	t0 := time.Now()
	m, err := vm.Start(bctx, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	defer func() {
		_ = m.Kill()
		<-m.Done()
	}()
	if err := awaitHello(bctx, m); err != nil {
		return nil, err
	}
	t.BootTime = time.Since(t0)
	st, err := os.OpenFile(t.statePath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	err = m.Save(bctx, st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("template: save: %w", err)
	}
	_ = m.Kill()
	<-m.Done()
	if t.StateSHA256, err = (cachefile.Memo{}).FileSum(t.statePath()); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	// Publish: the memory file under its final name, then the directory
	// with meta.json. A reader finds either the whole template or none.
	if err := os.Rename(tmpMem, t.MemFile); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	tmpMem = t.MemFile // removed with the rest on failure from here on
	fi, err := os.Stat(t.MemFile)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t.MemSize = fi.Size()
	t.MemInode = fi.Sys().(*syscall.Stat_t).Ino
	t.MemCtime = ctime(fi.Sys().(*syscall.Stat_t))
	t.Created = time.Now().UTC()
	b, _ := json.MarshalIndent(t, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	final := filepath.Join(tdir, key)
	old := ""
	if _, err := os.Lstat(final); err == nil {
		old = filepath.Join(tdir, ".old-"+key[:8]+"-"+randomSuffix())
		if err := os.Rename(final, old); err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t.Dir = final
	if old != "" {
		removeDir(old)
	}
	return t, nil
}

// createMem creates the empty memory file QEMU sizes and fills: root's,
// mode 0600. QEMU opens it as root, before its jail drops it to a uid of
// its own, so no jailed process can open it by name; see [Lookup] for the
// descriptor a clone's QEMU keeps.
func createMem(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("template: memory file: %w", err)
	}
	return f.Close()
}

// awaitHello waits for arrow-init's hello frame and checks its protocol.
// The client is dropped, not closed: the connection is the machine's, and
// the template's guest is saved with it open.
func awaitHello(ctx context.Context, m *vm.Machine) error {
	_, err := guest.NewClient(m.Control()).Hello(ctx)
	var (
		end  *guest.EndError
		verr *guest.VersionError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &end):
		return fmt.Errorf("template: the guest stopped before arrow-init said hello: %v\n%s", end.Err, m.ConsoleTail())
	case errors.As(err, &verr):
		return fmt.Errorf("template: arrow-init speaks protocol version %d, this arrow %d", verr.Guest, guest.ProtocolVersion)
	case ctx.Err() != nil:
		return fmt.Errorf("template: boot: %w\n%s", ctx.Err(), m.ConsoleTail())
	}
	return fmt.Errorf("template: %w", err)
}

// List returns the published templates, usable or not (Lookup says
// which), by creation time.
func List(root string) ([]*Template, error) {
	ents, err := os.ReadDir(Dir(root))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Template
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		t := &Template{Key: e.Name(), Dir: filepath.Join(Dir(root), e.Name())}
		if b, err := os.ReadFile(filepath.Join(t.Dir, "meta.json")); err == nil {
			_ = json.Unmarshal(b, t)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Remove deletes the template key: its directory and its memory file.
// Running clones keep their mappings of the memory file.
func Remove(root, key string) error {
	if key == "" || strings.ContainsAny(key, "/.") {
		return fmt.Errorf("template: bad key %q", key)
	}
	dir := filepath.Join(Dir(root), key)
	t := &Template{}
	if b, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil && json.Unmarshal(b, t) == nil && t.MemFile != "" {
		if err := os.Remove(t.MemFile); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("template: %w", err)
		}
	}
	if _, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("template %s: %w", key, err)
	}
	removeDir(dir)
	return nil
}

// removeDir removes a template directory and the memory file its
// meta.json names.
func removeDir(dir string) {
	t := &Template{}
	if b, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil && json.Unmarshal(b, t) == nil && t.MemFile != "" {
		os.Remove(t.MemFile)
	}
	os.RemoveAll(dir)
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writePlaceholder writes the image in the disk slot of a template: an
// erofs image of an empty directory. Clones put the application's image
// in the slot; a spare (see Spare) mounts the placeholder while it warms.
func writePlaceholder(ctx context.Context, path string) error {
	empty, err := os.MkdirTemp(filepath.Dir(path), ".empty-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	img, err := rootfs.Build(ctx, empty, filepath.Dir(path), "arrow-template-placeholder")
	if err != nil {
		return err
	}
	return os.Rename(img, path)
}
