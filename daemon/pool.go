package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/shim"
)

// The pool: arrowd keeps spare shims (shim.ServeSpare), each holding a
// warmed, paused clone of a template, for the machine shapes arrows were
// recently started with. Starting an arrow of such a shape claims a spare
// instead of starting a shim, and a replacement is started in the
// background. A spare of a template that went stale in the meantime (a new
// kernel, say) is never run: the run compares template keys and starts a
// clone of the current template instead, killing the spare.

// Pool sizes.
const (
	// DefaultMaxSpares bounds the spares of all shapes together when
	// Config.MaxSpares is 0.
	DefaultMaxSpares = 4
	// refillDelay is how long a refill waits after a spare was taken,
	// so that the arrow that took it is not slowed down by the next
	// spare's start on a busy host.
	refillDelay = 500 * time.Millisecond
	// spareHeadroomMiB is the memory a host must have available, beyond
	// a spare's guest memory, for another spare to be started.
	spareHeadroomMiB = 512
	// demandWindow is how far back the pool counts the spares taken of
	// a shape: it keeps as many as were taken within it (at least its
	// base, at most the maximum), so that a burst of runs finds spares
	// and an idle shape goes back to its base once the window passed.
	demandWindow = 30 * time.Second
)

// demandWant is how many spares a shape should have: as many as were
// taken in the window up to now (takes, oldest first), at least base
// (--pool-size, or what POST /v1/pool asked), at most limit
// (--max-spares).
func demandWant(base int, takes []time.Time, now time.Time, window time.Duration, limit int) int {
	recent := 0
	for _, t := range takes {
		if now.Sub(t) < window {
			recent++
		}
	}
	return min(max(base, recent), limit)
}

// shape is what spares are kept by: runs of one shape clone one template.
type shape struct {
	MemoryMiB int
	CPUs      int
	Network   string // "" (user mode) or "none"
	Accel     string
}

func (s shape) String() string {
	n := s.Network
	if n == "" {
		n = "user"
	}
	return fmt.Sprintf("%d MiB, %d vCPUs, network %s", s.MemoryMiB, s.CPUs, n)
}

// shapeOf is the shape of runs of c, and whether such runs can use a
// spare at all (run.MayUseSpare).
func shapeOf(c api.Config) (shape, bool) {
	s := shape{MemoryMiB: c.MemoryMiB, CPUs: c.CPUs, Network: c.Network, Accel: c.Accel}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = run.DefaultMemoryMiB
	}
	if s.CPUs == 0 {
		s.CPUs = run.DefaultCPUs
	}
	if s.Network == "user" {
		s.Network = ""
	}
	if s.Accel == "auto" {
		s.Accel = ""
	}
	o := shim.Options(&c, "")
	return s, run.MayUseSpare(&o)
}

// spareShim is one spare shim process.
type spareShim struct {
	shape  shape
	dir    string
	socket string
	proc   *shim.Process
}

// pool holds the spares of one daemon.
type pool struct {
	d    *Daemon
	size int // spares kept per hot shape
	max  int // spares in all

	now func() time.Time

	mu       sync.Mutex
	ready    map[shape][]*spareShim
	starting map[shape]int
	want     map[shape]int         // hot shapes: how many spares each should have now (demandWant)
	base     map[shape]int         // hot shapes: how many they keep however idle
	takes    map[shape][]time.Time // hot shapes: their takes within the demand window, oldest first
	closed   bool
}

func newPool(d *Daemon, size, max int) *pool {
	if max <= 0 {
		max = DefaultMaxSpares
	}
	// Spare directories of an earlier daemon: their shims end with it
	// (their control connection to it closed), but make sure: none may
	// keep a VM running once its directory is gone.
	endSpares(dataroot.Root(d.cfg.Root).Spares(), func(format string, args ...any) {
		fmt.Fprintf(d.cfg.Log, format, args...)
	})
	// And their sockets, which a spare shim ended by SIGKILL leaves.
	if socks, err := filepath.Glob(filepath.Join(d.cfg.RunDir, "spare-*.sock")); err == nil {
		for _, s := range socks {
			os.Remove(s)
		}
	}
	return &pool{d: d, size: size, max: max, now: time.Now, ready: make(map[shape][]*spareShim), starting: make(map[shape]int),
		want: make(map[shape]int), base: make(map[shape]int), takes: make(map[shape][]time.Time)}
}

// take removes a ready spare of shape s from the pool, or returns nil.
// Either way s is hot from now on, and the pool refills it: to as many
// spares as runs took in the demand window, at least the pool size.
func (p *pool) take(s shape) *spareShim {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.size <= 0 && p.base[s] == 0 {
		return nil
	}
	now := p.now()
	p.base[s] = max(p.base[s], p.size)
	p.takes[s] = append(p.recentLocked(s, now), now)
	p.want[s] = demandWant(p.base[s], p.takes[s], now, demandWindow, p.max)
	var sp *spareShim
	if l := p.ready[s]; len(l) > 0 {
		sp, p.ready[s] = l[0], l[1:]
	}
	p.fillLocked(s, refillDelay)
	return sp
}

// recentLocked drops the takes of s that left the demand window and
// returns those within it.
func (p *pool) recentLocked(s shape, now time.Time) []time.Time {
	l := p.takes[s]
	i := 0
	for i < len(l) && now.Sub(l[i]) >= demandWindow {
		i++
	}
	l = l[i:]
	if len(l) == 0 {
		delete(p.takes, s)
		return nil
	}
	p.takes[s] = l
	return l
}

// decay lowers each shape's want as its takes leave the demand window,
// down to its base, and ends the spares it no longer wants.
func (p *pool) decay() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for s := range p.want {
		p.want[s] = demandWant(p.base[s], p.recentLocked(s, now), now, demandWindow, p.max)
		p.trimLocked(s)
	}
}

// goDecay runs decay a few times per demand window until the daemon
// stops.
func (p *pool) goDecay() {
	p.d.wg.Add(1)
	go func() {
		defer p.d.wg.Done()
		tick := time.NewTicker(demandWindow / 4)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p.decay()
			case <-p.d.ctx.Done():
				return
			}
		}
	}()
}

// trimLocked ends the ready spares of s beyond its want, newest first.
func (p *pool) trimLocked(s shape) {
	for len(p.ready[s]) > p.want[s] {
		l := p.ready[s]
		l[len(l)-1].stop()
		p.ready[s] = l[:len(l)-1]
	}
}

// setWant makes the pool keep at least n spares of shape s (more while
// runs take them faster); 0 drops the shape and its spares (until a run
// makes it hot again).
func (p *pool) setWant(s shape, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= 0 {
		delete(p.want, s)
		delete(p.base, s)
		delete(p.takes, s)
		for _, sp := range p.ready[s] {
			sp.stop()
		}
		delete(p.ready, s)
		return
	}
	now := p.now()
	p.base[s] = min(n, p.max)
	p.want[s] = demandWant(p.base[s], p.recentLocked(s, now), now, demandWindow, p.max)
	p.trimLocked(s)
	p.fillLocked(s, 0)
}

// total counts the spares ready and starting, of every shape.
func (p *pool) totalLocked() int {
	n := 0
	for _, l := range p.ready {
		n += len(l)
	}
	for _, k := range p.starting {
		n += k
	}
	return n
}

// fillLocked starts, after delay, the spares shape s lacks, one after the
// other (not at once: each start is a VM's worth of CPU).
func (p *pool) fillLocked(s shape, delay time.Duration) {
	if p.closed || p.starting[s] > 0 || len(p.ready[s]) >= p.want[s] || p.totalLocked() >= p.max {
		return
	}
	p.starting[s]++
	p.d.wg.Add(1)
	go func() {
		defer p.d.wg.Done()
		select {
		case <-time.After(delay):
		case <-p.d.ctx.Done():
		}
		for {
			p.mu.Lock()
			// totalLocked counts this start among the starting.
			if p.closed || len(p.ready[s]) >= p.want[s] || p.totalLocked() > p.max {
				p.starting[s]--
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			sp, err := p.start(s)
			p.mu.Lock()
			// The shape may have been dropped or shrunk (setWant)
			// while the spare started.
			if err != nil || p.closed || len(p.ready[s]) >= p.want[s] {
				p.starting[s]--
				p.mu.Unlock()
				if err != nil && p.d.ctx.Err() == nil {
					fmt.Fprintf(p.d.cfg.Log, "arrowd: spare (%s): %v\n", s, err)
				}
				if err == nil {
					sp.end()
				}
				return
			}
			p.ready[s] = append(p.ready[s], sp)
			p.d.wg.Add(1)
			go p.watch(sp)
			p.mu.Unlock()
		}
	}()
}

// start starts one spare shim of shape s and returns once it is warm.
func (p *pool) start(s shape) (*spareShim, error) {
	if avail, err := memAvailableMiB(); err == nil && avail < s.MemoryMiB+spareHeadroomMiB {
		return nil, fmt.Errorf("only %d MiB of memory available: no spare started", avail)
	}
	id := newID()[:16]
	dir := dataroot.Root(p.d.cfg.Root).Spare(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sp := &spareShim{shape: s, dir: dir, socket: filepath.Join(p.d.cfg.RunDir, "spare-"+id+".sock")}
	err := shim.WriteSpare(dir, &shim.Spare{Root: p.d.cfg.Root, Socket: sp.socket, MemoryMiB: s.MemoryMiB, CPUs: s.CPUs, Network: s.Network, Accel: s.Accel})
	if err == nil {
		sp.proc, err = shim.Start(p.d.ctx, p.d.cfg.Exe, []string{"shim", "--spare", dir}, dir)
	}
	if err != nil {
		// The directory goes, and its shim.log with it: keep what the
		// shim said.
		if log, rerr := os.ReadFile(filepath.Join(dir, shim.ShimLogFile)); rerr == nil && len(log) > 0 {
			err = fmt.Errorf("%w; its log: %s", err, strings.TrimSpace(string(tail(log, 1000))))
		}
		os.RemoveAll(dir)
		return nil, err
	}
	return sp, nil
}

// watch drops sp from the pool when its shim ends unclaimed.
func (p *pool) watch(sp *spareShim) {
	defer p.d.wg.Done()
	select {
	case <-sp.proc.Done:
		sp.proc.Abandon() // its control connection's fd
	case <-p.d.ctx.Done():
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.ready[sp.shape]
	for i, x := range l {
		if x == sp {
			p.ready[sp.shape] = append(l[:i:i], l[i+1:]...)
			os.RemoveAll(sp.dir)
			p.fillLocked(sp.shape, refillDelay)
			return
		}
	}
}

// claim makes sp the shim of the arrow in dir. On failure sp is gone. The
// claimed shim runs the arrow only once the caller records it and calls
// sp.proc.Commit.
func (sp *spareShim) claim(ctx context.Context, dir string) error {
	err := shim.NewClient(sp.socket).Claim(ctx, dir)
	if err != nil {
		sp.stop()
		return err
	}
	os.RemoveAll(sp.dir) // its shim keeps what it has open
	return nil
}

// stop ends an unclaimed spare shim (its VM dies with it) in the
// background.
func (sp *spareShim) stop() { go sp.end() }

// end ends an unclaimed spare shim and returns once it is gone.
func (sp *spareShim) end() {
	// Either ends it: the control connection's end as the daemon's own
	// would, and SIGTERM.
	sp.proc.Abandon()
	_ = sp.proc.Signal(syscall.SIGTERM)
	select {
	case <-sp.proc.Done:
	case <-time.After(5 * time.Second):
		_ = sp.proc.Signal(syscall.SIGKILL)
		<-sp.proc.Done
	}
	os.RemoveAll(sp.dir)
}

// close ends every unclaimed spare, and returns once they are gone: a
// daemon leaves no VM of its own behind.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	ready := p.ready
	p.ready = make(map[shape][]*spareShim)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ready {
		for _, sp := range l {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sp.end()
			}()
		}
	}
	wg.Wait()
}

// status lists the pool's shapes.
func (p *pool) status() []api.PoolEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[shape]bool)
	out := []api.PoolEntry{}
	add := func(s shape) {
		if seen[s] {
			return
		}
		seen[s] = true
		out = append(out, api.PoolEntry{MemoryMiB: s.MemoryMiB, CPUs: s.CPUs, Network: s.Network, Accel: s.Accel,
			Want: p.want[s], Ready: len(p.ready[s]), Starting: p.starting[s]})
	}
	for s := range p.want {
		add(s)
	}
	for s := range p.ready {
		add(s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.MemoryMiB != b.MemoryMiB {
			return a.MemoryMiB < b.MemoryMiB
		}
		if a.CPUs != b.CPUs {
			return a.CPUs < b.CPUs
		}
		return a.Network < b.Network
	})
	return out
}

// memAvailableMiB reads MemAvailable from /proc/meminfo.
func memAvailableMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemAvailable")
}

func (d *Daemon) handlePool(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.pool.status())
}

func (d *Daemon) handlePoolSet(w http.ResponseWriter, r *http.Request) {
	var req api.PoolRequest
	if !decodeBody(w, r, &req) {
		return
	}
	// The shape is checked as the machine of a run would be.
	c := api.Config{Program: "/pool", MemoryMiB: req.MemoryMiB, CPUs: req.CPUs, Network: req.Network, Accel: req.Accel}
	if err := c.Validate(); err != nil {
		fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	s, ok := shapeOf(c)
	switch {
	case !ok:
		fail(w, fmt.Errorf("%w: network %q: only runs on the user-mode network or none start from spares", ErrInvalid, req.Network))
		return
	case req.Count < 0 || req.Count > d.pool.max:
		fail(w, fmt.Errorf("%w: count %d: want 0 to %d (the daemon's --max-spares)", ErrInvalid, req.Count, d.pool.max))
		return
	}
	d.pool.setWant(s, req.Count)
	writeJSON(w, http.StatusOK, d.pool.status())
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
