package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/shim"
)

// fakeShim answers a shim's pause, unpause, status, signal and exec
// requests as a running shim would, and records the order of what it
// was asked.
type fakeShim struct {
	mu     sync.Mutex
	paused bool
	calls  []string
}

func (f *fakeShim) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fakeshim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(w http.ResponseWriter, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(api.Error{Message: msg})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pause", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "pause")
		if f.paused {
			reply(w, http.StatusConflict, "the arrow is paused already")
			return
		}
		f.paused = true
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /unpause", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "unpause")
		if !f.paused {
			reply(w, http.StatusConflict, "the arrow is not paused")
			return
		}
		f.paused = false
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /signal", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "signal "+r.URL.Query().Get("signal"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(shim.Status{State: api.Running, Paused: f.paused})
	})
	mux.HandleFunc("POST /exec", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "exec")
		reply(w, http.StatusConflict, "the arrow is paused: unpause it first")
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

func (f *fakeShim) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

// runningArrow creates an arrow named name (whose shim cannot start: the
// test daemon has no binary) and then makes it look running under the
// fake shim fs, as an adopted shim would.
func runningArrow(t *testing.T, d *Daemon, name string, fs *fakeShim) *arrow {
	t.Helper()
	if resp := serveReq(t, d.Handler(), "POST", "/v1/arrows", "application/json",
		strings.NewReader(`{"name":"`+name+`","config":{"program":"/bin/true"}}`)); resp.code != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.code, resp.body)
	}
	a, err := d.resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	rs := newRunState(shim.NewClient(fs.serve(t)), nil)
	close(rs.started)
	d.mu.Lock()
	a.run = rs
	a.rec.State = api.Running
	d.mu.Unlock()
	return a
}

// nextEvent returns the next event of ev, failing after a while.
func nextEvent(t *testing.T, ev <-chan api.Event) api.Event {
	t.Helper()
	select {
	case e := <-ev:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return api.Event{}
	}
}

func TestPauseUnpause(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	fs := &fakeShim{}
	runningArrow(t, d, "web", fs)
	if resp := serveReq(t, h, "POST", "/v1/arrows", "application/json", strings.NewReader(`{"name":"idle","config":{"program":"/bin/true"}}`)); resp.code != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.code, resp.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := d.Events(ctx)

	wantError(t, serveReq(t, h, "POST", "/v1/arrows/idle/pause", "", nil), http.StatusConflict, "idle is not running")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/nosuch/pause", "", nil), http.StatusNotFound, "nosuch")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/unpause", "", nil), http.StatusConflict, "web is not paused")

	if resp := serveReq(t, h, "POST", "/v1/arrows/web/pause", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("pause: %d %s", resp.code, resp.body)
	}
	if e := nextEvent(t, ev); e.Type != "pause" || e.Name != "web" {
		t.Fatalf("event %+v, want pause", e)
	}
	if a, _ := d.Get("web"); !a.Paused || a.State != api.Running {
		t.Fatalf("after pause: paused %v, state %s", a.Paused, a.State)
	}
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/pause", "", nil), http.StatusConflict, "web is paused already")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/exec", "application/json", strings.NewReader(`{"cmd":["/bin/true"]}`)),
		http.StatusConflict, "web is paused")
	// Refused before the shim was asked.
	if got := fs.log(); got != "pause" {
		t.Errorf("the shim was asked: %s", got)
	}

	if resp := serveReq(t, h, "POST", "/v1/arrows/web/unpause", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("unpause: %d %s", resp.code, resp.body)
	}
	if e := nextEvent(t, ev); e.Type != "unpause" {
		t.Fatalf("event %+v, want unpause", e)
	}
	if a, _ := d.Get("web"); a.Paused {
		t.Fatal("still paused after unpause")
	}

	// A kill of a paused arrow continues its VM first, then signals.
	if err := d.Pause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ev)
	if err := d.Kill(ctx, "web", 1); err != nil { // SIGHUP: not a stop
		t.Fatal(err)
	}
	if e := nextEvent(t, ev); e.Type != "unpause" {
		t.Fatalf("event %+v, want unpause before the kill", e)
	}
	if e := nextEvent(t, ev); e.Type != "kill" {
		t.Fatalf("event %+v, want kill", e)
	}
	if a, _ := d.Get("web"); a.Paused {
		t.Error("paused after a kill")
	}
	if got, want := fs.log(), "pause, unpause, pause, unpause, signal 1"; got != want {
		t.Errorf("the shim was asked: %s; want %s", got, want)
	}
}

// TestPausedRecord: a run that ends, or a new one, leaves its arrow not
// paused.
func TestPausedRecord(t *testing.T) {
	r := &record{Arrow: api.Arrow{Name: "web", State: api.Running, Paused: true}}
	if err := r.transition(api.Exited); err != nil || r.Paused {
		t.Fatalf("after the run ended: paused %v, %v", r.Paused, err)
	}
	r.Paused = true
	if err := r.transition(api.Starting); err != nil || r.Paused {
		t.Fatalf("a new run: paused %v, %v", r.Paused, err)
	}
}

// TestSyncPaused: a daemon that adopts a shim takes its word on the pause,
// whichever way the record was behind.
func TestSyncPaused(t *testing.T) {
	d := newTestDaemon(t)
	for _, shimPaused := range []bool{true, false} {
		fs := &fakeShim{paused: shimPaused}
		name := "p"
		if !shimPaused {
			name = "q"
		}
		a := runningArrow(t, d, name, fs)
		d.mu.Lock()
		a.rec.Paused = !shimPaused
		rs := a.run
		d.mu.Unlock()
		d.goSyncPaused(a, rs)
		deadline := time.Now().Add(5 * time.Second)
		for d.snapshot(a).Paused != shimPaused {
			if time.Now().After(deadline) {
				t.Fatalf("%s: record paused %v, shim %v", name, d.snapshot(a).Paused, shimPaused)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestRename(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	for _, n := range []string{"web", "db"} {
		if resp := serveReq(t, h, "POST", "/v1/arrows", "application/json", strings.NewReader(`{"name":"`+n+`","config":{"program":"/bin/true"}}`)); resp.code != http.StatusCreated {
			t.Fatalf("create: %d %s", resp.code, resp.body)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := d.Events(ctx)
	tests := []struct {
		name, path string
		code       int
		msg        string
	}{
		{"taken", "/v1/arrows/web/rename?name=db", http.StatusConflict, `the name "db" is in use`},
		{"empty", "/v1/arrows/web/rename", http.StatusBadRequest, "new name is empty"},
		{"invalid", "/v1/arrows/web/rename?name=-x", http.StatusBadRequest, "want a letter or digit"},
		{"same", "/v1/arrows/web/rename?name=web", http.StatusBadRequest, "named web already"},
		{"no such arrow", "/v1/arrows/nosuch/rename?name=x", http.StatusNotFound, "nosuch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, serveReq(t, h, "POST", tt.path, "", nil), tt.code, tt.msg)
		})
	}
	before, _ := d.Get("web")
	if resp := serveReq(t, h, "POST", "/v1/arrows/web/rename?name=site", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("rename: %d %s", resp.code, resp.body)
	}
	if e := nextEvent(t, ev); e.Type != "rename" || e.Name != "site" || e.Detail != "web" || e.ID != before.ID {
		t.Fatalf("event %+v", e)
	}
	if _, err := d.Get("web"); err == nil {
		t.Error("the old name still finds it")
	}
	if a, err := d.Get("site"); err != nil || a.ID != before.ID {
		t.Fatalf("Get(site) = %+v, %v", a, err)
	}
	// The old name is free for another arrow; the new one persisted.
	if resp := serveReq(t, h, "POST", "/v1/arrows", "application/json", strings.NewReader(`{"name":"web","config":{"program":"/bin/true"}}`)); resp.code != http.StatusCreated {
		t.Fatalf("create web again: %d %s", resp.code, resp.body)
	}
	recs, errs := d.st.all()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	found := false
	for _, r := range recs {
		found = found || r.ID == before.ID && r.Name == "site"
	}
	if !found {
		t.Error("the store does not have the new name")
	}
}
