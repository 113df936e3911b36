package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// Application snapshots (template/app.go): [Handle.Snapshot] saves a
// running arrow whose application initialized; a run whose Config names
// a Snapshot starts as a clone of it, its application running already,
// and is made unique by a thaw (guest.Thaw) where other runs get a spec.

// SnapshotOptions are what `arrow snapshot create` asks.
type SnapshotOptions struct {
	// Name is the snapshot's; Arrow the ID of the arrow taken, Config
	// what it runs (its clones show it).
	Name   string
	Arrow  string
	Config api.Config
	// Signal, when not 0, is sent to the application in every clone
	// once the clone is unique (guest.Thaw.Signal).
	Signal int
}

// Snapshot saves the running arrow as an application snapshot: its guest
// is frozen (no frame of it in flight), its VM paused and saved with its
// RAM and made a template of its own (template.CaptureApp), then resumed
// and thawed, unchanged. The arrow runs on whatever happens.
func (h *Handle) Snapshot(ctx context.Context, so SnapshotOptions) (*template.App, error) {
	if !h.running.Load() {
		return nil, fmt.Errorf("snapshot: %w", ErrNotRunning)
	}
	switch {
	case h.l.tmpl == nil:
		return nil, fmt.Errorf("snapshot: the arrow booted cold (%s): only an arrow cloned from a template can be snapshotted (no --cold, volumes, --kernel-args or other kernel)", h.l.cold)
	case h.p.tmpl == nil || h.p.tmpl.TapNet:
		return nil, errors.New("snapshot: an arrow on a bridge network cannot be snapshotted: its clones would share its address")
	case len(h.p.cfg.Drives) != 1:
		return nil, errors.New("snapshot: the arrow has no root disk of its own")
	}
	if err := template.CheckAppName(so.Name); err != nil {
		return nil, err
	}
	if err := h.s.agent.Freeze(ctx); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	meta := template.App{Name: so.Name, Arrow: so.Arrow, Config: so.Config, Spec: h.p.spec, Signal: so.Signal}
	if h.p.app != nil {
		// A snapshot of a snapshot's clone runs what the first ran.
		meta.Config, meta.Signal = h.p.app.Config, h.p.app.Signal
	}
	app, err := template.CaptureApp(ctx, *h.p.tmpl, h.l.tmpl.Inputs, h.l.m, h.p.cfg.Drives[0].Path, meta)
	// The arrow goes on: its VM first (a save leaves it paused), then
	// its guest, which sends again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := h.l.m.Resume(rctx); rerr != nil {
		return nil, errors.Join(err, fmt.Errorf("snapshot: resume the arrow: %w", rerr))
	}
	if terr := h.s.agent.Thaw(rctx, &guest.Thaw{}); terr != nil {
		return nil, errors.Join(err, fmt.Errorf("snapshot: the arrow's guest: %w", terr))
	}
	return app, err
}

// useSnapshot looks up the Config's Snapshot and takes the machine from
// it: its memory and CPUs, network, host access and accelerator (a
// clone's machine is its snapshot's).
func (o *Options) useSnapshot() error {
	if o.Snapshot == "" {
		return nil
	}
	app, err := template.LookupApp(o.Root, o.Snapshot)
	if err != nil {
		return fail(ExitArrowFailed, err)
	}
	sc := app.Config
	for _, c := range []struct {
		flag      string
		got, want int
	}{{"--memory", o.MemoryMiB, app.Inputs.MemoryMiB}, {"--cpus", o.CPUs, app.Inputs.CPUs}} {
		if c.got != 0 && c.got != c.want {
			return failf(ExitArrowFailed, "%s: snapshot %s's machine has %d: a clone cannot have another", c.flag, o.Snapshot, c.want)
		}
	}
	o.MemoryMiB, o.CPUs = app.Inputs.MemoryMiB, app.Inputs.CPUs
	if o.Stdin && (app.Spec == nil || !app.Spec.Stdin) {
		return failf(ExitArrowFailed, "-i: snapshot %s's application does not read its input (its arrow had none)", o.Snapshot)
	}
	switch {
	case o.Network == "":
		o.Network = sc.Network
	case netName(o.Network) != netName(sc.Network):
		return failf(ExitArrowFailed, "--network %s: snapshot %s was taken on the %s network, and its clones are on it too", o.Network, o.Snapshot, netName(sc.Network))
	}
	if o.Network != "" && o.Network != NetworkUser && o.Network != NetworkNone {
		return failf(ExitArrowFailed, "snapshot %s: a clone cannot join the bridge network %s", o.Snapshot, o.Network)
	}
	// No ready port: a clone's application is ready already, and its
	// arrow-init says so again after the thaw (guest/agent/snapshot.go).
	o.HostAccess, o.HostAliases, o.Accel = sc.HostAccess, sc.HostAliases, sc.Accel
	o.app = app
	return nil
}

// netName is a Config's network as a run has it.
func netName(n string) string {
	if n == "" {
		return NetworkUser
	}
	return n
}

// prepareApp settles a clone of the run's application snapshot: the
// machine it was taken on, which must be the one Arrow would build now
// (the same kernel, arrow-init and QEMU: a snapshot of another is refused,
// as a stale template is), with its disk.
func (p *plan) prepareApp(ctx context.Context, o *Options) error {
	t0 := time.Now()
	app := o.app
	if err := p.network(o); err != nil {
		return err
	}
	k, initPath, err := p.machine(o)
	if err != nil {
		return err
	}
	if !k.Tailored {
		return failf(ExitArrowFailed, "snapshot %s: kernel %s is not Arrow's", app.Name, k.Path)
	}
	if err := p.jail(o); err != nil {
		return fail(ExitArrowFailed, err)
	}
	p.cfg.Drives = []vm.Drive{{Path: app.DiskPath(), Serial: template.RootSerial, ReadOnly: true}}
	tc := templateConfig(o, p.cfg, initPath)
	in, err := tc.Inputs(ctx)
	if err != nil {
		return fail(ExitArrowFailed, err)
	}
	if in.Key() != app.Key {
		return failf(ExitArrowFailed, "snapshot %s cannot be used: %s changed since it was taken; take it again", app.Name, changedInputs(app.Inputs, in))
	}
	// The machine as the clone's QEMU will have it (template.Clone
	// makes it from tc): the template's initramfs and command line.
	p.cfg.Initrd, p.cfg.Cmdline = in.Initrd, guest.CmdlineTemplate
	if err := p.cfg.Validate(); err != nil {
		return fail(ExitArrowFailed, err)
	}
	p.tmpl, p.app = &tc, app
	// What exec takes its defaults from, and what a snapshot of this
	// clone records: the snapshot's application, with this run's network
	// and host name.
	p.spec = &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"?"}}
	if app.Spec != nil {
		s := *app.Spec
		p.spec = &s
	}
	p.spec.Hostname, p.spec.Network = o.Hostname, p.net
	p.timed("snapshot", t0)
	return nil
}

// changedInputs names what differs between a snapshot's machine and the
// one a run would have now.
func changedInputs(was, now template.Inputs) string {
	var what []string
	for _, c := range []struct {
		name     string
		was, now string
	}{
		{"the kernel", was.KernelSHA, now.KernelSHA},
		{"arrow-init", was.InitSHA, now.InitSHA},
		{"QEMU", was.QEMU, now.QEMU},
		{"the accelerator", was.Accel, now.Accel},
		{"the machine's devices", was.Layout, now.Layout},
		{"the format", was.Format, now.Format},
	} {
		if c.was != c.now {
			what = append(what, c.name)
		}
	}
	if len(what) == 0 {
		return "the machine"
	}
	s := what[0]
	for i, w := range what[1:] {
		if i == len(what)-2 {
			s += " and " + w
		} else {
			s += ", " + w
		}
	}
	return s
}

// cloneApp starts the run's VM as a clone of its snapshot. Failing to is
// the run's failure: there is no cold boot of an application snapshot.
func cloneApp(ctx context.Context, p *plan, o *Options, console io.Writer, l *launched) error {
	t0 := time.Now()
	t := &p.app.Template
	// The ports are published once the clone is unique (thaw): QEMU's
	// user-mode network would accept a connection while the state loads,
	// and the load would drop it, leaving the client hanging; and the
	// clone's application must not answer as its snapshot.
	tc := *p.tmpl
	tc.Forwards = nil
	cl, err := t.Clone(ctx, tc, template.CloneOptions{RootDisk: p.app.DiskPath(), Console: console})
	if err != nil {
		return failf(ExitArrowFailed, "snapshot %s: %w", p.app.Name, err)
	}
	l.m, l.tmplKey, l.tmpl, l.cold = cl.Machine, t.Key, t, mayClone
	l.phases = append(l.phases, Phase{"clone", time.Since(t0)})
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: cloned snapshot %s (QEMU start %v, restore %v, resume %v)\n", p.app.Name,
			cl.Start.Round(time.Microsecond), cl.Restore.Round(time.Microsecond), cl.Resume.Round(time.Microsecond))
	}
	return nil
}

// thaw makes the snapshot's clone unique and lets its application go on:
// Start for a clone of an application snapshot.
func (h *Handle) thaw(ctx context.Context) (StartInfo, error) {
	t0 := time.Now()
	seed := make([]byte, 64+16)
	if _, err := rand.Read(seed); err != nil {
		return StartInfo{}, fail(ExitArrowFailed, fmt.Errorf("entropy for the guest: %w", err))
	}
	t := &guest.Thaw{
		Clone:        true,
		TimeUnixNano: time.Now().UnixNano(),
		Seed:         seed[:64],
		MachineID:    hex.EncodeToString(seed[64:]),
		Hostname:     h.o.Hostname,
		Signal:       h.p.app.Signal,
	}
	if n := h.p.net; n != nil && len(n.Interfaces) == 1 {
		t.MAC = n.Interfaces[0].MAC
	}
	if err := h.s.agent.Thaw(ctx, t); err != nil {
		return StartInfo{}, fail(ExitArrowFailed, fmt.Errorf("snapshot %s: %w", h.p.app.Name, err))
	}
	for _, f := range h.p.tmpl.Forwards {
		if err := h.l.m.AddForward(ctx, 0, f); err != nil {
			return StartInfo{}, fail(ExitArrowFailed, fmt.Errorf("publish %s: %w", f, err))
		}
	}
	h.l.phases = append(h.l.phases, Phase{"thaw", time.Since(t0)})
	if h.o.Stdin {
		go h.s.forwardStdin()
	}
	h.running.Store(true)
	return h.info(), nil
}

// SnapshotInfo describes app as the API does.
func SnapshotInfo(app *template.App) api.Snapshot {
	s := api.Snapshot{
		Name: app.Name, Arrow: app.Arrow, Config: app.Config,
		MemoryMiB: app.Inputs.MemoryMiB, CPUs: app.Inputs.CPUs, Signal: app.Signal, Created: app.Created,
		SaveSeconds: app.SaveTime.Seconds(), BuildSeconds: app.BuildTime.Seconds(),
	}
	if st, err := os.Stat(app.MemFile); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			s.MemoryBytes = sys.Blocks * 512
		}
	}
	return s
}
