package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/logs"
	"github.com/arrowsys/arrow/shim"
)

// envFakeShim makes the test binary, started as `EXE shim DIR`, a stand-in
// shim (standInShim) that speaks the shim's protocol without a VM.
const envFakeShim = "ARROWD_TEST_FAKE_SHIM"

// fakeLines and fakeExit are what a stand-in shim's run writes and ends
// with.
const (
	fakeLines = 200
	fakeExit  = 7
)

// standInShim serves the arrow in dir as a shim does, up to its control
// connection: it answers on its socket, says "ok", and waits for "go".
// Then, with no delay, its "application" writes fakeLines lines to the
// attaches it has and ends with fakeExit: an attach that was not joined
// before the "go" misses output.
func standInShim(dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctl, err := shim.ControlFile()
	if err != nil {
		return fail(err)
	}
	l, err := shim.ReadLaunch(dir)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("unix", l.Socket)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(l.Socket)
	var (
		mu      sync.Mutex
		subs    []net.Conn
		exit    shim.Exit
		running = make(chan struct{})
		done    = make(chan struct{})
	)
	reply := func(w http.ResponseWriter, st shim.Status) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /attach", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-done:
			conn.Close()
			return
		default:
		}
		// Subscribed as its head goes out, as a shim does.
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\n")
		subs = append(subs, conn)
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("for") == "running" {
			<-running
			reply(w, shim.Status{State: api.Running, StartedAt: time.Now()})
			return
		}
		<-done
		reply(w, shim.Status{State: api.Exited, Exit: &exit})
	})
	go func() { _ = http.Serve(ln, mux) }()
	fmt.Fprintln(ctl, "ok")
	line, err := bufio.NewReader(ctl).ReadString('\n')
	if err != nil || line != "go\n" {
		return fail(fmt.Errorf("no go: %q, %v", line, err))
	}
	close(running)
	mu.Lock()
	for i := range fakeLines {
		for _, c := range subs {
			_ = api.WriteFrame(c, api.StreamStdout, fmt.Appendf(nil, "line %d\n", i))
		}
	}
	for _, c := range subs {
		c.Close()
	}
	exit = shim.Exit{ExitCode: fakeExit, FinishedAt: time.Now()}
	close(done)
	mu.Unlock()
	b, _ := json.Marshal(exit)
	if err := os.WriteFile(filepath.Join(dir, shim.ExitFile), b, 0o600); err != nil {
		return fail(err)
	}
	// A moment for the daemon's wait to hear the end from the socket.
	time.Sleep(300 * time.Millisecond)
	return 0
}

// newFakeShimDaemon is a daemon whose shims are stand-ins (standInShim).
func newFakeShimDaemon(t *testing.T) *Daemon {
	t.Helper()
	t.Setenv(envFakeShim, "1")
	cfg := testConfig(t)
	cfg.Exe = os.Args[0]
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// readAll reads an attach stream's frames to its end.
func readAll(t *testing.T, conn net.Conn, br *bufio.Reader) string {
	t.Helper()
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out strings.Builder
	for {
		st, p, err := api.ReadFrame(br)
		if errors.Is(err, io.EOF) {
			return out.String()
		}
		if err != nil {
			t.Fatalf("attach stream: %v (after %d bytes)", err, out.Len())
		}
		if st != api.StreamStdout {
			t.Fatalf("frame of stream %d", st)
		}
		out.Write(p)
	}
}

func wantLines() string {
	var b strings.Builder
	for i := range fakeLines {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

func createIdle(t *testing.T, d *Daemon, name string) api.Arrow {
	t.Helper()
	a, err := d.Create(context.Background(), &api.CreateRequest{Name: name, NoStart: true, Config: api.Config{Program: "/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Create with NoStart records the arrow and leaves it created: no shim,
// nothing in the log, wait at once; it goes with remove.
func TestCreateNoStart(t *testing.T) {
	d := newFakeShimDaemon(t)
	a := createIdle(t, d, "idle")
	if a.State != api.Created || a.ShimPid != 0 || !a.StartedAt.IsZero() || a.Restart.Name != api.RestartNo {
		t.Fatalf("created: %+v", a)
	}
	recs, _ := d.st.all()
	if len(recs) != 1 || recs[0].State != api.Created {
		t.Fatalf("stored: %+v", recs)
	}
	if l := d.List(false); len(l) != 0 {
		t.Errorf("running list has a created arrow: %+v", l)
	}
	n := 0
	if err := d.Logs(context.Background(), "idle", logs.ReadOptions{Tail: -1}, func(logs.Entry) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("logs: %d entries, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w, err := d.Wait(ctx, "idle"); err != nil || w.ExitCode != 0 {
		t.Errorf("wait: %+v %v", w, err)
	}
	if err := d.Remove(ctx, "idle", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory after remove: %v", err)
	}
}

// An attach to a created arrow, and a wait for its next exit, both made
// before its start, see the whole run: the stand-in shim writes its
// output the moment it gets "go", so only an attach joined before it
// has it all.
func TestAttachBeforeStart(t *testing.T) {
	d := newFakeShimDaemon(t)
	createIdle(t, d, "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at, err := d.OpenAttach(ctx, "app", AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan api.WaitResponse, 1)
	go func() {
		w, err := d.WaitNext(ctx, "app")
		if err != nil {
			t.Errorf("WaitNext: %v", err)
		}
		waited <- w
	}()
	streams := make(chan string, 1)
	go func() {
		conn, br, err := at.Wait(ctx)
		if err != nil {
			t.Errorf("attach wait: %v", err)
			streams <- ""
			return
		}
		streams <- readAll(t, conn, br)
	}()
	// A moment for both to be waiting, not required for correctness.
	time.Sleep(50 * time.Millisecond)
	if _, err := d.Start(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if got := <-streams; got != wantLines() {
		t.Fatalf("attached before start: %d bytes, want %d", len(got), len(wantLines()))
	}
	if w := <-waited; w.ExitCode != fakeExit {
		t.Fatalf("WaitNext: %+v, want exit %d", w, fakeExit)
	}
	if a, _ := d.Get("app"); a.State != api.Exited || a.ExitCode != fakeExit {
		t.Fatalf("after the run: %s %d", a.State, a.ExitCode)
	}

	// Attach (blocking) and start again: the next run, whole, as well.
	got := make(chan string, 1)
	go func() {
		conn, br, err := d.Attach(ctx, "app")
		if err != nil {
			t.Errorf("attach: %v", err)
			got <- ""
			return
		}
		got <- readAll(t, conn, br)
	}()
	id := mustID(t, d, "app")
	for {
		d.mu.Lock()
		n := len(d.arrows[id].pending)
		d.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := d.Start(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != wantLines() {
		t.Fatalf("attached to an exited arrow: %d bytes, want %d", len(s), len(wantLines()))
	}
	waitGone(t, d, "app")
}

// waitGone waits for the arrow's run to end, its shim process included,
// which writes in the arrow's directory to its end.
func waitGone(t *testing.T, d *Daemon, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w, err := d.Wait(ctx, ref); err != nil || w.ExitCode != fakeExit {
		t.Fatalf("wait: %+v %v", w, err)
	}
}

func mustID(t *testing.T, d *Daemon, ref string) string {
	t.Helper()
	a, err := d.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// A pending attach ends with its context, with the arrow's removal, and
// with a start that fails; none is left waiting in the arrow.
func TestAttachPendingEnds(t *testing.T) {
	d := newFakeShimDaemon(t)
	pending := func(ref string) int {
		id := mustID(t, d, ref)
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.arrows[id].pending)
	}
	createIdle(t, d, "a")

	// Its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _, err := d.Attach(ctx, "a")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attach with a deadline: %v", err)
	}
	if n := pending("a"); n != 0 {
		t.Fatalf("%d pending after the deadline", n)
	}

	// Cancel, and at most maxPendingAttaches.
	var ats []*Attachment
	for range maxPendingAttaches {
		at, err := d.OpenAttach(context.Background(), "a", AttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ats = append(ats, at)
	}
	if _, err := d.OpenAttach(context.Background(), "a", AttachOptions{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("attach beyond the bound: %v", err)
	}
	for _, at := range ats {
		at.Cancel()
	}
	if n := pending("a"); n != 0 {
		t.Fatalf("%d pending after cancel", n)
	}

	// The arrow is removed.
	at, err := d.OpenAttach(context.Background(), "a", AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(context.Background(), "a", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := at.Wait(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attach to a removed arrow: %v", err)
	}

	// Its start fails (no shim binary).
	d.cfg.Exe = "/nonexistent"
	createIdle(t, d, "b")
	at, err = d.OpenAttach(context.Background(), "b", AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		// The next run's end is that start's failure.
		w, err := d.WaitNext(ctx, "b")
		if err == nil && w.ExitCode != 125 {
			err = fmt.Errorf("exit %d, want 125", w.ExitCode)
		}
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := d.Start(context.Background(), "b"); err == nil {
		t.Fatal("start without a shim binary succeeded")
	}
	if _, _, err := at.Wait(context.Background()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "start failed") {
		t.Fatalf("attach whose start failed: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitNext across a failed start: %v", err)
	}
	// Now exited, it waits for a run to come: until its context ends.
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := d.WaitNext(short, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitNext of an exited arrow: %v, want it to wait", err)
	}
}

// Resize needs a terminal; sizes are checked. A size set before a start
// is that run's initial size.
func TestResizeRefused(t *testing.T) {
	d := newFakeShimDaemon(t)
	createIdle(t, d, "plain")
	if _, err := d.Create(context.Background(), &api.CreateRequest{Name: "term", NoStart: true, Config: api.Config{Program: "/bin/true", TTY: true}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref        string
		rows, cols uint16
		err        error
		msg        string
	}{
		{"plain", 24, 80, ErrConflict, "no terminal"},
		{"term", 0, 80, ErrInvalid, "at least one row"},
		{"term", 24, 0, ErrInvalid, "at least one row"},
		{"nope", 24, 80, ErrNotFound, "no such arrow"},
	} {
		err := d.Resize(context.Background(), tc.ref, tc.rows, tc.cols)
		if err == nil || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Resize(%s, %d, %d) = %v, want %v with %q", tc.ref, tc.rows, tc.cols, err, tc.err, tc.msg)
		}
	}
	h := d.Handler()
	for _, q := range []string{"", "h=10", "w=10", "h=0&w=10", "h=10&w=65536", "h=-1&w=3", "h=x&w=3"} {
		wantError(t, serveReq(t, h, "POST", "/v1/arrows/term/resize?"+q, "", nil), http.StatusBadRequest, "want a size")
	}
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/plain/resize?h=10&w=10", "", nil), http.StatusConflict, "no terminal")
	if resp := serveReq(t, h, "POST", "/v1/arrows/term/resize?h=30&w=100", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("resize of a created tty arrow: %d %s", resp.code, resp.body)
	}
	if _, err := d.Start(context.Background(), "term"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, d, "term")
	l, err := shim.ReadLaunch(d.arrowDir(mustID(t, d, "term")))
	if err != nil {
		t.Fatal(err)
	}
	if l.Size == nil || l.Size.Rows != 30 || l.Size.Cols != 100 {
		t.Fatalf("launch size after a resize before start: %+v", l.Size)
	}
	// Without a size set, the shim's default.
	if _, err := d.Start(context.Background(), "plain"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, d, "plain")
	if l, err := shim.ReadLaunch(d.arrowDir(mustID(t, d, "plain"))); err != nil || l.Size != nil {
		t.Fatalf("launch size of an arrow without a terminal: %+v, %v", l, err)
	}
}

// Over the API: attach?next=1 answers 101 before the start, and its
// stream then has the whole run; without next a created arrow is refused.
func TestHTTPAttachNext(t *testing.T) {
	d := newFakeShimDaemon(t)
	createIdle(t, d, "app")
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/arrows/app/attach")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("attach to a created arrow without next: %d", resp.StatusCode)
	}
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /v1/arrows/app/attach?next=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: arrow-attach\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("attach?next=1: %v %v", resp, err)
	}
	// Answered, so registered: a start now cannot pass it by.
	if _, err := d.Start(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, conn, br); got != wantLines() {
		t.Fatalf("attach?next=1 stream: %d bytes, want %d", len(got), len(wantLines()))
	}
	waitGone(t, d, "app")
}
