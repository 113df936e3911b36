// Package daemon is arrowd, the Arrow System service: it owns the detached
// arrows of one data root, runs each under a shim (package shim), keeps
// their state in a crash-safe store, applies restart policies, confines
// their VMs in cgroups, and serves the API of package api over HTTP.
//
// The daemon holds no VM itself. Everything it knows is either in its
// store or obtainable from a shim's socket and files, so that `kill -9` of
// arrowd loses nothing: the next arrowd reads the store, finds the shims
// still running by PID and start time, and learns how the others ended
// from the exit records they left.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/network"
	"github.com/arrowsys/arrow/shim"
	"github.com/arrowsys/arrow/vm"
)

// Config configures a daemon.
type Config struct {
	// Root is Arrow's data root: the state database, each arrow's
	// directory (launch description, logs, exit record), images, kernels.
	Root string
	// RunDir holds the sockets: the API's and every shim's.
	RunDir string
	// Exe is the Arrow binary started as `Exe shim DIR` for each arrow.
	Exe string
	// Version is reported by GET /v1/info.
	Version string
	// Log receives the daemon's own diagnostics.
	Log io.Writer
	// CgroupParent is the cgroup under which each arrow gets its own
	// ("arrow"); empty disables cgroups.
	CgroupParent string
	// BridgeNetworks lets the daemon manage bridge networks (as root):
	// their bridges, taps and nftables table are the host's, so only one
	// daemon on a host may, which a lock file enforces.
	BridgeNetworks bool
	// VMOverheadMiB is added to an arrow's memory for its cgroup limit;
	// DefaultVMOverheadMiB when 0.
	VMOverheadMiB int
	// PoolSize is how many spare VMs (warmed clones of a template) the
	// daemon keeps ready at least for each machine shape arrows were
	// started with: as many as runs took in the last 30 s when that is
	// more (see demandWant); 0 keeps none unless asked (POST /v1/pool).
	// MaxSpares bounds the spares of all shapes; DefaultMaxSpares when 0.
	PoolSize  int
	MaxSpares int
	// LogMaxSize and LogMaxFiles bound each arrow's log.
	LogMaxSize  int64
	LogMaxFiles int
	// HostPaths says which host paths API clients other than root may
	// name (volumes, includes, rootfs, kernel, image paths); the zero
	// policy allows none.
	HostPaths HostPathPolicy
	// CrashAt is a test hook: the daemon kills itself with SIGKILL at
	// the failpoint of that name (see crashPoint); empty in service.
	CrashAt string
}

// Errors the API maps to statuses.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid request")
)

// Daemon is a running arrowd.
type Daemon struct {
	cfg     Config
	st      *store
	cg      *cgroup.Manager  // nil: no cgroups here
	nets    *network.Manager // nil: no bridge networks (not root)
	netLock *os.File         // held while nets is
	accel   vm.Accel
	events  *broker
	metrics *metrics
	pool    *pool

	// ctx ends with the daemon; background work (monitors, restarts)
	// stops with it, arrows do not.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	arrows map[string]*arrow
}

// arrow is the daemon's in-memory handle on one arrow.
type arrow struct {
	// op serialises the operations that start or end runs (start, stop,
	// kill, remove, restart) on this arrow.
	op sync.Mutex

	// Guarded by Daemon.mu:
	rec     *record
	run     *runState   // the current run, nil when none
	timer   *time.Timer // pending restart
	removed bool
	// changed, once asked for (nextChangeLocked), is closed at the
	// arrow's next change of state or its removal: for waits that span
	// runs, such as following the logs of an arrow that restarts.
	changed chan struct{}
	// starts counts the runs launched (moves to starting), for waits
	// for the next run's end (WaitNext).
	starts uint64
	// pending are the attaches waiting for the next run (see attach.go).
	pending []*Attachment
	// size is the latest terminal size set (a TTY arrow's; zero for
	// none): the next run's initial size.
	size guest.WindowSize
}

// runState is one run of an arrow: one shim.
//
// Its channels are closed once each, under Daemon.mu, as the run moves
// on, so that whoever waits for that wakes at once (no polling of the
// record): started and ended by Daemon.moveLocked, settled by
// probeReady, exited by finished.
type runState struct {
	client *shim.Client
	proc   *shim.Process // nil when an earlier daemon started the shim

	started chan struct{} // the run left starting: it runs, or it ended first
	settled chan struct{} // its ready port's health is known: healthy or unhealthy
	ended   chan struct{} // the record says the run ended (exited or restarting)
	exited  chan struct{} // the run ended and its cgroup and socket are gone
}

func newRunState(client *shim.Client, proc *shim.Process) *runState {
	return &runState{
		client: client, proc: proc,
		started: make(chan struct{}), settled: make(chan struct{}),
		ended: make(chan struct{}), exited: make(chan struct{}),
	}
}

// New opens the daemon's state and finds the arrows a previous daemon
// left. Call [Daemon.Close] when done.
func New(cfg Config) (*Daemon, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.VMOverheadMiB == 0 {
		cfg.VMOverheadMiB = DefaultVMOverheadMiB
	}
	// The data root and the arrows' directories are private; the runtime
	// directory only lets the socket's group reach the socket.
	for _, dir := range []string{cfg.Root, dataroot.Root(cfg.Root).Arrows()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("arrowd: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.RunDir, 0o711); err != nil {
		return nil, fmt.Errorf("arrowd: %w", err)
	}
	// The shims' sockets go there: it must be no one else's.
	if err := CheckRuntimeDir(cfg.RunDir); err != nil {
		return nil, fmt.Errorf("arrowd: %w", err)
	}
	st, err := openStore(dataroot.Root(cfg.Root).DB())
	if err != nil {
		return nil, fmt.Errorf("arrowd: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cfg: cfg, st: st, events: newBroker(), ctx: ctx, cancel: cancel, arrows: make(map[string]*arrow)}
	d.metrics = newMetrics(d)
	d.pool = newPool(d, cfg.PoolSize, cfg.MaxSpares)
	d.pool.goDecay()
	d.accel, _ = vm.DetectAccel("auto", vm.LocalHost())
	if cfg.CgroupParent != "" {
		// Fail closed: without cgroups no arrow's limits hold. With
		// --cgroup-parent "" each arrow's run makes a group of its own
		// under run.RunCgroupParent instead, and fails when it cannot.
		m, err := cgroup.New(cfg.CgroupParent)
		if err != nil {
			st.close()
			cancel()
			return nil, fmt.Errorf("arrowd: cgroups: %w", err)
		}
		d.cg = m
	}
	d.recover()
	d.openNetworks()
	return d, nil
}

// Close stops the daemon's own work. Arrows keep running; a new daemon on
// the same root takes them over.
func (d *Daemon) Close() error {
	d.pool.close()
	d.cancel()
	d.mu.Lock()
	for _, a := range d.arrows {
		if a.timer != nil && a.timer.Stop() {
			d.wg.Done()
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
	if d.nets != nil {
		_ = d.nets.Close() // stops DNS; bridges, taps and rules stay for the arrows
		d.netLock.Close()
	}
	return d.st.close()
}

func (d *Daemon) arrowDir(id string) string { return dataroot.Root(d.cfg.Root).Arrow(id) }

func (d *Daemon) socketPath(id string) string { return filepath.Join(d.cfg.RunDir, id+".sock") }

// recover loads the store and reattaches to the arrows' shims. Shims
// that no record names are ended first (see endOrphans), before anything
// here can start a new one; an arrow left launching is settled by
// recoverLaunch.
func (d *Daemon) recover() {
	recs, errs := d.st.all()
	for _, err := range errs {
		fmt.Fprintf(d.cfg.Log, "arrowd: %v\n", err)
	}
	for _, r := range recs {
		d.arrows[r.ID] = &arrow{rec: r}
	}
	d.endOrphans()
	for _, r := range recs {
		a := d.arrows[r.ID]
		switch r.State {
		case api.Starting, api.Running:
			if r.Launching {
				d.recoverLaunch(a)
				continue
			}
			rs := newRunState(shim.NewClient(r.Socket), nil)
			if r.State == api.Running {
				close(rs.started)
			}
			if r.Health == healthHealthy || r.Health == healthUnhealthy {
				close(rs.settled)
			}
			a.run = rs
			if processAlive(r.ShimPid, r.ShimStart) {
				d.goMonitor(a, rs, r.ShimPid, r.ShimStart)
				d.goSyncPaused(a, rs)
				continue
			}
			// It ended while no daemon watched: its exit record says how.
			d.finished(a, rs, d.exitOf(r.ID))
		case api.Restarting:
			d.scheduleRestart(a, backoff(r.Failures))
		}
	}
	// An arrow to be removed when its run ends belongs to a client
	// (a foreground arrow run) whose streams ran through the daemon
	// that went: no one waits for it now. It is stopped and removed, so
	// that nothing of it stays. (One whose run ended meanwhile may be being
	// removed by finished already: the second removal finds none.)
	for _, r := range recs {
		if r.AutoRemove {
			fmt.Fprintf(d.cfg.Log, "arrowd: %s: its client went with the last daemon: removing it\n", r.ID[:12])
			d.goAutoRemove(d.arrows[r.ID])
		}
	}
}

// exitOf reads the exit record of an arrow whose shim is gone.
func (d *Daemon) exitOf(id string) *shim.Exit {
	e, err := shim.ReadExit(d.arrowDir(id))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &shim.Exit{ExitCode: 255, FinishedAt: time.Now(), Error: "its supervisor ended without recording an exit status (killed, or the host restarted)"}
	case err != nil:
		return &shim.Exit{ExitCode: 255, FinishedAt: time.Now(), Error: fmt.Sprintf("its supervisor's exit record is unreadable: %v", err)}
	}
	return e
}

// newID returns a 256-bit random ID, hex.
func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// snapshot copies an arrow's record for a reader.
func (d *Daemon) snapshot(a *arrow) api.Arrow {
	d.mu.Lock()
	defer d.mu.Unlock()
	return a.rec.Arrow
}

// update changes an arrow's record and commits it.
func (d *Daemon) update(a *arrow, f func(r *record)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.updateLocked(a, f)
}

func (d *Daemon) updateLocked(a *arrow, f func(r *record)) error {
	if a.removed {
		return fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name)
	}
	f(a.rec)
	if err := d.st.put(a.rec); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: save %s: %v\n", a.rec.ID, err)
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
