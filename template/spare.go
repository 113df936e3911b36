package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/vm"
)

// A Spare is a clone started before its application is known, kept paused
// in a pool (arrowd's) until a run takes it.
//
// A clone's time to its application is mostly guest code running for the
// first time in that QEMU: under TCG every code path is translated on its
// first run, and translations live in the QEMU process, not in the
// snapshot. So a spare does more than start and restore: once resumed it
// has arrow-init warm up (guest.FrameWarm: decode a spec, probe the
// placeholder disk, mount it under an overlay, start a process, undo it
// all), and only then is paused. When a run takes it, [Spare.Use] points
// its disk at the application's image and publishes the run's ports, and
// the run hands arrow-init the application as it would to any clone.
type Spare struct {
	*Clone
	// Warmed is arrow-init's account of the warm-up; Warm is how long it
	// took as the host saw it.
	Warmed guest.Warmed
	Warm   time.Duration
	// Guest is the client that warmed the spare, idle since (a Client
	// reads only when asked to): the run that takes the spare goes on
	// with it.
	Guest *guest.Client
}

// warmTimeout bounds a spare's warm-up.
const warmTimeout = 30 * time.Second

// StartSpare starts a clone of t for c with the placeholder in its disk
// slot and no published ports, warms it and pauses it. On failure no QEMU
// is left.
func (t *Template) StartSpare(ctx context.Context, c Config, console io.Writer) (*Spare, error) {
	c.Forwards = nil // published when the spare is used
	cl, err := t.Clone(ctx, c, CloneOptions{Console: console})
	if err != nil {
		return nil, err
	}
	s := &Spare{Clone: cl}
	ok := false
	defer func() {
		if !ok {
			_ = cl.Machine.Kill()
			<-cl.Machine.Done()
		}
	}()
	t0 := time.Now()
	if err := s.warm(ctx, c.UserNet); err != nil {
		return nil, fmt.Errorf("spare: %w", err)
	}
	s.Warm = time.Since(t0)
	if err := cl.Machine.Pause(ctx); err != nil {
		return nil, fmt.Errorf("spare: %w", err)
	}
	ok = true
	return s, nil
}

// warm has arrow-init run the warm-up and waits for its answer.
func (s *Spare) warm(ctx context.Context, userNet bool) error {
	m := s.Machine
	sample := guest.Spec{
		Version: guest.ProtocolVersion,
		Args:    []string{"/init"},
		Root:    &guest.Root{Device: RootSerial, FSType: rootfs.FSType},
	}
	if userNet {
		// The addresses a run on the user-mode network gets; arrow-init
		// removes them again.
		gateway, _, guestIP := vm.UserNetHosts(vm.DefaultUserNet)
		sample.Network = &guest.Network{Interfaces: []guest.Interface{{
			MAC:     UserMAC,
			Address: netip.PrefixFrom(guestIP, vm.DefaultUserNet.Bits()).String(),
			Gateway: gateway.String(),
		}}}
	}
	s.Guest = guest.NewClient(m.Control())
	wctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	w, err := s.Guest.Warm(wctx, &sample)
	var end *guest.EndError
	switch {
	case err == nil:
		s.Warmed = w
		if w.Error != "" {
			// The guest is no worse off than an unwarmed clone, but a
			// failing warm-up means something is wrong with the
			// template: say so rather than pool it.
			return errors.New("warm-up: " + w.Error)
		}
		return nil
	case errors.As(err, &end):
		return fmt.Errorf("warm-up: %w", end.Err)
	case ctx.Err() != nil:
		// A read of the control connection is in flight: killing the
		// guest ends it.
		_ = m.Kill()
		return ctx.Err()
	case wctx.Err() != nil:
		_ = m.Kill()
		return fmt.Errorf("warm-up: no answer within %v", warmTimeout)
	}
	return err
}

// Use readies the spare for an application: its disk slot gets rootDisk
// (read-only), its user-mode network card the forwards, its console goes
// to console, and its vCPUs run again. arrow-init then waits for the start
// frame. On failure the caller kills the machine.
func (s *Spare) Use(ctx context.Context, rootDisk string, forwards []api.Port, console io.Writer) error {
	m := s.Machine
	m.SetConsole(console)
	if err := m.SwapDrive(ctx, 0, vm.Drive{Path: rootDisk, Serial: RootSerial, ReadOnly: true}); err != nil {
		return err
	}
	for _, f := range forwards {
		if err := m.AddForward(ctx, 0, f); err != nil {
			return err
		}
	}
	s.Template.touch()
	return m.Resume(ctx)
}
