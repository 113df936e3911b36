// Package function runs functions on Arrow: a handler started once and
// saved, initialized, as an application snapshot, and invoked in clones
// of it.
//
// A function is an integration like the Docker Engine API: it translates
// its own description (api.FunctionConfig) into Arrow's one description
// of an arrow (api.Config) and drives arrowd's arrows through [Backend],
// the daemon's exported methods. Its instances are ordinary arrows,
// labelled [api.FunctionLabel] with the function's name, started with
// Config.Snapshot: each runs the handler as it was when it was ready,
// made unique by its thaw (a new machine ID, entropy, clock, MAC and host
// name). Nothing of a run is done here that arrowd does not do for any
// arrow.
//
// An invocation runs in a fresh clone, which isolates it from every
// other (the default), or with KeepWarm in an instance kept for a while:
// an HTTP handler's serves Concurrency invocations at once and many in
// turn; a handler of standard input serves one, and the next is made
// ready while the function is warm. Instances idle for IdleTimeout end: a
// function nobody calls has none.
package function

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/logs"
)

// Backend is what functions need of arrowd (*daemon.Daemon).
type Backend interface {
	Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error)
	Remove(ctx context.Context, ref string, force bool) error
	List(all bool) []api.Arrow
	AttachWith(ctx context.Context, ref string, o daemon.AttachOptions) (net.Conn, *bufio.Reader, error)
	Wait(ctx context.Context, ref string) (api.WaitResponse, error)
	Logs(ctx context.Context, ref string, opts logs.ReadOptions, f func(logs.Entry) error) error
	SnapshotCreate(ctx context.Context, req *api.SnapshotCreateRequest) (api.Snapshot, error)
	SnapshotRemove(name string) error
}

// Errors the API maps to statuses.
var (
	ErrNotFound = errors.New("no such function")
	ErrExists   = errors.New("a function of that name exists")
	ErrInvalid  = errors.New("invalid function")
	// ErrBusy: the function runs its most invocations at once (429).
	ErrBusy = errors.New("the function runs its most invocations at once")
)

// snapshotPrefix names a function's snapshot: function.NAME.
const snapshotPrefix = "function."

// reapEvery is how often idle instances are looked for.
const reapEvery = 250 * time.Millisecond

// Options configure a [Manager].
type Options struct {
	Backend Backend
	// Root is Arrow's data root; functions live in its functions/.
	Root string
	// Registry, when set, gets the functions' metrics.
	Registry prometheus.Registerer
	// Log receives what goes wrong in the background.
	Log io.Writer
}

// Manager keeps a data root's functions and runs their invocations.
type Manager struct {
	b       Backend
	dir     string
	log     io.Writer
	metrics *metrics

	mu  sync.Mutex
	fns map[string]*fn
	// creating are the names being created.
	creating map[string]bool

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

// fn is one function and its instances.
type fn struct {
	def api.Function
	dir string
	log *logs.Writer

	mu       sync.Mutex
	inflight int
	// instances are the running instances by arrow ID, starting ones
	// included.
	instances map[string]*instance
	// starting counts the instances being started for invocations.
	starting int
	removed  bool
}

// instance is one arrow of a function.
type instance struct {
	id   string
	port int // an HTTP handler's published port on 127.0.0.1
	// inflight are the invocations it serves now; used is when it last
	// ended one (or was made ready); spent says a handler of standard
	// input served its one.
	inflight int
	used     time.Time
	spent    bool
}

// New loads the functions under o.Root and removes the instances a
// previous arrowd left (they held invocations that are gone).
func New(o Options) (*Manager, error) {
	m := &Manager{b: o.Backend, dir: dataroot.Root(o.Root).Functions(), log: o.Log,
		fns: map[string]*fn{}, creating: map[string]bool{}}
	if m.log == nil {
		m.log = io.Discard
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.metrics = newMetrics(o.Registry)
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("functions: %w", err)
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("functions: %w", err)
	}
	for _, e := range ents {
		dir := filepath.Join(m.dir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "function.json"))
		var def api.Function
		if err != nil || json.Unmarshal(b, &def) != nil || def.Name != e.Name() {
			// A create that did not finish: nothing refers to it.
			os.RemoveAll(dir)
			continue
		}
		f, err := m.open(def)
		if err != nil {
			return nil, err
		}
		m.fns[def.Name] = f
	}
	for _, a := range m.b.List(true) {
		if _, ok := a.Config.Labels[api.FunctionLabel]; ok {
			if err := m.b.Remove(m.ctx, a.ID, true); err != nil {
				fmt.Fprintf(m.log, "arrowd: functions: remove %s, left by a previous arrowd: %v\n", a.Name, err)
			}
		}
	}
	m.bg.Add(1)
	go m.reap()
	return m, nil
}

// open makes the live function of a definition.
func (m *Manager) open(def api.Function) (*fn, error) {
	dir := filepath.Join(m.dir, def.Name)
	lw, err := logs.Create(filepath.Join(dir, "log"), logs.WriterOptions{})
	if err != nil {
		return nil, fmt.Errorf("function %s: log: %w", def.Name, err)
	}
	return &fn{def: def, dir: dir, log: lw, instances: map[string]*instance{}}, nil
}

// Close ends every instance and the background work.
func (m *Manager) Close() {
	m.mu.Lock()
	fns := make([]*fn, 0, len(m.fns))
	for _, f := range m.fns {
		fns = append(fns, f)
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range fns {
		m.removeAll(ctx, f)
	}
	m.cancel()
	m.bg.Wait()
	for _, f := range fns {
		f.log.Close()
	}
}

// Create starts the function's handler once, waits until it is ready
// (it blocks reading its input, or accepts connections on its HTTP port),
// saves it as the function's snapshot, and removes it. ctx carries the
// client's identity: the handler's arrow is created as the client's, with
// the same rules.
func (m *Manager) Create(ctx context.Context, req *api.FunctionCreateRequest) (api.Function, error) {
	if err := req.Validate(); err != nil {
		return api.Function{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	name := req.Name
	m.mu.Lock()
	if m.fns[name] != nil || m.creating[name] {
		m.mu.Unlock()
		return api.Function{}, fmt.Errorf("function %s: %w", name, ErrExists)
	}
	m.creating[name] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.creating, name)
		m.mu.Unlock()
	}()
	def := api.Function{Name: name, FunctionConfig: req.FunctionConfig, Handler: req.HandlerKind(),
		Created: time.Now().UTC(), Snapshot: snapshotPrefix + name}
	cfg := def.Config
	cfg.Labels = withLabel(cfg.Labels, name)
	if def.HTTPPort > 0 {
		port, err := freePort()
		if err != nil {
			return api.Function{}, err
		}
		cfg.Ports = []api.Port{{HostIP: "127.0.0.1", HostPort: port, GuestPort: def.HTTPPort}}
		cfg.ReadyPort = def.HTTPPort
	} else {
		cfg.Stdin, cfg.ReadyOnInput = true, true
	}
	a, err := m.b.Create(ctx, &api.CreateRequest{Name: name + ".build-" + randomHex(3), Config: cfg})
	if err != nil {
		return api.Function{}, fmt.Errorf("function %s: the handler: %w", name, err)
	}
	defer func() { _ = m.b.Remove(context.WithoutCancel(ctx), a.ID, true) }()
	if _, err := m.b.SnapshotCreate(ctx, &api.SnapshotCreateRequest{Arrow: a.ID, Name: def.Snapshot}); err != nil {
		return api.Function{}, fmt.Errorf("function %s: the handler did not get ready: %w%s", name, err, m.logTail(ctx, a.ID))
	}
	dir := filepath.Join(m.dir, name)
	if err := writeDef(dir, def); err != nil {
		_ = m.b.SnapshotRemove(def.Snapshot)
		return api.Function{}, err
	}
	f, err := m.open(def)
	if err != nil {
		os.RemoveAll(dir)
		_ = m.b.SnapshotRemove(def.Snapshot)
		return api.Function{}, err
	}
	m.mu.Lock()
	m.fns[name] = f
	m.mu.Unlock()
	return def, nil
}

// writeDef publishes a function's definition in dir, whole or not at all.
func writeDef(dir string, def api.Function) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("function %s: %w", def.Name, err)
	}
	b, _ := json.MarshalIndent(def, "", "  ")
	tmp := filepath.Join(dir, ".function.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("function %s: %w", def.Name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "function.json")); err != nil {
		return fmt.Errorf("function %s: %w", def.Name, err)
	}
	return nil
}

// logTail is the end of an arrow's log, for an error.
func (m *Manager) logTail(ctx context.Context, id string) string {
	var lines []string
	_ = m.b.Logs(context.WithoutCancel(ctx), id, logs.ReadOptions{Tail: 10}, func(e logs.Entry) error {
		lines = append(lines, string(e.Line))
		return nil
	})
	if len(lines) == 0 {
		return ""
	}
	return "; its last output:\n" + strings.Join(lines, "\n")
}

// List describes the functions, by name.
func (m *Manager) List() []api.Function {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.Function, 0, len(m.fns))
	for _, f := range m.fns {
		out = append(out, f.describe())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get describes the function name.
func (m *Manager) Get(name string) (api.Function, error) {
	f, err := m.get(name)
	if err != nil {
		return api.Function{}, err
	}
	return f.describe(), nil
}

func (m *Manager) get(name string) (*fn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fns[name]
	if f == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return f, nil
}

func (f *fn) describe() api.Function {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.def
	d.Instances = len(f.instances)
	return d
}

// Remove deletes the function: its instances (invocations in flight end
// with them), its snapshot, its definition and its log.
func (m *Manager) Remove(ctx context.Context, name string) error {
	m.mu.Lock()
	f := m.fns[name]
	if f == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	delete(m.fns, name)
	m.mu.Unlock()
	f.mu.Lock()
	f.removed = true
	f.mu.Unlock()
	m.removeAll(ctx, f)
	m.metrics.forget(name)
	var errs []error
	if err := m.b.SnapshotRemove(f.def.Snapshot); err != nil && !errors.Is(err, daemon.ErrNotFound) {
		errs = append(errs, err)
	}
	f.log.Close()
	if err := os.RemoveAll(f.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeAll removes every instance of f, and waits for the removals.
func (m *Manager) removeAll(ctx context.Context, f *fn) {
	f.mu.Lock()
	ids := make([]string, 0, len(f.instances))
	for id := range f.instances {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.dropInstance(ctx, f, id)
		}()
	}
	wg.Wait()
	// An instance a create still starts removes itself once started
	// (see startInstance): f is removed.
}

// dropInstance keeps an instance's output in the function's log and
// removes the instance.
func (m *Manager) dropInstance(ctx context.Context, f *fn, id string) {
	_ = m.b.Logs(ctx, id, logs.ReadOptions{Tail: -1}, func(e logs.Entry) error {
		w := f.log.Stream(e.Stream)
		_, err := w.Write(append(append([]byte(nil), e.Line...), '\n'))
		return err
	})
	if err := m.b.Remove(ctx, id, true); err != nil && !errors.Is(err, daemon.ErrNotFound) {
		fmt.Fprintf(m.log, "arrowd: function %s: remove instance %s: %v\n", f.def.Name, id, err)
	}
	f.mu.Lock()
	delete(f.instances, id)
	n := len(f.instances)
	f.mu.Unlock()
	m.metrics.instances.WithLabelValues(f.def.Name).Set(float64(n))
}

// dropLater removes an instance in the background: an invocation does
// not wait for its fresh clone to go.
func (m *Manager) dropLater(f *fn, id string) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m.dropInstance(ctx, f, id)
	}()
}

// startInstance starts a clone of f's snapshot and returns it once its
// handler runs (its thaw done: an HTTP handler's port is published then).
// With reserve it is the caller's invocation's from the start: no other
// may take it before.
func (m *Manager) startInstance(ctx context.Context, f *fn, reserve bool) (*instance, error) {
	cfg := api.Config{Snapshot: f.def.Snapshot, Network: f.def.Config.Network, Labels: withLabel(nil, f.def.Name)}
	inst := &instance{}
	if f.def.HTTPPort > 0 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		inst.port = port
		cfg.Ports = []api.Port{{HostIP: "127.0.0.1", HostPort: port, GuestPort: f.def.HTTPPort}}
	} else {
		cfg.Stdin = true
	}
	a, err := m.b.Create(ctx, &api.CreateRequest{Name: f.def.Name + "." + randomHex(4), Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("start an instance: %w", err)
	}
	inst.id, inst.used = a.ID, time.Now()
	if reserve {
		inst.inflight = 1
	}
	f.mu.Lock()
	f.instances[a.ID] = inst
	removed := f.removed
	n := len(f.instances)
	f.mu.Unlock()
	m.metrics.instances.WithLabelValues(f.def.Name).Set(float64(n))
	if removed {
		m.dropLater(f, a.ID)
		return nil, fmt.Errorf("%w: %s (removed)", ErrNotFound, f.def.Name)
	}
	if a.State != api.Running {
		m.dropLater(f, a.ID)
		return nil, fmt.Errorf("the instance ended as it started (exit %d)%s", a.ExitCode, m.logTail(ctx, a.ID))
	}
	return inst, nil
}

// reap ends kept-warm instances idle for longer than their function's
// idle timeout, until the manager closes.
func (m *Manager) reap() {
	defer m.bg.Done()
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		fns := make([]*fn, 0, len(m.fns))
		for _, f := range m.fns {
			fns = append(fns, f)
		}
		m.mu.Unlock()
		now := time.Now()
		for _, f := range fns {
			idle := time.Duration(f.def.IdleTimeout * float64(time.Second))
			f.mu.Lock()
			var ids []string
			for id, inst := range f.instances {
				if inst.inflight == 0 && now.Sub(inst.used) > idle {
					ids = append(ids, id)
					inst.inflight = -1 // taken by the reaper: no invocation may have it
				}
			}
			f.mu.Unlock()
			for _, id := range ids {
				m.dropLater(f, id)
			}
		}
	}
}

// withLabel adds the function label to labels (a copy).
func withLabel(labels map[string]string, name string) map[string]string {
	out := map[string]string{api.FunctionLabel: name}
	for k, v := range labels {
		if k != api.FunctionLabel {
			out[k] = v
		}
	}
	return out
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
