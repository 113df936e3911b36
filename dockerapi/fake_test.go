package dockerapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/logs"
)

// fakeBackend is an in-memory Backend for handler tests: arrows whose
// runs the test ends (exit), logs it sets, and attach and exec streams it
// drives from the other end of a real connection.
type fakeBackend struct {
	t *testing.T

	mu       sync.Mutex
	arrows   map[string]*api.Arrow
	exited   map[string]chan struct{} // closed when the current run ends
	logs     map[string][]logs.Entry
	subs     []chan api.Event
	calls    []string
	stats    []api.Stats
	networks map[string]api.Network
	resizes  []string
	// restartGap, when set, holds Restart between the old run's end and
	// the new run's start until it receives, as the daemon's restart
	// takes a while to boot the new run.
	restartGap chan struct{}

	// attaches and execs receive the far ends of the streams handed out.
	attaches chan *fakeStream
	execs    chan *fakeStream
}

// fakeStream is the backend's end of an attach or exec stream.
type fakeStream struct {
	ref       string
	stdinOnce bool
	exec      *api.ExecConfig
	conn      net.Conn
	r         *bufio.Reader
}

func newFakeBackend(t *testing.T) *fakeBackend {
	return &fakeBackend{
		t:        t,
		arrows:   map[string]*api.Arrow{},
		exited:   map[string]chan struct{}{},
		logs:     map[string][]logs.Entry{},
		networks: map[string]api.Network{},
		attaches: make(chan *fakeStream, 8),
		execs:    make(chan *fakeStream, 8),
	}
}

func (f *fakeBackend) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the operations asked of the backend, in order.
func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) emitLocked(typ string, a *api.Arrow, code *int, detail string) {
	e := api.Event{Time: time.Now().UTC(), Type: typ, ID: a.ID, Name: a.Name, ExitCode: code, Detail: detail}
	for _, c := range f.subs {
		select {
		case c <- e:
		default:
		}
	}
}

// resolveLocked finds an arrow as the daemon does: ID, name, ID prefix.
func (f *fakeBackend) resolveLocked(ref string) (*api.Arrow, error) {
	if a, ok := f.arrows[ref]; ok {
		return a, nil
	}
	var found *api.Arrow
	for id, a := range f.arrows {
		if a.Name == ref {
			return a, nil
		}
		if len(ref) > 0 && len(id) >= len(ref) && id[:len(ref)] == ref {
			if found != nil {
				return nil, fmt.Errorf("%w: %q matches more than one arrow", daemon.ErrInvalid, ref)
			}
			found = a
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no such arrow: %q", daemon.ErrNotFound, ref)
	}
	return found, nil
}

func (f *fakeBackend) Info() api.Info { return api.Info{Version: "test", Accel: "tcg"} }

func (f *fakeBackend) Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error) {
	if err := req.Config.Validate(); err != nil {
		return api.Arrow{}, fmt.Errorf("%w: %w", daemon.ErrInvalid, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create %s", req.Name)
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name := req.Name
	if name == "" {
		name = "arrow_" + id[:6]
	}
	for _, a := range f.arrows {
		if a.Name == name {
			return api.Arrow{}, fmt.Errorf("%w: the name %q is in use", daemon.ErrConflict, name)
		}
	}
	a := &api.Arrow{ID: id, Name: name, Config: req.Config, Created: time.Now().UTC(), State: api.Created, LogPath: "/x/" + id + ".log"}
	f.arrows[id] = a
	f.emitLocked("create", a, nil, "")
	if !req.NoStart {
		f.startLocked(a)
	}
	return *a, nil
}

func (f *fakeBackend) startLocked(a *api.Arrow) {
	a.State, a.StartedAt, a.Pid = api.Running, time.Now().UTC(), 4242
	f.exited[a.ID] = make(chan struct{})
	f.emitLocked("start", a, nil, "")
}

func (f *fakeBackend) Start(ctx context.Context, ref string) (api.Arrow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	f.record("start %s", a.Name)
	if a.State == api.Running {
		return *a, fmt.Errorf("%w: %s is running", daemon.ErrConflict, a.Name)
	}
	f.startLocked(a)
	return *a, nil
}

// exit ends the arrow's run with code, as the daemon sees a run end.
func (f *fakeBackend) exit(ref string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		f.t.Errorf("exit %s: %v", ref, err)
		return
	}
	f.exitLocked(a, code)
}

func (f *fakeBackend) exitLocked(a *api.Arrow, code int) {
	if a.State != api.Running {
		return
	}
	a.State, a.ExitCode, a.FinishedAt, a.Pid, a.Paused = api.Exited, code, time.Now().UTC(), 0, false
	f.emitLocked("die", a, &code, "")
	close(f.exited[a.ID])
}

func (f *fakeBackend) Stop(ctx context.Context, ref string, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	f.record("stop %s %v", a.Name, timeout)
	if a.State == api.Running {
		f.emitLocked("stop", a, nil, "")
		f.exitLocked(a, 143)
	}
	return nil
}

func (f *fakeBackend) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	f.record("kill %s %d", a.Name, int(sig))
	if a.State != api.Running {
		return fmt.Errorf("%w: %s is not running", daemon.ErrConflict, a.Name)
	}
	f.emitLocked("kill", a, nil, sig.String())
	if sig == syscall.SIGKILL {
		f.exitLocked(a, 137)
	}
	return nil
}

func (f *fakeBackend) Restart(ctx context.Context, ref string, timeout time.Duration) (api.Arrow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	f.record("restart %s %v", a.Name, timeout)
	f.exitLocked(a, 143)
	if gap := f.restartGap; gap != nil {
		f.mu.Unlock()
		<-gap
		f.mu.Lock()
	}
	f.emitLocked("restart", a, nil, "")
	f.startLocked(a)
	return *a, nil
}

func (f *fakeBackend) Remove(ctx context.Context, ref string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	f.record("remove %s %v", a.Name, force)
	if a.State == api.Running {
		if !force {
			return fmt.Errorf("%w: %s is running", daemon.ErrConflict, a.Name)
		}
		f.exitLocked(a, 137)
	}
	delete(f.arrows, a.ID)
	f.emitLocked("destroy", a, nil, "")
	return nil
}

func (f *fakeBackend) Rename(ctx context.Context, ref, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	f.record("rename %s %s", a.Name, name)
	a.Name = name
	return nil
}

func (f *fakeBackend) Pause(ctx context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	if a.State != api.Running || a.Paused {
		return fmt.Errorf("%w: %s is not running or paused", daemon.ErrConflict, a.Name)
	}
	a.Paused = true
	f.record("pause %s", a.Name)
	return nil
}

func (f *fakeBackend) Unpause(ctx context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	if !a.Paused {
		return fmt.Errorf("%w: %s is not paused", daemon.ErrConflict, a.Name)
	}
	a.Paused = false
	f.record("unpause %s", a.Name)
	return nil
}

func (f *fakeBackend) Wait(ctx context.Context, ref string) (api.WaitResponse, error) {
	f.mu.Lock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		f.mu.Unlock()
		return api.WaitResponse{}, err
	}
	id, running := a.ID, a.State == api.Running
	ch := f.exited[id]
	f.mu.Unlock()
	if running {
		select {
		case <-ch:
		case <-ctx.Done():
			return api.WaitResponse{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.arrows[id]; ok {
		return api.WaitResponse{ExitCode: a.ExitCode}, nil
	}
	return api.WaitResponse{}, fmt.Errorf("%w: no such arrow: %q", daemon.ErrNotFound, id)
}

func (f *fakeBackend) Get(ref string) (api.Arrow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return api.Arrow{}, err
	}
	return *a, nil
}

func (f *fakeBackend) List(all bool) []api.Arrow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Arrow
	for _, a := range f.arrows {
		if all || a.State == api.Running || a.State == api.Restarting || a.State == api.Starting {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

func (f *fakeBackend) Stats(interval time.Duration) []api.Stats {
	time.Sleep(interval)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Stats(nil), f.stats...)
}

func (f *fakeBackend) Logs(ctx context.Context, ref string, opts logs.ReadOptions, fn func(logs.Entry) error) error {
	f.mu.Lock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	entries := append([]logs.Entry(nil), f.logs[a.ID]...)
	f.mu.Unlock()
	var kept []logs.Entry
	for _, e := range entries {
		if opts.Since.IsZero() || !e.Time.Before(opts.Since) {
			kept = append(kept, e)
		}
	}
	if opts.Tail >= 0 && len(kept) > opts.Tail {
		kept = kept[len(kept)-opts.Tail:]
	}
	for _, e := range kept {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// pair is a connected pair of TCP connections: real ones, so that
// half-closes pass as they do between arrowd and a shim.
func (f *fakeBackend) pair() (mine, theirs net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	defer l.Close()
	done := make(chan net.Conn)
	go func() {
		c, err := l.Accept()
		if err != nil {
			f.t.Error(err)
		}
		done <- c
	}()
	mine, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	return mine, <-done
}

func (f *fakeBackend) AttachNext(ctx context.Context, ref string, stdinOnce bool) (func(context.Context) (net.Conn, *bufio.Reader, error), func(), error) {
	f.mu.Lock()
	a, err := f.resolveLocked(ref)
	f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	id := a.ID
	// As arrowd: an arrow that is not running is joined at its start.
	wait := func(ctx context.Context) (net.Conn, *bufio.Reader, error) {
		for {
			a, err := f.Get(id)
			if err != nil {
				return nil, nil, err
			}
			if a.State == api.Running {
				break
			}
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		mine, theirs := f.pair()
		f.attaches <- &fakeStream{ref: id, stdinOnce: stdinOnce, conn: theirs, r: bufio.NewReader(theirs)}
		return mine, bufio.NewReader(mine), nil
	}
	return wait, func() {}, nil
}

func (f *fakeBackend) Resize(ctx context.Context, ref string, rows, cols uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := f.resolveLocked(ref)
	if err != nil {
		return err
	}
	f.resizes = append(f.resizes, fmt.Sprintf("%s %dx%d", a.Name, rows, cols))
	return nil
}

func (f *fakeBackend) Exec(ctx context.Context, ref string, c *api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", daemon.ErrInvalid, err)
	}
	f.mu.Lock()
	a, err := f.resolveLocked(ref)
	if err == nil && a.State != api.Running {
		err = fmt.Errorf("%w: %s is not running", daemon.ErrConflict, a.Name)
	}
	f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	mine, theirs := f.pair()
	cfg := *c
	f.execs <- &fakeStream{ref: a.ID, exec: &cfg, conn: theirs, r: bufio.NewReader(theirs)}
	return mine, bufio.NewReader(mine), nil
}

func (f *fakeBackend) Events(ctx context.Context) <-chan api.Event {
	in := make(chan api.Event, 256)
	f.mu.Lock()
	f.subs = append(f.subs, in)
	f.mu.Unlock()
	out := make(chan api.Event)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			for i, c := range f.subs {
				if c == in {
					f.subs = append(f.subs[:i], f.subs[i+1:]...)
					break
				}
			}
			f.mu.Unlock()
		}()
		for {
			select {
			case e := <-in:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// subscribers is how many event subscriptions are open.
func (f *fakeBackend) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeBackend) NetworkCreate(ctx context.Context, req *api.NetworkCreateRequest) (api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := api.Network{Name: req.Name, Subnet: "10.89.0.0/24", Gateway: "10.89.0.1", Labels: req.Labels, Endpoints: []api.Endpoint{}}
	f.networks[req.Name] = n
	return n, nil
}

func (f *fakeBackend) NetworkList() ([]api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.Network{}
	for _, n := range f.networks {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeBackend) NetworkGet(name string) (api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.networks[name]; ok {
		return n, nil
	}
	return api.Network{}, fmt.Errorf("%w: no such network: %s", daemon.ErrNotFound, name)
}

func (f *fakeBackend) NetworkRemove(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.networks, name)
	return nil
}

func (f *fakeBackend) VolumeCreate(ctx context.Context, req *api.VolumeCreateRequest) (api.VolumeInfo, bool, error) {
	return api.VolumeInfo{Name: req.Name}, true, nil
}

func (f *fakeBackend) VolumeList(ctx context.Context) ([]api.VolumeInfo, error) {
	return []api.VolumeInfo{}, nil
}

func (f *fakeBackend) VolumeGet(ctx context.Context, name string) (api.VolumeInfo, error) {
	return api.VolumeInfo{}, fmt.Errorf("%w: no such volume: %s", daemon.ErrNotFound, name)
}

func (f *fakeBackend) VolumeRemove(ctx context.Context, name string) error { return nil }

func (f *fakeBackend) VolumePrune(ctx context.Context) (api.VolumePruneResponse, error) {
	return api.VolumePruneResponse{Removed: []string{}}, nil
}

var _ Backend = (*fakeBackend)(nil)

// MayChangeImages lets every test client write images; the daemon's rule
// is tested in package daemon.
func (f *fakeBackend) MayChangeImages(ctx context.Context) error { return nil }
