package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/arrowsys/arrow/jail"
)

// Jail confines a VM's QEMU and virtiofsd processes (package jail): a uid
// of their own, namespaces, a root of their own, seccomp, rlimits and the
// arrow's cgroup.
type Jail struct {
	// Helper is the arrow-jailer binary ([jail.FindHelper]).
	Helper string
	// Dir is the root-owned runtime directory of leases and jail roots
	// (/run/arrow/jail): one per host, since uids are the host's.
	Dir string
	// UIDs is the range QEMU's uid is leased from.
	UIDs jail.Range
	// Cgroup, when set, holds QEMU and virtiofsd from before they start.
	Cgroup jail.Cgroup
	// HostAccess lets a guest on the user-mode network reach the host's
	// own addresses, its loopback included: off unless asked for.
	HostAccess bool
	// LogDenied logs the calls the seccomp filters refuse (dmesg).
	LogDenied bool
}

// DefaultJailDir is where leases and jail roots live.
const DefaultJailDir = "/run/arrow/jail"

// jailed is what Start holds for a jailed QEMU until it is reaped.
type jailed struct {
	lease *jail.Lease
	root  string
}

// lease takes a uid for c's QEMU, its jail root directory, and, when c
// has a user-mode network card, sets the host guard up for that uid.
func (j *Jail) lease(c Config) (*jailed, error) {
	l, err := jail.Acquire(filepath.Join(j.Dir, "uids"), j.UIDs)
	if err != nil {
		return nil, fmt.Errorf("jail: %w", err)
	}
	root := filepath.Join(j.Dir, "roots", strconv.FormatUint(uint64(l.UID), 10))
	if err := os.MkdirAll(root, 0o700); err != nil {
		l.Release()
		return nil, fmt.Errorf("jail: %w", err)
	}
	if c.userNet() {
		// Even without the guard, a stale "may reach the host" mark
		// of a uid's previous VM must never carry over.
		if err := jail.GuardHost(j.UIDs, l.UID, j.HostAccess); err != nil {
			l.Release()
			return nil, err
		}
	}
	return &jailed{lease: l, root: root}, nil
}

// release gives the uid back once the helper is gone.
func (jd *jailed) release() {
	if jd == nil {
		return
	}
	os.Remove(jd.root)
	jd.lease.Release()
}

// userNet reports whether c has a card on QEMU's user-mode network, which
// needs the host's network namespace (QEMU's own sockets).
func (c Config) userNet() bool {
	for _, n := range c.NICs {
		if n.User != nil {
			return true
		}
	}
	return false
}

// jailCommand returns QEMU's command in the jail, with its handshake: QEMU
// runs with args and inherits files as its descriptors 3 and up.
func (c Config) jailCommand(jd *jailed, args []string, files []*os.File) (*exec.Cmd, *jail.Handshake, error) {
	s := jail.Spec{
		Profile:   jail.ProfileQEMU,
		Helper:    c.Jail.Helper,
		Root:      jd.root,
		NewNet:    !c.userNet(),
		KVM:       c.Accel.Name == AccelKVM,
		Lease:     jd.lease,
		Cgroup:    c.Jail.Cgroup,
		LogDenied: c.Jail.LogDenied,
	}
	args = append(args[:len(args):len(args)], jail.RunAsArgs(jd.lease)...)
	return jail.Command(s, c.QEMU, args, files)
}
