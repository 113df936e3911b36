package jail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Profile is what a jail is shaped for: which file system, which system
// calls.
type Profile string

const (
	// ProfileQEMU jails QEMU: a root of its own, a uid of its own (QEMU's
	// -runas), the QEMU allowlist.
	ProfileQEMU Profile = "qemu"
	// ProfileVirtiofsd jails virtiofsd, which must stay root to give the
	// guest's files the guest's owners and sandboxes itself into the
	// shared directory (namespaces, pivot_root, its own seccomp filter).
	// The jail adds namespaces, rlimits, the arrow's cgroup and a filter
	// that refuses setuid and setgid bits and device nodes, so what a
	// guest writes into a volume never gains privilege on the host.
	ProfileVirtiofsd Profile = "virtiofsd"
)

// Spec is how one process is jailed.
type Spec struct {
	Profile Profile
	// Helper is the arrow-jailer binary (see [FindHelper]).
	Helper string
	// Root is an existing empty directory on the host that the jail's
	// root file system (a tmpfs) is mounted on, in the jail's own mount
	// namespace only (ProfileQEMU).
	Root string
	// NewNet gives the process a network namespace of its own, with only
	// a loopback device that is down: for a VM without a network, or one
	// whose tap device it inherits open.
	NewNet bool
	// KVM binds /dev/kvm into the jail.
	KVM bool
	// Lease is the uid the process ends up running as; the helper holds
	// a copy of its lock for as long as it lives. QEMU's profile needs
	// one: QEMU drops to it with -runas (see [RunAsArgs]).
	Lease *Lease
	// Cgroup, when set, receives the helper, and so every process it
	// starts, before the jailed process exists.
	Cgroup Cgroup
	// LogDenied has the kernel log every call the seccomp filter refuses
	// (see [Filter.Load]); Arrow sets it from $ARROW_JAIL_LOG_DENIED.
	LogDenied bool
}

// LogDeniedEnv, set to 1, makes Arrow's jails log the calls their seccomp
// filters refuse.
const LogDeniedEnv = "ARROW_JAIL_LOG_DENIED"

// Cgroup is a control group processes can be moved into (cgroup.Group).
type Cgroup interface {
	Add(pid int) error
}

// RunAsArgs are QEMU's arguments that end its start-up in the jail: chroot
// into the empty directory and drop to the leased uid. QEMU does both after
// it opened its files, which stay open as root opened them.
func RunAsArgs(l *Lease) []string {
	return []string{"-chroot", emptyDir, "-runas", fmt.Sprintf("%d:%d", l.UID, l.GID())}
}

// emptyDir is the directory of the jail's root that QEMU chroots into.
const emptyDir = "/empty"

// Validate checks s before anything is started.
func (s Spec) Validate() error {
	switch s.Profile {
	case ProfileQEMU:
		if s.Lease == nil {
			return errors.New("jail: QEMU needs a uid lease")
		}
		if s.Root == "" || !filepath.IsAbs(s.Root) {
			return fmt.Errorf("jail: root %q is not an absolute path", s.Root)
		}
	case ProfileVirtiofsd:
	default:
		return fmt.Errorf("jail: unknown profile %q", s.Profile)
	}
	if s.Helper == "" {
		return errors.New("jail: no arrow-jailer binary")
	}
	return nil
}

// Command returns the command that runs bin with args in the jail s
// describes, bin inheriting files as its descriptors 3 and up, and a
// [Handshake] to complete once the command started. The command dies with
// the thread that starts it (a parent-death signal), and bin with it.
func Command(s Spec, bin string, args []string, files []*os.File) (*exec.Cmd, *Handshake, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	// go: the helper waits for a byte on it before it starts bin, so the
	// caller can first move it into a cgroup. status: the helper writes
	// "ok" once bin started, or what failed.
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("jail: %w", err)
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		goR.Close()
		goW.Close()
		return nil, nil, fmt.Errorf("jail: %w", err)
	}
	n := len(files)
	extra := append(append([]*os.File{}, files...), goR, stW)
	hargs := []string{
		"--profile", string(s.Profile),
		"--nfds", strconv.Itoa(n),
	}
	if s.Lease != nil {
		extra = append(extra, s.Lease.File())
		hargs = append(hargs, "--lease")
	}
	if s.Profile == ProfileQEMU {
		hargs = append(hargs, "--root", s.Root)
	}
	if s.KVM {
		hargs = append(hargs, "--kvm")
	}
	if s.LogDenied {
		hargs = append(hargs, "--log-denied")
	}
	hargs = append(hargs, "--", bin)
	cmd := exec.Command(s.Helper, append(hargs, args...)...)
	cmd.ExtraFiles = extra
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if s.NewNet {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: flags}
	return cmd, &Handshake{spec: s, goR: goR, goW: goW, stR: stR, stW: stW}, nil
}

// Handshake completes a jail's start: see [Command].
type Handshake struct {
	spec     Spec
	goR, goW *os.File
	stR, stW *os.File
}

// handshakeTimeout bounds how long a helper may take to set the jail up.
const handshakeTimeout = 30 * time.Second

// Complete is called once the helper's command started (or failed to: then
// it only closes the pipes). It places the helper in the cgroup, lets it
// start the jailed process and returns that process's pid. On error the
// caller kills the helper.
func (h *Handshake) Complete(helperPid int) (int, error) {
	h.goR.Close()
	h.stW.Close()
	defer h.stR.Close()
	defer h.goW.Close()
	if helperPid <= 0 {
		return 0, errors.New("jail: helper not started")
	}
	if h.spec.Cgroup != nil {
		if err := h.spec.Cgroup.Add(helperPid); err != nil {
			return 0, fmt.Errorf("jail: cgroup: %w", err)
		}
	}
	if _, err := h.goW.Write([]byte{1}); err != nil {
		return 0, fmt.Errorf("jail: helper: %w", err)
	}
	_ = h.stR.SetReadDeadline(time.Now().Add(handshakeTimeout))
	line, err := bufio.NewReader(io.LimitReader(h.stR, 4096)).ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "ok" {
		if line == "" {
			line = fmt.Sprint(err)
		}
		return 0, fmt.Errorf("jail: %s", line)
	}
	pid, err := childOf(helperPid)
	if err != nil {
		return 0, fmt.Errorf("jail: %w", err)
	}
	return pid, nil
}

// Close releases the handshake's pipes when the helper was never started.
func (h *Handshake) Close() {
	for _, f := range []*os.File{h.goR, h.goW, h.stR, h.stW} {
		f.Close()
	}
}

// childOf returns the pid, in the caller's pid namespace, of the one
// child the helper has: the kernel lists children per thread, and the
// helper's runtime may have forked on any of its threads.
func childOf(helper int) (int, error) {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(helper) + "/task")
	if err != nil {
		return 0, fmt.Errorf("helper's children: %w", err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(helper) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if pid, err := strconv.Atoi(f[0]); err == nil {
				return pid, nil
			}
		}
	}
	return 0, errors.New("the jailed process is gone already")
}

// HelperName is the jail helper's binary.
const HelperName = "arrow-jailer"

// HelperEnv names the helper explicitly.
const HelperEnv = "ARROW_JAILER"

// FindHelper returns the arrow-jailer binary: explicit, $ARROW_JAILER,
// next to the running executable, or in ../libexec/arrow beside it.
func FindHelper(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv(HelperEnv)}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		candidates = append(candidates, filepath.Join(dir, HelperName), filepath.Join(dir, "..", "libexec", "arrow", HelperName))
	}
	var looked []string
	for _, c := range candidates {
		if c == "" {
			continue
		}
		looked = append(looked, c)
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked at %v): install Arrow with `make install`, or set %s", HelperName, looked, HelperEnv)
}
