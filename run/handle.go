package run

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// Handle is a run whose VM is up: the caller's hold on it, as containerd's
// runtime Task is. [Launch] returns it once the VM process exists (so that
// a supervisor can put it into a cgroup by [Handle.Pid] before anything
// runs in it); [Handle.Start] hands arrow-init the application;
// [Handle.Wait] relays the application's streams and signals to its end.
// [Handle.Close] abandons the run, killing its VM; it is safe at any time
// and after Wait.
type Handle struct {
	o *Options
	p *plan
	l launched
	s *session

	healthy     chan struct{}
	healthyOnce sync.Once
	started     bool
	closeOnce   sync.Once
	// running is true from the application's start to its end: Exec
	// may run processes next to it then.
	running atomic.Bool
}

// Launch plans the run o describes and starts its VM: its spare, a clone
// of its template, or a cold boot (see [ColdReason]). The error is an
// [*Error] when Arrow could not start it; nothing is left behind then.
func Launch(ctx context.Context, o Options) (*Handle, error) {
	if err := o.useSnapshot(); err != nil {
		dropSpare(o.Spare)
		return nil, err
	}
	if err := o.setDefaults(); err != nil {
		dropSpare(o.Spare)
		return nil, fail(ExitArrowFailed, err)
	}
	p, err := makePlan(ctx, &o)
	if err != nil {
		dropSpare(o.Spare)
		return nil, err
	}
	var console io.Writer
	if o.Console {
		console = o.Log
	}
	l, err := launch(ctx, p, &o, console)
	if err != nil {
		p.release()
		return nil, err
	}
	h := &Handle{o: &o, p: p, l: l, healthy: make(chan struct{})}
	// One client owns a VM's control connection: a spare's is the one
	// that warmed it.
	agent := l.agent
	if agent == nil {
		agent = guest.NewClient(l.m.Control())
	}
	h.s = newSession(&o, p.cfg.Accel.Name, l.m, agent, h.markHealthy)
	return h, nil
}

// dropSpare kills a spare the run will not use.
func dropSpare(sp *template.Spare) {
	if sp != nil {
		_ = sp.Machine.Kill()
		<-sp.Machine.Done()
	}
}

// Accel is the accelerator the VM runs under.
func (h *Handle) Accel() vm.Accel { return h.p.cfg.Accel }

// Pid is the VM's QEMU process.
func (h *Handle) Pid() int { return h.l.m.Pid() }

// Start hands arrow-init the application and returns once it has it: at
// once for a clone, whose arrow-init said hello in its template already,
// and after arrow-init's hello (within the boot timeout) for a cold boot.
func (h *Handle) Start(ctx context.Context) (StartInfo, error) {
	if h.started {
		return StartInfo{}, fail(ExitArrowFailed, fmt.Errorf("run %s: started twice", h.p.id))
	}
	h.started = true
	if h.p.app != nil {
		return h.thaw(ctx)
	}
	t0 := time.Now()
	spec := h.p.spec
	if n := spec.Network; h.l.tmplKey != "" && n != nil && len(n.Interfaces) == 1 {
		// The clone's card is the template's, with the template's
		// address: arrow-init finds it by that and gives it the run's.
		// (A copy: the plan stays as it was made.)
		s, net := *spec, *n
		net.Interfaces = append([]guest.Interface(nil), n.Interfaces...)
		net.Interfaces[0].CardMAC = template.UserMAC
		s.Network = &net
		spec = &s
	}
	if err := h.s.start(ctx, spec, h.l.tmplKey == ""); err != nil {
		return StartInfo{}, err
	}
	if h.l.tmplKey == "" {
		h.l.phases = append(h.l.phases, Phase{"boot", time.Since(t0)})
	}
	h.running.Store(true)
	return h.info(), nil
}

// info is how the run's VM started.
func (h *Handle) info() StartInfo {
	return StartInfo{Template: h.l.tmplKey, Spare: h.l.spare, Cold: h.l.cold, Phases: h.phases()}
}

func (h *Handle) phases() []Phase {
	return append(append([]Phase(nil), h.p.phases...), h.l.phases...)
}

// Healthy is closed when arrow-init could connect to the Config's
// ReadyPort (see [guest.Spec.ReadyPort]).
func (h *Handle) Healthy() <-chan struct{} { return h.healthy }

func (h *Handle) markHealthy() { h.healthyOnce.Do(func() { close(h.healthy) }) }

// Wait relays the application's output, input, signals and terminal size
// until it ends, and returns how it ended. The error is nil whenever the
// application ran, whatever its exit status; it is an [*Error] when Arrow
// could not run it. The VM is gone when Wait returns.
func (h *Handle) Wait(ctx context.Context) (Result, error) {
	defer h.Close()
	res := Result{Accel: h.p.cfg.Accel, Template: h.l.tmplKey}
	if !h.started {
		return res, fail(ExitArrowFailed, fmt.Errorf("run %s: waited for before it started", h.p.id))
	}
	t1 := time.Now()
	status, err := h.s.relay(ctx)
	h.running.Store(false)
	h.l.phases = append(h.l.phases, Phase{"app", time.Since(t1)})
	res.Phases = h.phases()
	if err != nil {
		return res, err
	}
	res.Status = status
	// The exit status is the guest's last word, sent after it synced its
	// file systems: nothing is lost by stopping QEMU now rather than
	// waiting for the guest's reset to end it.
	t2 := time.Now()
	_ = h.l.m.Kill()
	<-h.l.m.Done()
	res.Phases = append(res.Phases, Phase{"poweroff", time.Since(t2)})
	if status.Reason == guest.InitFailed {
		return res, failf(ExitArrowFailed, "guest init: %s", status.Message)
	}
	return res, nil
}

// Close kills the run's VM, if it still runs, and releases what the run
// held (its root disk, its own cgroup).
func (h *Handle) Close() {
	h.closeOnce.Do(func() {
		h.running.Store(false)
		_ = h.l.m.Kill()
		<-h.l.m.Done()
		h.s.close()
		h.p.release()
	})
}

// Run runs the application o describes to its end: [Launch], then
// [Handle.Start] and [Handle.Wait]. The error is nil whenever the
// application ran, whatever its exit status; it is an [*Error] when Arrow
// could not run it.
func Run(ctx context.Context, o Options) (Result, error) {
	h, err := Launch(ctx, o)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	res := Result{Accel: h.p.cfg.Accel}
	if _, err = h.Start(ctx); err == nil {
		res, err = h.Wait(ctx)
	} else {
		res.Template, res.Phases = h.l.tmplKey, h.phases()
	}
	if h.o.Debug {
		start := "cold"
		if res.Template != "" {
			start = "template " + res.Template
		}
		if h.l.spare {
			start += " (a spare from the pool)"
		}
		fmt.Fprintf(h.o.Log, "arrow: start      %s\n", start)
		for _, ph := range res.Phases {
			fmt.Fprintf(h.o.Log, "arrow: %-10s %v\n", ph.Name, ph.Duration.Round(time.Microsecond))
		}
	}
	return res, err
}
