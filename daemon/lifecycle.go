package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/shim"
	"github.com/arrowsys/arrow/vm"
)

// Restart back-off: the first restart comes after backoffMin, each further
// consecutive failure doubles it up to backoffMax. A run that lasted
// stableRun resets the count.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	stableRun  = 10 * time.Second
)

// DefaultVMOverheadMiB is what a VM's QEMU needs on top of guest memory
// (its own code and heap, TCG's translation cache), allowed for in the
// cgroup limit.
const DefaultVMOverheadMiB = 192

func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// Create records a new arrow and starts it. It returns once the
// application started, or the run ended before it could (then the arrow is
// Exited and says why). With req.NoStart it returns the arrow Created, as
// docker create does: recorded, its volumes referenced and its network
// endpoint made, but no run until Start.
func (d *Daemon) Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error) {
	if err := req.Validate(); err != nil {
		return api.Arrow{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// What the host cannot back is refused now, not seconds into a boot.
	mem := req.Config.MemoryMiB
	if mem == 0 {
		mem = run.DefaultMemoryMiB
	}
	if err := vm.CheckHostMemory(mem, DefaultVMOverheadMiB); err != nil {
		return api.Arrow{}, fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	req.Fold()
	if req.Restart.Name == "" {
		req.Restart.Name = api.RestartNo
	}
	owner := peerOf(ctx)
	if err := d.checkHostPaths(ctx, owner, &req.Config); err != nil {
		return api.Arrow{}, err
	}
	id := newID()
	dir := d.arrowDir(id)
	// Its named volumes are created now (docker create does) and marked
	// as used by it, so that volume rm refuses them until the arrow goes,
	// running or not.
	if err := d.refVolumes(ctx, id, req.Config.Volumes); err != nil {
		return api.Arrow{}, err
	}
	r := &record{Arrow: api.Arrow{
		ID: id, Name: req.Name, Config: req.Config,
		Created: time.Now().UTC(), State: api.Created,
		Dir: dir, LogPath: filepath.Join(dir, shim.LogFile),
		AutoRemove: req.AutoRemove,
	}, Owner: owner}
	a := &arrow{rec: r}

	d.mu.Lock()
	if r.Name == "" {
		r.Name = d.freeNameLocked(randomName)
	} else if d.byNameLocked(r.Name) != nil {
		d.mu.Unlock()
		d.unrefVolumes(id, req.Config.Volumes)
		return api.Arrow{}, fmt.Errorf("%w: the name %q is in use by another arrow", ErrConflict, r.Name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.mu.Unlock()
		d.unrefVolumes(id, req.Config.Volumes)
		return api.Arrow{}, fmt.Errorf("arrow directory: %w", err)
	}
	if err := d.st.put(r); err != nil {
		d.mu.Unlock()
		os.RemoveAll(dir)
		d.unrefVolumes(id, req.Config.Volumes)
		return api.Arrow{}, fmt.Errorf("save state: %w", err)
	}
	d.arrows[id] = a
	d.mu.Unlock()
	d.mu.Lock()
	rc := *r
	d.mu.Unlock()
	ep, tap, err := d.attach(ctx, rc)
	if err != nil {
		// Nothing of it may stay: not the record, not the directory.
		d.mu.Lock()
		delete(d.arrows, id)
		a.removed = true
		a.changedLocked()
		_ = d.st.delete(id)
		d.mu.Unlock()
		os.RemoveAll(dir)
		d.unrefVolumes(id, req.Config.Volumes)
		return api.Arrow{}, err
	}
	if tap != nil {
		_ = d.update(a, func(r *record) { r.Endpoint, r.Tap = ep, tap })
	}
	d.emit(a, "create", nil, "")
	if req.NoStart {
		return d.snapshot(a), nil
	}

	a.op.Lock()
	return d.startAndAwait(ctx, a)
}

// startAndAwait starts a run of a, whose op lock the caller holds and which
// it releases, and returns once the application started or the run ended.
func (d *Daemon) startAndAwait(ctx context.Context, a *arrow) (api.Arrow, error) {
	rs, err := d.start(ctx, a)
	a.op.Unlock()
	if err != nil {
		return d.snapshot(a), err
	}
	d.awaitStarted(ctx, rs)
	if d.snapshot(a).Config.WaitsReady() {
		d.waitHealthy(ctx, rs)
	}
	return d.snapshot(a), nil
}

// awaitStarted returns once the run rs left Starting (it runs, or it
// ended first), or ctx ends. (It watches exited too, so that a move of
// the record refused as a bug cannot leave it waiting.)
func (d *Daemon) awaitStarted(ctx context.Context, rs *runState) {
	select {
	case <-rs.started:
	case <-rs.exited:
	case <-ctx.Done():
	}
}

// start starts a run of a (whose op lock the caller holds).
func (d *Daemon) start(ctx context.Context, a *arrow) (*runState, error) {
	d.mu.Lock()
	if a.removed {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name)
	}
	if a.run != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is already running", ErrConflict, a.rec.Name)
	}
	if a.timer != nil && a.timer.Stop() {
		d.wg.Done()
	}
	a.timer = nil
	r := *a.rec
	id, cfg, size := r.ID, r.Config, a.size
	d.mu.Unlock()

	// Again at every start, restarts by policy included: a path that was
	// fine at create may since have become a symlink out of the allow list.
	if err := d.checkHostPaths(ctx, r.Owner, &cfg); err != nil {
		return nil, d.startFailed(a, err)
	}
	dir := d.arrowDir(id)
	// No second shim over a live one: the lock says whether one lives,
	// whatever the record says. (The shim's own lock refuses it anyway;
	// this keeps the record from being marked exited for it.)
	if pid, err := shim.Holder(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConflict, err)
	} else if pid != 0 {
		return nil, fmt.Errorf("%w: a supervisor of %s (pid %d) is still running: stop it first", ErrConflict, r.Name, pid)
	}
	if err := shim.ClearExit(dir); err != nil {
		return nil, d.startFailed(a, fmt.Errorf("clear the last exit: %w", err))
	}
	l := &shim.Launch{
		ID: id, Config: cfg, Root: d.cfg.Root, Socket: d.socketPath(id), Tap: r.Tap,
		LogMaxSize: d.cfg.LogMaxSize, LogMaxFiles: d.cfg.LogMaxFiles,
	}
	if cfg.TTY && size.Rows > 0 && size.Cols > 0 {
		l.Size = &size
	}
	cgroupPath := ""
	if d.cg != nil {
		mem := cfg.MemoryMiB
		if mem == 0 {
			mem = run.DefaultMemoryMiB
		}
		cpus := cfg.CPUs
		if cpus == 0 {
			cpus = run.DefaultCPUs
		}
		// Fail closed: an arrow whose limits cannot be set does not
		// start (package jail: no part of a VM runs unconfined).
		g, err := d.cg.Create(id, cgroup.Limits{MemoryBytes: int64(mem+d.cfg.VMOverheadMiB) << 20, CPUs: float64(cpus),
			Pids: run.VMPids, NoSwap: true})
		if err != nil {
			return nil, d.startFailed(a, fmt.Errorf("cgroup: %w", err))
		}
		l.Cgroup, l.CgroupParent = id, d.cfg.CgroupParent
		cgroupPath = g.Path()
	}
	if err := shim.WriteLaunch(dir, l); err != nil {
		return nil, d.startFailed(a, fmt.Errorf("write launch: %w", err))
	}
	// Committed (Launching, see record.transition) before the shim
	// starts: a daemon killed from here on leaves a record saying a shim
	// may exist (see recover.go).
	d.mu.Lock()
	err := d.moveLocked(a, api.Starting, func(r *record) {
		r.Socket = l.Socket
		if cgroupPath != "" {
			r.Cgroup = cgroupPath
		}
	})
	if err == nil {
		a.starts++
	}
	d.mu.Unlock()
	if err != nil {
		return nil, d.startFailed(a, err)
	}
	d.crashPoint(crashLaunching)
	p, err := d.startShim(ctx, l, dir)
	if err != nil {
		return nil, d.startFailed(a, err)
	}
	d.crashPoint(crashShimStarted)
	rs := newRunState(shim.NewClient(l.Socket), p)
	start := processStart(p.Pid())
	var pending []*Attachment
	lateSize := false
	d.mu.Lock()
	err = d.updateLocked(a, func(r *record) {
		r.Launching, r.ShimPid, r.ShimStart = false, p.Pid(), start
	})
	if err == nil {
		// With the run recorded, under the same lock: an attach from now
		// on finds the run, and those that came before are taken here.
		// So is a size set since the launch was written.
		a.run = rs
		pending = a.takePendingLocked()
		lateSize = cfg.TTY && a.size != size
		size = a.size
	}
	d.mu.Unlock()
	if err != nil {
		// Not recorded: the shim must not run. Unconfirmed, it ends.
		p.Abandon()
		<-p.Done
		return nil, d.startFailed(a, err)
	}
	d.crashPoint(crashRecorded)
	// The shim answers on its socket but waits for "go" to start the
	// VM: the attaches that waited for this run join it now, and see
	// its output from the first byte.
	d.joinPending(rs, pending)
	if lateSize {
		// Before "go": the shim takes it as the initial size.
		rctx, cancel := context.WithTimeout(d.ctx, attachJoinTimeout)
		if err := rs.client.Resize(rctx, size.Rows, size.Cols); err != nil {
			fmt.Fprintf(d.cfg.Log, "arrowd: %s: terminal size: %v\n", id[:12], err)
		}
		cancel()
	}
	if err := p.Commit(); err != nil {
		// The shim is gone already; the monitor records how it ended.
		fmt.Fprintf(d.cfg.Log, "arrowd: %s: confirm the shim: %v\n", id[:12], err)
	}
	d.emit(a, "start", nil, "")
	d.goMonitor(a, rs, p.Pid(), start)
	return rs, nil
}

// startShim starts the shim of the arrow in dir: a spare from the pool
// when one fits, a new shim otherwise.
func (d *Daemon) startShim(ctx context.Context, l *shim.Launch, dir string) (*shim.Process, error) {
	if s, ok := shapeOf(l.Config); ok && l.Tap == nil {
		if sp := d.pool.take(s); sp != nil {
			err := sp.claim(ctx, dir)
			if err == nil {
				return sp.proc, nil
			}
			fmt.Fprintf(d.cfg.Log, "arrowd: %s: claiming a spare: %v (starting a shim)\n", l.ID[:12], err)
		}
	}
	return shim.Start(ctx, d.cfg.Exe, []string{"shim", dir}, dir)
}

// startFailed records a run that could not start.
func (d *Daemon) startFailed(a *arrow, err error) error {
	d.mu.Lock()
	_ = d.moveLocked(a, api.Exited, func(r *record) {
		r.ExitCode, r.Error, r.FinishedAt = run.ExitArrowFailed, err.Error(), time.Now().UTC()
	})
	d.mu.Unlock()
	d.removeCgroup(a.rec.ID)
	// The run the attaches waited for will not come.
	d.failPending(a, fmt.Errorf("%w: the start failed: %w", ErrConflict, err))
	code := run.ExitArrowFailed
	d.emit(a, "die", &code, err.Error())
	if a.rec.AutoRemove {
		d.goAutoRemove(a)
	}
	return err
}

// goMonitor follows the run rs to its end.
func (d *Daemon) goMonitor(a *arrow, rs *runState, shimPid int, shimStart uint64) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		st, err := rs.client.WaitRunning(d.ctx)
		if d.ctx.Err() != nil {
			return
		}
		if err == nil && st.State == api.Running {
			if st.Accel == "" {
				st.Accel = d.accelOf(a)
			}
			observed := false
			d.mu.Lock()
			if a.run == rs && a.rec.State == api.Starting {
				_ = d.moveLocked(a, api.Running, func(r *record) {
					r.StartedAt, r.Pid, r.BootSeconds, r.Accel = st.StartedAt.UTC(), st.Pid, st.BootSeconds, st.Accel
					r.Template, r.Spare, r.StartPhases = st.Template, st.Spare, st.Phases
					observed = true
				})
			}
			d.mu.Unlock()
			if observed {
				d.metrics.startLatency.Observe(st.BootSeconds)
				d.metrics.starts.WithLabelValues(startedHow(st.Template, st.Spare)).Inc()
			}
			if d.snapshot(a).Config.WaitsReady() {
				go d.probeReady(a, rs)
			}
		}
		var exit *shim.Exit
		var shimDone <-chan struct{} // nil, never ready, for an adopted shim
		if rs.proc != nil {
			shimDone = rs.proc.Done
		}
	wait:
		for {
			st, err := rs.client.Wait(d.ctx)
			if d.ctx.Err() != nil {
				return // the daemon stops; the arrow runs on
			}
			if err == nil && st.Exit != nil {
				exit = st.Exit
				break
			}
			if !processAlive(shimPid, shimStart) {
				break
			}
			// The shim lives but did not answer (it is ending, or its
			// socket failed): ask again. A shim this daemon started says
			// when it ended; one adopted from an earlier daemon is not
			// its child, and how it fares is known only by looking, so
			// that is polled.
			select {
			case <-shimDone:
				break wait
			case <-time.After(200 * time.Millisecond):
			case <-d.ctx.Done():
				return
			}
		}
		if rs.proc != nil {
			<-rs.proc.Done
		}
		if exit == nil {
			exit = d.exitOf(a.rec.ID)
		}
		d.finished(a, rs, exit)
	}()
}

// finished records the end of run rs and applies the restart policy.
func (d *Daemon) finished(a *arrow, rs *runState, e *shim.Exit) {
	d.mu.Lock()
	if a.run != rs || a.removed {
		d.mu.Unlock()
		return
	}
	r := a.rec
	ranFor := e.FinishedAt.Sub(r.StartedAt)
	if r.StartedAt.IsZero() {
		ranFor = 0
	}
	// As docker: every restart of a run that ended within stableRun waits
	// twice as long as the last, whatever its exit status, so that an
	// application that ends at once cannot keep the host busy.
	if ranFor >= stableRun {
		r.Failures = 0
	} else {
		r.Failures++
	}
	restart := d.shouldRestart(r, e.ExitCode, e.OOMKilled)
	to := api.Exited
	if restart {
		to = api.Restarting
	}
	_ = d.moveLocked(a, to, func(r *record) {
		r.ExitCode, r.Error, r.OOMKilled = e.ExitCode, e.Error, e.OOMKilled
		r.FinishedAt = e.FinishedAt.UTC()
		if e.Accel != "" {
			r.Accel = e.Accel
		}
		if e.Template != "" || len(e.Phases) > 0 {
			r.Template, r.Spare, r.StartPhases = e.Template, e.Spare, e.Phases
		}
		if restart {
			r.Restarts++
		}
	})
	a.run = nil
	failures, id, autoRemove := r.Failures, r.ID, r.AutoRemove
	d.mu.Unlock()

	// Before the run counts as ended, for a restart waits for that and
	// then makes the arrow's group again, which must not be removed
	// under its new shim; and outside d.mu, since removing a group whose
	// tasks must be killed first takes seconds.
	d.removeCgroup(id)
	close(rs.exited)
	os.Remove(d.socketPath(id))
	code := e.ExitCode
	d.emit(a, "die", &code, e.Error)
	if e.OOMKilled {
		d.emit(a, "oom", nil, "")
	}
	if restart {
		d.metrics.restarts.Inc()
		d.scheduleRestart(a, backoff(failures))
	}
	if autoRemove && !restart {
		d.goAutoRemove(a)
	}
}

// endLeased ends the arrow ref whose client, holding a wait with a lease
// (POST /wait?next=1&lease=1), went before its run ended: an AutoRemove
// arrow is stopped at once and removed, another killed. In the
// background: the client is gone, no one waits for this.
func (d *Daemon) endLeased(ref string) {
	a, err := d.resolve(ref)
	if err != nil {
		return
	}
	fmt.Fprintf(d.cfg.Log, "arrowd: %s: its client went before its run ended: ending it\n", a.rec.ID[:12])
	if a.rec.AutoRemove {
		d.goAutoRemove(a)
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = d.Kill(d.ctx, a.rec.ID, syscall.SIGKILL)
	}()
}

// goAutoRemove removes a, an arrow created with AutoRemove whose run
// ended (or never started), in the background: the caller may hold a's op
// lock, which Remove takes. Whoever waited for the run's end was answered
// before (see WaitNext), so nothing of it is lost but its record.
func (d *Daemon) goAutoRemove(a *arrow) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.Remove(d.ctx, a.rec.ID, true); err != nil && !errors.Is(err, ErrNotFound) && d.ctx.Err() == nil {
			fmt.Fprintf(d.cfg.Log, "arrowd: auto-remove %s: %v\n", a.rec.ID[:12], err)
		}
	}()
}

// shouldRestart applies r's restart policy to a run that ended with code;
// oom when the host killed its VM for exceeding the memory limit.
func (d *Daemon) shouldRestart(r *record, code int, oom bool) bool {
	if r.StoppedByUser || d.ctx.Err() != nil {
		return false
	}
	if oom {
		// It would only be killed again: report it and leave it.
		return false
	}
	switch r.Restart.Name {
	case api.RestartAlways, api.RestartUnlessStopped:
		return true
	case api.RestartOnFailure:
		return code != 0 && (r.Restart.MaxRetries == 0 || r.Restarts < r.Restart.MaxRetries)
	}
	return false
}

// scheduleRestart starts a again after delay, unless it was stopped or
// removed meanwhile.
func (d *Daemon) scheduleRestart(a *arrow, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a.timer != nil && a.timer.Stop() {
		d.wg.Done()
	}
	d.wg.Add(1)
	a.timer = time.AfterFunc(delay, func() {
		defer d.wg.Done()
		if d.ctx.Err() != nil {
			return
		}
		a.op.Lock()
		defer a.op.Unlock()
		d.mu.Lock()
		still := !a.removed && a.rec.State == api.Restarting && a.run == nil
		d.mu.Unlock()
		if !still {
			return
		}
		if _, err := d.start(d.ctx, a); err != nil {
			fmt.Fprintf(d.cfg.Log, "arrowd: restart %s: %v\n", a.rec.Name, err)
			return
		}
		d.emit(a, "restart", nil, "")
	})
}

// cancelRestart turns a pending restart into Exited; the caller holds d.mu.
func (d *Daemon) cancelRestartLocked(a *arrow) bool {
	if a.rec.State != api.Restarting || a.run != nil {
		return false
	}
	if a.timer != nil && a.timer.Stop() {
		d.wg.Done()
	}
	a.timer = nil
	_ = d.moveLocked(a, api.Exited, func(r *record) { r.StoppedByUser = true })
	return true
}

func (d *Daemon) removeCgroup(id string) {
	if d.cg == nil {
		return
	}
	g, err := d.cg.Open(id)
	if err != nil {
		return
	}
	err = g.Remove()
	if errors.Is(err, syscall.EBUSY) {
		// The run ended, yet processes remain in its group (something
		// its VM left behind): they are the arrow's, and go with it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err = g.Kill(ctx); err == nil {
			err = g.Remove()
		}
		cancel()
	}
	if err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: %s: remove cgroup: %v\n", id[:12], err)
	}
}

// Stop stops the arrow: SIGTERM to the application, SIGKILL after timeout,
// and returns once it ended. Stopping an arrow that is not running is not
// an error, as in docker.
func (d *Daemon) Stop(ctx context.Context, ref string, timeout time.Duration) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	return d.stopLocked(ctx, a, timeout)
}

func (d *Daemon) stopLocked(ctx context.Context, a *arrow, timeout time.Duration) error {
	d.mu.Lock()
	if d.cancelRestartLocked(a) {
		d.mu.Unlock()
		return nil
	}
	rs := a.run
	if rs == nil {
		d.mu.Unlock()
		return nil
	}
	_ = d.updateLocked(a, func(r *record) { r.StoppedByUser = true })
	d.mu.Unlock()
	d.unpauseForSignal(ctx, a, rs)
	d.emit(a, "stop", nil, "")
	if err := rs.client.Stop(ctx, timeout); err != nil && !shim.IsGone(err) {
		return err
	}
	// The shim kills the VM at the latest killGrace after the timeout;
	// allow for that and for QEMU's exit.
	wait := time.NewTimer(timeout + 15*time.Second)
	defer wait.Stop()
	select {
	case <-rs.exited:
		return nil
	case <-wait.C:
		return fmt.Errorf("%s did not stop within %v of SIGKILL", a.rec.Name, 15*time.Second)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill sends sig to the arrow's application. A terminating signal counts
// as a user's stop: the restart policy does not bring the arrow back.
func (d *Daemon) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	terminating := sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT
	if terminating && d.cancelRestartLocked(a) {
		d.mu.Unlock()
		return nil
	}
	rs := a.run
	if rs == nil {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s is not running", ErrConflict, a.rec.Name)
	}
	if terminating {
		_ = d.updateLocked(a, func(r *record) { r.StoppedByUser = true })
	}
	d.mu.Unlock()
	d.unpauseForSignal(ctx, a, rs)
	d.emit(a, "kill", nil, sig.String())
	return rs.client.Signal(ctx, sig)
}

// StartExisting starts an arrow that is not running (`arrow start`).
func (d *Daemon) StartExisting(ctx context.Context, ref string) (api.Arrow, error) {
	a, err := d.resolve(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	a.op.Lock()
	return d.startAndAwait(ctx, a) // (start cancels a pending restart)
}

// Restart stops the arrow (if it runs) and starts it again.
func (d *Daemon) Restart(ctx context.Context, ref string, timeout time.Duration) (api.Arrow, error) {
	a, err := d.resolve(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	a.op.Lock()
	if err := d.stopLocked(ctx, a, timeout); err != nil {
		a.op.Unlock()
		return d.snapshot(a), err
	}
	d.emit(a, "restart", nil, "")
	return d.startAndAwait(ctx, a)
}

// Remove deletes a stopped arrow, its logs and files; with force a running
// one is killed first.
func (d *Daemon) Remove(ctx context.Context, ref string, force bool) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	d.cancelRestartLocked(a)
	rs := a.run
	d.mu.Unlock()
	if rs != nil {
		if !force {
			return fmt.Errorf("%w: %s is running: stop it first, or remove with force", ErrConflict, a.rec.Name)
		}
		if err := d.stopLocked(ctx, a, 0); err != nil {
			return err
		}
	}
	d.mu.Lock()
	id := a.rec.ID
	if err := d.st.delete(id); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("remove state: %w", err)
	}
	a.removed = true
	a.changedLocked()
	delete(d.arrows, id)
	d.mu.Unlock()
	d.failPending(a, fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name))
	d.removeCgroup(id)
	d.unrefVolumes(id, a.rec.Config.Volumes)
	d.detach(*a.rec) // a is removed: no one else changes its record now
	os.Remove(d.socketPath(id))
	if err := os.RemoveAll(d.arrowDir(id)); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: remove %s: %v\n", d.arrowDir(id), err)
	}
	d.emit(a, "destroy", nil, "")
	return nil
}

// Wait waits for the arrow's current run to end (at once when none runs)
// and returns its exit status.
func (d *Daemon) Wait(ctx context.Context, ref string) (api.WaitResponse, error) {
	a, err := d.resolve(ref)
	if err != nil {
		return api.WaitResponse{}, err
	}
	d.mu.Lock()
	rs := a.run
	d.mu.Unlock()
	if rs != nil {
		select {
		case <-rs.exited:
		case <-ctx.Done():
			return api.WaitResponse{}, ctx.Err()
		}
	}
	s := d.snapshot(a)
	return api.WaitResponse{ExitCode: s.ExitCode, Error: s.Error}, nil
}

// WaitNext waits for the end of the arrow's current run or, when none
// runs (created, exited, waiting to restart), of its next run, and
// returns its exit status (docker's wait condition next-exit: docker run
// asks it before it starts the container). A next start that fails ends
// it too, with that failure's status. It ends with ctx, and with an
// error when the arrow is removed before that run.
func (d *Daemon) WaitNext(ctx context.Context, ref string) (api.WaitResponse, error) {
	wait, err := d.OpenWaitNext(ref)
	if err != nil {
		return api.WaitResponse{}, err
	}
	return wait(ctx)
}

// OpenWaitNext registers a [Daemon.WaitNext] and returns the wait: the
// run it waits for is fixed when OpenWaitNext returns, so a front end
// can answer its client, have the arrow started, and still get that
// run's status, even when the arrow is removed as it ends (AutoRemove).
func (d *Daemon) OpenWaitNext(ref string) (func(context.Context) (api.WaitResponse, error), error) {
	a, err := d.resolve(ref)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	starts, removed, name := a.starts, a.removed, a.rec.Name
	d.mu.Unlock()
	if removed {
		return nil, fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, name)
	}
	return func(ctx context.Context) (api.WaitResponse, error) { return d.waitNext(ctx, a, starts) }, nil
}

// waitNext waits for the end of the run of a that is current, or the
// first launched after its count of starts was starts.
func (d *Daemon) waitNext(ctx context.Context, a *arrow, starts uint64) (api.WaitResponse, error) {
	d.mu.Lock()
	for {
		if rs := a.run; rs != nil {
			d.mu.Unlock()
			select {
			case <-rs.exited:
			case <-ctx.Done():
				return api.WaitResponse{}, ctx.Err()
			}
			s := d.snapshot(a)
			return api.WaitResponse{ExitCode: s.ExitCode, Error: s.Error}, nil
		}
		// A run was launched since, and is gone already, or never got
		// its shim (its start failed): its end is the one waited for,
		// whether or not the arrow was removed since.
		if a.starts != starts && a.rec.State != api.Starting {
			r := a.rec.Arrow
			d.mu.Unlock()
			return api.WaitResponse{ExitCode: r.ExitCode, Error: r.Error}, nil
		}
		if a.removed {
			d.mu.Unlock()
			return api.WaitResponse{}, fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name)
		}
		changed := a.nextChangeLocked()
		d.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return api.WaitResponse{}, ctx.Err()
		case <-d.ctx.Done():
			return api.WaitResponse{}, fmt.Errorf("%w: arrowd is stopping", ErrConflict)
		}
		d.mu.Lock()
	}
}

// Get returns the arrow ref names.
func (d *Daemon) Get(ref string) (api.Arrow, error) {
	a, err := d.resolve(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	return d.snapshot(a), nil
}

// List returns the arrows, newest first; only the running ones (starting,
// running, restarting) unless all.
func (d *Daemon) List(all bool) []api.Arrow {
	d.mu.Lock()
	out := make([]api.Arrow, 0, len(d.arrows))
	for _, a := range d.arrows {
		if all || a.rec.State != api.Exited && a.rec.State != api.Created {
			out = append(out, a.rec.Arrow)
		}
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// resolve finds an arrow by full ID, name, or unique ID prefix.
func (d *Daemon) resolve(ref string) (*arrow, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: no such arrow: empty name", ErrNotFound)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.arrows[ref]; ok {
		return a, nil
	}
	if a := d.byNameLocked(ref); a != nil {
		return a, nil
	}
	var found *arrow
	for id, a := range d.arrows {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, fmt.Errorf("%w: %q matches more than one arrow: give more of the ID", ErrInvalid, ref)
			}
			found = a
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no such arrow: %q", ErrNotFound, ref)
	}
	return found, nil
}

func (d *Daemon) byNameLocked(name string) *arrow {
	for _, a := range d.arrows {
		if a.rec.Name == name {
			return a
		}
	}
	return nil
}

// freeNameLocked makes up an unused name with next (randomName), as
// docker does.
func (d *Daemon) freeNameLocked(next func() string) string {
	for {
		n := next()
		if d.byNameLocked(n) == nil {
			return n
		}
	}
}

// accelOf is the accelerator a's VM runs under: the one it asked for, or
// the one detection picks.
func (d *Daemon) accelOf(a *arrow) string {
	d.mu.Lock()
	want := a.rec.Config.Accel
	d.mu.Unlock()
	if want == "kvm" || want == "tcg" {
		return want
	}
	return d.accel.Name
}
