package containerdshim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/api"
)

// Bounds of what a bundle's config.json may hold. It is written by
// containerd from a client's request (CRI, ctr, any API client), so it is
// treated as untrusted: read to a bound, and every list bounded before the
// translation walks it.
const (
	// MaxSpecBytes bounds config.json as read.
	MaxSpecBytes = 4 << 20
	maxMounts    = 256
	maxRlimits   = 64
	// MinMemoryMiB is the least memory a VM gets, whatever the spec's
	// limit: the guest kernel and arrow-init need about 40 MiB, and a
	// smaller limit would make every container an OOM kill.
	MinMemoryMiB = 128
	// maxCPUs bounds the vCPUs a spec's CPU quota may ask for.
	maxCPUs = 64
	// maxMemoryMiB is api.Config's bound on memory (1 TiB).
	maxMemoryMiB = 1 << 20
)

// ReadSpec reads and decodes a bundle's config.json, to a bound.
func ReadSpec(bundle string) (*specs.Spec, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the OCI spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the OCI spec: %w", err)
	}
	return ParseSpec(b)
}

// ParseSpec decodes a config.json's bytes, to a bound.
func ParseSpec(b []byte) (*specs.Spec, error) {
	if len(b) > MaxSpecBytes {
		return nil, fmt.Errorf("config.json: larger than %d bytes", MaxSpecBytes)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	return &s, nil
}

// vmMounts are the file systems every guest has of its own (arrow-init
// mounts them): a spec's mounts there are the runtime's boilerplate and
// need nothing from the host.
var vmMounts = []string{"/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup", "/run"}

// fileBinds are the files CRI binds into every container. The guest's
// network setup writes its own /etc/hosts, /etc/resolv.conf and hostname
// from the run's network (the user network's DNS, or a pod's), so the
// host's copies are not used: a file bind cannot be a virtiofs volume,
// which shares directories.
var fileBinds = []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}

// terminationLog is the file kubelet binds into every container of a pod
// (terminationMessagePath) for the application to leave its last words
// in. A file cannot be a virtiofs volume either, and a pod must not fail
// for want of it, so it is left out: kubelet reads an empty message.
const terminationLog = "/dev/termination-log"

// Config translates an OCI runtime spec into Arrow's description of a run
// whose root file system is the directory rootfs (the mounted snapshot).
// It is a pure function of its inputs. What Arrow does not do (rlimits,
// seccomp, capabilities: the VM is the boundary) is listed in the notes,
// one line each, so that the shim can log it: nothing is dropped
// silently. What it cannot do safely (OCI hooks, a mount it cannot give
// the guest) is an error.
//
// The program, args[0], may be a bare name: the caller resolves it in
// the root file system (see lookPath) before the config is validated.
func Config(spec *specs.Spec, rootfs string) (api.Config, []string, error) {
	var c api.Config
	var notes []string
	note := func(format string, a ...any) { notes = append(notes, fmt.Sprintf(format, a...)) }
	if spec == nil || spec.Process == nil {
		return c, nil, errors.New("spec: no process")
	}
	if !filepath.IsAbs(rootfs) {
		return c, nil, fmt.Errorf("spec: root file system %q: want an absolute path", rootfs)
	}
	p := spec.Process
	if len(p.Args) == 0 || p.Args[0] == "" {
		return c, nil, errors.New("spec: process.args: nothing to run")
	}
	if p.CommandLine != "" {
		return c, nil, errors.New("spec: process.commandLine is for Windows")
	}
	c.RootFS = rootfs
	c.Program, c.Args = p.Args[0], clone(p.Args[1:])
	c.Env = clone(p.Env)
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return c, nil, fmt.Errorf("spec: process.env %.80q: want KEY=value", e)
		}
	}
	c.Dir = p.Cwd
	if c.Dir == "" {
		c.Dir = "/"
	}
	if !path.IsAbs(c.Dir) {
		return c, nil, fmt.Errorf("spec: process.cwd %.80q: want an absolute path", c.Dir)
	}
	c.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
	if len(p.User.AdditionalGids) > 0 {
		note("process.user.additionalGids %v: not applied (the guest gives the user its groups from /etc/group)", boundList(p.User.AdditionalGids))
	}
	if p.User.Umask != nil {
		note("process.user.umask: not applied (the guest's default, 022)")
	}
	c.TTY = p.Terminal
	if len(p.Rlimits) > maxRlimits {
		return c, nil, fmt.Errorf("spec: more than %d rlimits", maxRlimits)
	}
	for _, r := range p.Rlimits {
		note("process.rlimits %.40s: not applied (the guest kernel's defaults; the VM's cgroup bounds the host's resources)", r.Type)
	}
	if p.Capabilities != nil {
		note("process.capabilities: not applied (the VM is the boundary; in the guest the user's own rights apply)")
	}
	if p.NoNewPrivileges {
		note("process.noNewPrivileges: not applied in the guest")
	}
	if p.ApparmorProfile != "" || p.SelinuxLabel != "" {
		note("process apparmor/selinux labels: not applied (the VM is the boundary)")
	}
	if spec.Root != nil && spec.Root.Readonly {
		c.ReadOnly = true
	}
	c.Hostname = spec.Hostname
	//lint:ignore SA1019 deprecated, yet runc still runs Prestart hooks: refused like the others
	if h := spec.Hooks; h != nil && (len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+len(h.StartContainer)+len(h.Poststart)+len(h.Poststop) > 0) {
		// A hook may be what makes the container safe or whole (a
		// device, a network): refuse rather than run without it.
		return c, nil, errors.New("spec: OCI hooks are not supported by the arrow runtime")
	}
	if len(spec.Mounts) > maxMounts {
		return c, nil, fmt.Errorf("spec: more than %d mounts", maxMounts)
	}
	for _, m := range spec.Mounts {
		v, why, err := mount(m)
		if err != nil {
			return c, nil, err
		}
		if v != nil {
			c.Volumes = append(c.Volumes, *v)
		} else if why != "" {
			note("%s", why)
		}
	}
	if l := spec.Linux; l != nil {
		if err := resources(&c, l.Resources, note); err != nil {
			return c, nil, err
		}
		if l.Seccomp != nil {
			note("linux.seccomp: not applied in the guest (the VM's QEMU has its own filter)")
		}
		if len(l.Sysctl) > 0 {
			note("linux.sysctl: %d settings not applied", len(l.Sysctl))
		}
		if len(l.Devices) > 0 {
			note("linux.devices: %d devices not given to the guest", len(l.Devices))
		}
		for _, ns := range l.Namespaces {
			if ns.Type == specs.NetworkNamespace && ns.Path != "" {
				// The caller attaches the VM to it (podNetwork).
				continue
			}
			if ns.Path != "" {
				note("linux.namespaces: joining the %s namespace %s is not supported: the guest has its own", ns.Type, ns.Path)
			}
		}
	}
	return c, notes, nil
}

// NetNSPath is the network namespace a spec asks the container to join
// (a CRI pod's), or "" for a network of its own.
func NetNSPath(spec *specs.Spec) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// mount translates one OCI mount: a volume, or nil with the reason it
// needs nothing (empty: the VM's own), or an error for one the guest
// cannot be given.
func mount(m specs.Mount) (*api.Volume, string, error) {
	dst := path.Clean(m.Destination)
	if !path.IsAbs(m.Destination) {
		return nil, "", fmt.Errorf("spec: mount destination %.80q: want an absolute path", m.Destination)
	}
	if slices.Contains(vmMounts, dst) {
		return nil, "", nil
	}
	bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
	if !bind {
		if m.Type == "tmpfs" {
			return nil, fmt.Sprintf("mount %.80s: tmpfs not made: the directory of the root file system is used", dst), nil
		}
		return nil, "", fmt.Errorf("spec: mount %.80s of type %.20q: only bind mounts of host directories are supported", dst, m.Type)
	}
	if slices.Contains(fileBinds, dst) {
		return nil, fmt.Sprintf("mount %s: the host's file not used (the guest writes its own from its network)", dst), nil
	}
	if dst == terminationLog {
		return nil, fmt.Sprintf("mount %s: not shared: the guest's termination message is not relayed (kubelet falls back to the log with terminationMessagePolicy FallbackToLogsOnError)", dst), nil
	}
	if !filepath.IsAbs(m.Source) {
		return nil, "", fmt.Errorf("spec: bind mount %.80s: source %.80q: want an absolute path", dst, m.Source)
	}
	v := &api.Volume{Source: filepath.Clean(m.Source), Target: dst}
	for _, o := range m.Options {
		switch o {
		case "ro", "rro":
			v.ReadOnly = true
		}
	}
	return v, "", nil
}

// resources translates the spec's memory and CPU limits into the VM's
// size; the VM's cgroup then enforces them (with the VM's overhead).
func resources(c *api.Config, r *specs.LinuxResources, note func(string, ...any)) error {
	if r == nil {
		return nil
	}
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		mib := (*m.Limit + (1<<20 - 1)) >> 20
		if mib > maxMemoryMiB {
			return fmt.Errorf("spec: memory limit %d bytes: more than Arrow's %d MiB", *m.Limit, maxMemoryMiB)
		}
		if mib < MinMemoryMiB {
			note("linux.resources.memory.limit %d MiB: raised to the VM's minimum, %d MiB", mib, MinMemoryMiB)
			mib = MinMemoryMiB
		}
		c.MemoryMiB = int(mib)
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Quota != nil && *cpu.Quota > 0 {
			period := uint64(100000)
			if cpu.Period != nil && *cpu.Period > 0 {
				period = *cpu.Period
			}
			n := (uint64(*cpu.Quota) + period - 1) / period
			if n > maxCPUs {
				return fmt.Errorf("spec: CPU quota %d per %d µs: more than %d CPUs", *cpu.Quota, period, maxCPUs)
			}
			c.CPUs = max(int(n), 1)
		}
		if cpu.Cpus != "" || cpu.Mems != "" {
			note("linux.resources.cpu cpuset: not applied (the VM's vCPUs float)")
		}
	}
	if r.Pids != nil {
		note("linux.resources.pids: not applied in the guest (the VM's QEMU has a pids limit of its own)")
	}
	return nil
}

// clone copies a list; an empty one is nil, as api.Config has it.
func clone(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return slices.Clone(l)
}

// boundList shows at most a few items of a list in a note.
func boundList[T any](l []T) []T {
	if len(l) > 8 {
		return l[:8]
	}
	return l
}

// lookPath resolves a bare program name in the root file system rootfs
// along the PATH of env (runc's lookup, done on the host before the VM
// starts, so that a missing program is a clear create error as runc
// gives). Symbolic links are not followed out of rootfs: a name that
// exists as a link in the guest's tree is taken as found, as the guest
// resolves it.
func lookPath(rootfs, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", fmt.Errorf("exec: %.80q: a relative path: want an absolute path or a name in $PATH", name)
		}
		return name, nil
	}
	pathVar := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, name)
		if fi, err := os.Lstat(filepath.Join(rootfs, p)); err == nil && (fi.Mode()&os.ModeSymlink != 0 || (fi.Mode().IsRegular() && fi.Mode()&0o111 != 0)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %.80q: executable file not found in $PATH", name)
}
