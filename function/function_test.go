package function

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/logs"
)

// fakeBackend stands in for arrowd: each HTTP instance it creates is an
// HTTP server on the instance's published port, whose handler echoes the
// body with the instance's ID and sleeps first for "sleep".
type fakeBackend struct {
	mu       sync.Mutex
	next     int
	servers  map[string]*http.Server
	created  int
	removed  []string
	snapshot string
}

func newFake() *fakeBackend { return &fakeBackend{servers: map[string]*http.Server{}} }

func (b *fakeBackend) Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error) {
	b.mu.Lock()
	b.next++
	b.created++
	id := "arrow" + strconv.Itoa(b.next)
	b.mu.Unlock()
	for _, p := range req.Config.Ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)))
		if err != nil {
			return api.Arrow{}, err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if string(body) == "sleep" {
				time.Sleep(time.Second)
			}
			fmt.Fprintf(w, "%s %s", body, id)
		})}
		go func() { _ = srv.Serve(ln) }()
		b.mu.Lock()
		b.servers[id] = srv
		b.mu.Unlock()
	}
	return api.Arrow{ID: id, Name: req.Name, Config: req.Config, State: api.Running}, nil
}

func (b *fakeBackend) Remove(ctx context.Context, ref string, force bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if srv := b.servers[ref]; srv != nil {
		srv.Close()
		delete(b.servers, ref)
	}
	b.removed = append(b.removed, ref)
	return nil
}

func (b *fakeBackend) running() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.servers)
}

func (b *fakeBackend) List(bool) []api.Arrow { return nil }
func (b *fakeBackend) AttachWith(context.Context, string, daemon.AttachOptions) (net.Conn, *bufio.Reader, error) {
	return nil, nil, fmt.Errorf("no attach in the fake")
}
func (b *fakeBackend) Wait(context.Context, string) (api.WaitResponse, error) {
	return api.WaitResponse{}, nil
}
func (b *fakeBackend) Logs(context.Context, string, logs.ReadOptions, func(logs.Entry) error) error {
	return nil
}
func (b *fakeBackend) SnapshotCreate(_ context.Context, req *api.SnapshotCreateRequest) (api.Snapshot, error) {
	b.snapshot = req.Name
	return api.Snapshot{Name: req.Name}, nil
}
func (b *fakeBackend) SnapshotRemove(name string) error {
	if b.snapshot != name {
		return fmt.Errorf("%w: %s", daemon.ErrNotFound, name)
	}
	b.snapshot = ""
	return nil
}

func newManager(t *testing.T, b Backend) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(Options{Backend: b, Root: t.TempDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, reg
}

func create(t *testing.T, m *Manager, name string, fc api.FunctionConfig) {
	t.Helper()
	fc.Config = api.Config{Program: "/usr/bin/python3", Args: []string{"-m", "http.server"}}
	if _, err := m.Create(context.Background(), &api.FunctionCreateRequest{Name: name, FunctionConfig: fc}); err != nil {
		t.Fatal(err)
	}
}

// TestInvokeHTTP runs invocations of an HTTP function against the fake:
// fresh clones, kept-warm reuse, and the limits' statuses.
func TestInvokeHTTP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fc    api.FunctionConfig
		body  string
		at    int // invocations at once
		codes map[int]int
		// starts are the instances the invocations made (with atMost,
		// at most that many).
		starts int
		atMost bool
	}{
		{"fresh clone each", api.FunctionConfig{HTTPPort: 8080}, "x", 3, map[int]int{200: 3}, 3, false},
		{"kept warm, one at a time", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true, MaxInstances: 3}, "x", 1, map[int]int{200: 1}, 1, false},
		{"one instance busy", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true, MaxInstances: 1}, "sleep", 3, map[int]int{200: 1, 429: 2}, 1, false},
		{"concurrency 3", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true, MaxInstances: 1, Concurrency: 3}, "sleep", 3, map[int]int{200: 3}, 1, false},
		{"instances bounded", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true, MaxInstances: 2, Concurrency: 2}, "sleep", 4, map[int]int{200: 4}, 2, true},
		{"body too large", api.FunctionConfig{HTTPPort: 8080, MaxBodyBytes: 4}, "large", 1, map[int]int{413: 1}, 0, false},
		{"response too large", api.FunctionConfig{HTTPPort: 8080, MaxBodyBytes: 4}, "x", 1, map[int]int{502: 1}, 1, false},
		{"timeout", api.FunctionConfig{HTTPPort: 8080, Timeout: 0.2}, "sleep", 1, map[int]int{504: 1}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFake()
			m, _ := newManager(t, b)
			create(t, m, "f", tc.fc)
			b.created = 0
			codes := map[int]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := 0; i < tc.at; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := m.Invoke(context.Background(), "f", &Request{Body: []byte(tc.body)})
					mu.Lock()
					codes[r.Status]++
					mu.Unlock()
					if r.Status == 200 && !strings.HasPrefix(string(r.Body), tc.body+" arrow") {
						t.Errorf("answer %q", r.Body)
					}
				}()
			}
			wg.Wait()
			if fmt.Sprint(codes) != fmt.Sprint(tc.codes) {
				t.Errorf("statuses %v, want %v", codes, tc.codes)
			}
			if b.created != tc.starts && !(tc.atMost && b.created <= tc.starts) {
				t.Errorf("%d instances started, want %d", b.created, tc.starts)
			}
		})
	}
}

// TestKeepWarmScalesToZero: a kept-warm instance serves in turn, then
// ends once idle, and the next invocation starts one again.
func TestKeepWarmScalesToZero(t *testing.T) {
	b := newFake()
	m, reg := newManager(t, b)
	create(t, m, "f", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true, IdleTimeout: 0.3})
	var first string
	for i, want := range []string{"cold", "warm", "warm"} {
		r := m.Invoke(context.Background(), "f", &Request{Body: []byte("x")})
		if r.Status != 200 || r.Start != want {
			t.Fatalf("invocation %d: %d %s, start %s, want %s", i, r.Status, r.Body, r.Start, want)
		}
		if i == 0 {
			first = string(r.Body)
		} else if string(r.Body) != first {
			t.Errorf("invocation %d ran in another instance: %q, first %q", i, r.Body, first)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.running() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d instances still run", b.running())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f, _ := m.Get("f"); f.Instances != 0 {
		t.Errorf("instances %d after the idle timeout", f.Instances)
	}
	if r := m.Invoke(context.Background(), "f", &Request{Body: []byte("x")}); r.Start != "cold" {
		t.Errorf("after scaling to zero: start %q", r.Start)
	}
	if n := testutil.ToFloat64(m.metrics.invocations.WithLabelValues("f", "warm", "200")); n != 2 {
		t.Errorf("warm invocations counted %v, want 2", n)
	}
	if n, err := testutil.GatherAndCount(reg, "arrow_function_invocation_seconds"); err != nil || n != 2 {
		t.Errorf("latency series %d, %v", n, err)
	}
}

// TestRemoveLeavesNothing: rm removes the instances and the snapshot.
func TestRemoveLeavesNothing(t *testing.T) {
	b := newFake()
	m, _ := newManager(t, b)
	create(t, m, "f", api.FunctionConfig{HTTPPort: 8080, KeepWarm: true})
	if r := m.Invoke(context.Background(), "f", &Request{Body: []byte("x")}); r.Status != 200 {
		t.Fatalf("invoke: %d %s", r.Status, r.Body)
	}
	if b.running() != 1 {
		t.Fatalf("%d instances", b.running())
	}
	if err := m.Remove(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	if b.running() != 0 || b.snapshot != "" {
		t.Errorf("after rm: %d instances, snapshot %q", b.running(), b.snapshot)
	}
	if r := m.Invoke(context.Background(), "f", &Request{}); r.Status != http.StatusNotFound {
		t.Errorf("invoke after rm: %d", r.Status)
	}
	if _, err := m.Create(context.Background(), &api.FunctionCreateRequest{Name: "../x"}); err == nil {
		t.Error("a bad name was accepted")
	}
}
