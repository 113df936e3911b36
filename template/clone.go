package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/arrowsys/arrow/vm"
)

// CloneOptions are what differs between clones of one template.
type CloneOptions struct {
	// RootDisk is the image attached in the template's disk slot, serial
	// [RootSerial]: the application's root file system (an erofs image
	// from image/rootfs). Empty leaves the template's placeholder there:
	// the application then runs from the initramfs (arrow-init alone).
	RootDisk string
	// Console receives the guest's console output when not nil.
	Console io.Writer
}

// Clone is a running clone of a template: arrow-init in it waits for a
// start frame on Machine.Control(), as after a cold boot once its hello
// was read (a clone does not say hello again: its template did).
type Clone struct {
	Machine  *vm.Machine
	Template *Template
	// Start is how long QEMU took to start, Restore how long loading the
	// state took, Resume how long the cont took.
	Start, Restore, Resume time.Duration
}

// Clone starts a clone of t for c (whose Inputs must give t's key) and
// resumes it. On failure no QEMU is left; a template QEMU refuses (a
// damaged state) yields an error wrapping [ErrUnusable].
func (t *Template) Clone(ctx context.Context, c Config, o CloneOptions) (*Clone, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	if c.TapNet && c.Tap == nil {
		return nil, errors.New("clone: a bridge template's clone needs its tap device")
	}
	disk := o.RootDisk
	if disk == "" {
		disk = t.placeholderPath()
	}
	cfg := c.vmConfig(t.Inputs.Initrd, disk)
	if got := c.layout(t.Inputs.Initrd); got != t.Inputs.Layout {
		return nil, fmt.Errorf("%w: %s: the machine layout differs from the template's", ErrUnusable, t.Key)
	}
	cfg.NICs = c.nics(true)
	cfg.Memory = &vm.MemoryFile{Path: t.MemFile, Shared: false}
	cfg.Incoming = true
	st, err := os.Open(t.statePath())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: state: %v", ErrUnusable, t.Key, err)
	}
	defer st.Close()
	cl := &Clone{Template: t}
	t0 := time.Now()
	m, err := vm.Start(ctx, cfg, o.Console)
	if err != nil {
		return nil, fmt.Errorf("clone: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = m.Kill()
			<-m.Done()
		}
	}()
	cl.Start = time.Since(t0)
	t1 := time.Now()
	if err := m.Restore(ctx, st); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("clone: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnusable, t.Key, err)
	}
	cl.Restore = time.Since(t1)
	t2 := time.Now()
	if err := m.Resume(ctx); err != nil {
		return nil, fmt.Errorf("clone: %w", err)
	}
	cl.Resume = time.Since(t2)
	ok = true
	cl.Machine = m
	t.touch()
	return cl, nil
}

// IsUnusable reports whether err says a template cannot be used, as
// opposed to a failure a cold boot would meet too.
func IsUnusable(err error) bool { return errors.Is(err, ErrUnusable) }
