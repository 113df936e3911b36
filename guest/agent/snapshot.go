//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// Application snapshots (see package template, app.go): the host saves a
// running guest, its application initialized, and later starts clones of
// it. Two things make that safe.
//
// The control stream must not be cut inside a frame: the save captures
// the virtio-serial device with whatever the guest had queued, and a
// clone's host would read the rest of a frame whose start went to the
// arrow that was saved. So the host asks first (FrameFreeze), and
// arrow-init answers with its last frame (FrameFrozen) while it holds its
// connection: the output pumps, the health probe and the execs wait to
// send until the thaw. The host saves only after reading that answer.
//
// A clone must not be its snapshot: what a template's clone is given by
// its spec (clock, entropy, host name, machine ID, MAC), a snapshot's
// clone is given by its thaw, before its application runs one more
// instruction that the host can observe. What the application drew from
// randomness before the snapshot stays shared by every clone; Thaw.Signal
// is its hook to draw again.

// count is how many execs run.
func (t *execTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.procs)
}

// freeze answers the host's FrameFreeze and, if it froze, serves frames
// until the thaw, holding the connection so that nothing else is sent.
// An error means the control stream ended while frozen.
func (a *agent) freeze(p *process) error {
	if n := a.execs.count(); n > 0 {
		return a.conn.SendJSON(guest.FrameFrozen, guest.Frozen{Error: fmt.Sprintf("%d exec'd processes run: a snapshot waits for them to end", n)})
	}
	release := a.conn.Hold()
	if err := a.conn.SendJSONHeld(guest.FrameFrozen, guest.Frozen{}); err != nil {
		release()
		return err
	}
	a.debugf("frozen")
	var t guest.Thaw
	for {
		f, err := a.conn.Recv()
		if err != nil {
			release()
			return err
		}
		if f.Type != guest.FrameThaw {
			a.debugf("ignoring %s frame while frozen", f.Type)
			continue
		}
		err = guest.Decode(f.Payload, &t)
		if err == nil {
			err = t.Validate()
		}
		if err == nil && t.Clone {
			err = a.becomeClone(&t)
		}
		var th guest.Thawed
		if err != nil {
			th.Error = err.Error()
		}
		serr := a.conn.SendJSONHeld(guest.FrameThawed, th)
		release()
		if serr != nil {
			return serr
		}
		break
	}
	a.debugf("thawed (clone %v)", t.Clone)
	if t.Clone && a.healthy.Load() {
		// The clone's host waits for its own word that the application
		// listens: it does, as it did when the snapshot was taken.
		_ = a.conn.Send(guest.FrameHealthy, nil)
	}
	if t.Signal > 0 {
		p.deliver(unix.Signal(t.Signal))
	}
	return nil
}

// becomeClone gives a snapshot's clone its own identity, as prepare gives
// a template's clone its spec's.
func (a *agent) becomeClone(t *guest.Thaw) error {
	if t.TimeUnixNano > 0 {
		tv := unix.NsecToTimeval(t.TimeUnixNano)
		if err := unix.Settimeofday(&tv); err != nil {
			return fmt.Errorf("set clock: %w", err)
		}
	}
	if len(t.Seed) > 0 {
		if err := addEntropy(t.Seed); err != nil {
			return fmt.Errorf("seed entropy: %w", err)
		}
	}
	spec := a.spec
	if t.MAC != "" && spec != nil && spec.Network != nil && len(spec.Network.Interfaces) > 0 {
		if err := changeMAC(spec.Network.Interfaces[0].MAC, t.MAC); err != nil {
			return err
		}
		// Later clones of a snapshot of this clone find the card by it.
		n := *spec.Network
		n.Interfaces = append([]guest.Interface(nil), n.Interfaces...)
		n.Interfaces[0].MAC = t.MAC
		s := *spec
		s.Network = &n
		a.spec = &s
	}
	if t.Hostname != "" {
		if err := unix.Sethostname([]byte(t.Hostname)); err != nil {
			return fmt.Errorf("set host name: %w", err)
		}
		var n *guest.Network
		if a.spec != nil {
			n = a.spec.Network
		}
		if err := writeFile("/etc/hostname", t.Hostname+"\n"); err != nil {
			return err
		}
		if err := writeFile("/etc/hosts", hostsFile(t.Hostname, n)); err != nil {
			return err
		}
	}
	if t.MachineID != "" {
		if err := writeFile("/etc/machine-id", t.MachineID+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// writeFile replaces one of the identity files the run wrote; a
// read-only root keeps the image's.
func writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// changeMAC gives the running card whose address is from the address to,
// and announces it (a gratuitous ARP, arp_notify): QEMU's user-mode
// network, or a bridge, learnt the old address and would send the clone's
// replies to it until it asked again.
func changeMAC(from, to string) error {
	name, err := findNIC(from, 0)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	// The gratuitous ARP goes when the address changes.
	if err := announceOnUp(name); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := setMAC(fd, name, strings.ToLower(to)); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}
