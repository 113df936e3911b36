package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/daemon"
)

// shortDir is a directory for sockets, whose paths must be short.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "arrowc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serve starts a daemon whose arrows cannot start (no shim binary) and
// serves its API on a Unix socket; it returns a client of it.
func serve(t *testing.T) *client.Client {
	t.Helper()
	run := shortDir(t)
	d, err := daemon.New(daemon.Config{Root: t.TempDir(), RunDir: run, Exe: "/nonexistent", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return client.New(sock)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantStatus(t *testing.T, err error, status int, msg string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("err %v (%T), want a *client.Error", err, err)
	}
	if e.Status != status || !strings.Contains(e.Message, msg) {
		t.Fatalf("error %d %q, want %d with %q", e.Status, e.Message, status, msg)
	}
	if client.IsNotFound(err) != (status == http.StatusNotFound) {
		t.Fatalf("IsNotFound(%v) = %v", err, client.IsNotFound(err))
	}
	if errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("an answer is ErrUnreachable: %v", err)
	}
}

func TestClient(t *testing.T) {
	c := serve(t)
	cx := ctx(t)

	info, err := c.Info(cx)
	if err != nil || info.Version != "test" || info.Arrows != 0 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := c.Ping(cx); err != nil {
		t.Fatal(err)
	}
	l, err := c.List(cx, true)
	if err != nil || len(l) != 0 {
		t.Fatalf("List = %v, %v", l, err)
	}

	_, err = c.Inspect(cx, "nope")
	wantStatus(t, err, http.StatusNotFound, `no such arrow: "nope"`)
	wantStatus(t, c.Remove(cx, "nope", true), http.StatusNotFound, "no such arrow")
	wantStatus(t, c.Kill(cx, "nope", "TERM"), http.StatusNotFound, "no such arrow")
	_, _, err = c.Attach(cx, "nope")
	wantStatus(t, err, http.StatusNotFound, "no such arrow")
	err = c.Logs(cx, "nope", client.LogsOptions{Tail: -1}, func(api.LogEntry) error { return nil })
	wantStatus(t, err, http.StatusNotFound, "no such arrow")

	// A name that needs escaping in a path is still just a name.
	_, err = c.Inspect(cx, "a/b?c")
	wantStatus(t, err, http.StatusNotFound, `"a/b?c"`)

	// An invalid request.
	_, err = c.Create(cx, &api.CreateRequest{Name: "-x", Config: api.Config{Image: "alpine"}})
	wantStatus(t, err, http.StatusBadRequest, "name")
	timeout := -time.Second
	wantStatus(t, c.Stop(cx, "nope", &timeout), http.StatusBadRequest, "t=")

	// A create whose start fails: the arrow, exited, says why.
	a, err := c.Create(cx, &api.CreateRequest{Name: "web", Config: api.Config{Program: "/bin/true"}})
	if err != nil || a.State != api.Exited || a.ExitCode != 125 || !strings.Contains(a.Error, "/nonexistent") {
		t.Fatalf("Create = %+v, %v", a, err)
	}
	got, err := c.Inspect(cx, "web")
	if err != nil || got.ID != a.ID {
		t.Fatalf("Inspect = %+v, %v", got, err)
	}
	if l, err := c.List(cx, false); err != nil || len(l) != 0 {
		t.Fatalf("List(running) = %v, %v", l, err)
	}
	if l, err := c.List(cx, true); err != nil || len(l) != 1 {
		t.Fatalf("List(all) = %v, %v", l, err)
	}
	wantStatus(t, c.Kill(cx, "web", "NOPE"), http.StatusBadRequest, "NOPE")
	wantStatus(t, c.Kill(cx, "web", ""), http.StatusConflict, "not running")
	_, _, err = c.Attach(cx, "web")
	wantStatus(t, err, http.StatusConflict, "not running")
	w, err := c.Wait(cx, "web")
	if err != nil || w.ExitCode != 125 {
		t.Fatalf("Wait = %+v, %v", w, err)
	}
	if err := c.Stop(cx, "web", nil); err != nil {
		t.Fatalf("Stop of a stopped arrow: %v", err)
	}
	if err := c.Logs(cx, "web", client.LogsOptions{Tail: 10, Since: "1h"}, func(api.LogEntry) error {
		return errors.New("no lines expected")
	}); err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if s, err := c.Stats(cx); err != nil || len(s) != 0 {
		t.Fatalf("Stats = %v, %v", s, err)
	}
	if err := c.Remove(cx, "web", false); err != nil {
		t.Fatal(err)
	}
	_, err = c.Inspect(cx, a.ID)
	wantStatus(t, err, http.StatusNotFound, "no such arrow")

	// The pool, empty, then asked for a shape it cannot keep.
	if p, err := c.Pool(cx); err != nil || len(p) != 0 {
		t.Fatalf("Pool = %+v, %v", p, err)
	}
	_, err = c.SetPool(cx, &api.PoolRequest{Network: "appnet", Count: 1})
	wantStatus(t, err, http.StatusBadRequest, "user-mode network or none")
	if m, err := c.Metrics(cx); err != nil || !strings.Contains(m, `arrow_arrows{state="exited"} 0`) || !strings.Contains(m, "arrow_spares") {
		t.Fatalf("Metrics: %v\n%.400s", err, m)
	}
}

func TestClientEvents(t *testing.T) {
	c := serve(t)
	cx, cancel := context.WithCancel(ctx(t))
	got := make(chan api.Event, 8)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(cx, func(e api.Event) error {
			got <- e
			return nil
		})
	}()
	// The subscription starts with the request: create until seen.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		if _, err := c.Create(ctx(t), &api.CreateRequest{Config: api.Config{Image: "alpine"}}); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e.Type != "create" && e.Type != "die" {
				t.Fatalf("event %+v", e)
			}
			if e.Type == "die" {
				// The end of an arrow created before the subscription
				// began (its shim cannot start here): its create went
				// unseen. Create another.
				continue
			}
			if e.ID == "" || e.Name == "" {
				t.Fatalf("event %+v", e)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Events after cancel: %v", err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event")
		}
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := shortDir(t)
	cx := ctx(t)

	// No socket at all.
	c := client.New(filepath.Join(dir, "none.sock"))
	if _, err := c.Info(cx); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Info = %v, want ErrUnreachable", err)
	}
	if _, _, err := c.Attach(cx, "x"); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Attach = %v, want ErrUnreachable", err)
	}
	if err := c.Events(cx, func(api.Event) error { return nil }); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Events = %v, want ErrUnreachable", err)
	}

	// A socket file whose listener is gone.
	sock := filepath.Join(dir, "dead.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	_, err = client.New(sock).List(cx, false)
	if !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("List = %v, want ErrUnreachable", err)
	}
	var e *client.Error
	if errors.As(err, &e) || client.IsNotFound(err) {
		t.Fatalf("unreachable is an answer: %v", err)
	}

	// A cancelled context is the context's error, not unreachability.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.New(sock).Info(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Info(cancelled) = %v", err)
	}
}

// TestClientNotArrowd checks answers that are not the daemon's JSON errors.
func TestClientNotArrowd(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "other.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/info" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"version":`))
			return
		}
		http.Error(w, "teapot", http.StatusTeapot)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c := client.New(sock)
	if _, err := c.Info(ctx(t)); err == nil || !strings.Contains(err.Error(), "arrowd answer") {
		t.Fatalf("Info with a truncated answer: %v", err)
	}
	_, err = c.List(ctx(t), true)
	wantStatus(t, err, http.StatusTeapot, "teapot")
}

// WaitNext returns once the wait is registered; what it reads is the
// end of the run started after, or an error when the arrow went first.
func TestClientWaitNext(t *testing.T) {
	c := serve(t)
	cx := ctx(t)
	_, err := c.WaitNext(cx, "nope", false)
	wantStatus(t, err, http.StatusNotFound, "no such arrow")

	for _, tc := range []struct {
		name       string
		autoRemove bool
	}{{"kept", false}, {"auto-removed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := c.Create(cx, &api.CreateRequest{Config: api.Config{Program: "/bin/true"}, NoStart: true, AutoRemove: tc.autoRemove})
			if err != nil {
				t.Fatal(err)
			}
			if a.AutoRemove != tc.autoRemove {
				t.Fatalf("created: auto_remove %v", a.AutoRemove)
			}
			read, err := c.WaitNext(cx, a.ID, false)
			if err != nil {
				t.Fatal(err)
			}
			// This daemon has no shim binary: the start fails, and the
			// wait registered before it reads that failure's status.
			if _, err := c.Start(cx, a.ID); err == nil {
				t.Fatal("a start without a shim binary succeeded")
			}
			w, err := read()
			if err != nil || w.ExitCode != 125 || !strings.Contains(w.Error, "nonexistent") {
				t.Fatalf("WaitNext across a failed start: %+v, %v", w, err)
			}
		})
	}

	// An arrow removed before it ran: the error comes after the headers.
	a, err := c.Create(cx, &api.CreateRequest{Config: api.Config{Program: "/bin/true"}, NoStart: true})
	if err != nil {
		t.Fatal(err)
	}
	read, err := c.WaitNext(cx, a.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(cx, a.ID, false); err != nil {
		t.Fatal(err)
	}
	_, err = read()
	wantStatus(t, err, http.StatusOK, "was removed")
}

// A wait with a lease holds the run: the client that goes before the run
// ended takes its arrow along (removed, with AutoRemove).
func TestClientWaitNextLease(t *testing.T) {
	c := serve(t)
	cx := ctx(t)
	a, err := c.Create(cx, &api.CreateRequest{Config: api.Config{Program: "/bin/true"}, NoStart: true, AutoRemove: true})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := make(chan struct{})
	ectx, ecancel := context.WithCancel(cx)
	defer ecancel()
	subscribed := make(chan struct{})
	var once sync.Once
	go func() {
		_ = c.Events(ectx, func(e api.Event) error {
			if strings.HasPrefix(e.Name, "marker") && e.Type == "create" {
				once.Do(func() { close(subscribed) })
			}
			if e.ID == a.ID && e.Type == "destroy" {
				close(destroyed)
				return errors.New("seen")
			}
			return nil
		})
	}()
	// The events are followed once a marker's creation is seen.
	for i := 0; ; i++ {
		if _, err := c.Create(cx, &api.CreateRequest{Name: fmt.Sprint("marker", i), Config: api.Config{Program: "/bin/true"}, NoStart: true}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-subscribed:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	wctx, wcancel := context.WithCancel(cx)
	read, err := c.WaitNext(wctx, a.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	wcancel() // the client goes
	if _, err := read(); err == nil {
		t.Fatal("a cancelled wait read a status")
	}
	select {
	case <-destroyed:
	case <-cx.Done():
		t.Fatal("the arrow of a client that went was not removed")
	}
	if _, err := c.Inspect(cx, a.ID); !client.IsNotFound(err) {
		t.Fatalf("inspect after: %v", err)
	}
}
