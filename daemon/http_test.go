package daemon

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

// newTestDaemon returns a daemon whose arrows cannot start: its shim
// binary does not exist. Everything that needs no VM works.
func newTestDaemon(t testing.TB) *Daemon {
	t.Helper()
	// Socket paths are short (108 bytes): not under t.TempDir().
	run, err := os.MkdirTemp("", "arrowd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	d, err := New(Config{Root: t.TempDir(), RunDir: run, Exe: "/nonexistent", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type response struct {
	code int
	hdr  http.Header
	body []byte
}

// serveReq serves one request with h.
func serveReq(t testing.TB, h http.Handler, method, path, contentType string, body io.Reader) response {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return response{w.Code, w.Header(), w.Body.Bytes()}
}

// wantError checks that resp is an api.Error with code, whose message
// contains msg, and returns the message.
func wantError(t *testing.T, resp response, code int, msg string) string {
	t.Helper()
	if resp.code != code {
		t.Fatalf("status %d, want %d (body %s)", resp.code, code, resp.body)
	}
	if ct := resp.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var e api.Error
	dec := json.NewDecoder(strings.NewReader(string(resp.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Message == "" {
		t.Fatalf("body %q is not an api.Error: %v", resp.body, err)
	}
	if !strings.Contains(e.Message, msg) {
		t.Errorf("message %q, want %q in it", e.Message, msg)
	}
	return e.Message
}

func listArrows(t *testing.T, h http.Handler, all bool) []api.Arrow {
	t.Helper()
	path := "/v1/arrows"
	if all {
		path += "?all=1"
	}
	resp := serveReq(t, h, "GET", path, "", nil)
	if resp.code != http.StatusOK {
		t.Fatalf("list: %d %s", resp.code, resp.body)
	}
	var out []api.Arrow
	if err := json.Unmarshal(resp.body, &out); err != nil || out == nil {
		t.Fatalf("list: %q: %v", resp.body, err)
	}
	return out
}

func TestHTTPInfo(t *testing.T) {
	d := newTestDaemon(t)
	resp := serveReq(t, d.Handler(), "GET", "/v1/info", "", nil)
	if resp.code != http.StatusOK || resp.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("info: %d %v %s", resp.code, resp.hdr, resp.body)
	}
	var info api.Info
	if err := json.Unmarshal(resp.body, &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != "test" || info.Root != d.cfg.Root || info.Arrows != 0 || info.Running != 0 || info.Cgroups != "" {
		t.Fatalf("info %+v", info)
	}
	if info.Accel != "kvm" && info.Accel != "tcg" {
		t.Errorf("accel %q", info.Accel)
	}
}

func TestHTTPNotFound(t *testing.T) {
	h := newTestDaemon(t).Handler()
	for _, tc := range []struct{ method, path, msg string }{
		{"GET", "/v1/arrows/nope", `no such arrow: "nope"`},
		{"DELETE", "/v1/arrows/nope", "no such arrow"},
		{"POST", "/v1/arrows/nope/start", "no such arrow"},
		{"POST", "/v1/arrows/nope/stop", "no such arrow"},
		{"POST", "/v1/arrows/nope/restart", "no such arrow"},
		{"POST", "/v1/arrows/nope/kill", "no such arrow"},
		{"POST", "/v1/arrows/nope/wait", "no such arrow"},
		{"GET", "/v1/arrows/nope/logs", "no such arrow"},
		{"GET", "/v1/arrows/nope/attach", "no such arrow"},
		// Unknown endpoints, and methods an endpoint does not take.
		{"GET", "/v2/info", "no such endpoint"},
		{"GET", "/info", "no such endpoint"},
		{"GET", "/v1/arrows/x/y/z", "no such endpoint"},
		{"GET", "/v1/arrows/nope/start", "no such endpoint"},
		{"PUT", "/v1/info", "no such endpoint"},
		{"POST", "/metrics", "no such endpoint"},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			wantError(t, serveReq(t, h, tc.method, tc.path, "", nil), http.StatusNotFound, tc.msg)
		})
	}
}

func TestHTTPBadParams(t *testing.T) {
	h := newTestDaemon(t).Handler()
	for _, tc := range []struct{ method, path, msg string }{
		// Parameters are checked before the arrow is looked up.
		{"POST", "/v1/arrows/nope/kill?signal=SIGNOPE", "SIGNOPE"},
		{"POST", "/v1/arrows/nope/kill?signal=0", "signal 0"},
		{"POST", "/v1/arrows/nope/stop?t=-1", "t="},
		{"POST", "/v1/arrows/nope/stop?t=x", "t="},
		{"POST", "/v1/arrows/nope/restart?t=100000", "t="},
	} {
		t.Run(tc.path, func(t *testing.T) {
			wantError(t, serveReq(t, h, tc.method, tc.path, "", nil), http.StatusBadRequest, tc.msg)
		})
	}
}

func TestHTTPCreateInvalid(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	const ok = `{"config":{"image":"alpine"}}`
	huge := `{"name":"` + strings.Repeat("a", api.MaxRequestBytes) + `","config":{"image":"alpine"}}`
	for _, tc := range []struct {
		name, ct, body string
		code           int
		msg            string
	}{
		{"malformed", "application/json", `{"config":`, 400, "malformed JSON"},
		{"not an object", "application/json", `[1,2]`, 400, "malformed JSON"},
		{"empty body", "application/json", ``, 400, "malformed JSON"},
		{"wrong type", "application/json", `{"config":{"image":1}}`, 400, "malformed JSON"},
		{"unknown field", "application/json", `{"config":{"image":"alpine"},"cmd":"x"}`, 400, `unknown field "cmd"`},
		{"unknown nested field", "application/json", `{"config":{"image":"alpine","memory":1}}`, 400, `unknown field "memory"`},
		{"two values", "application/json", ok + ok, 400, "more than one value"},
		{"two values, spaced", "application/json", ok + "\n" + ok, 400, "more than one value"},
		{"trailing garbage", "application/json", ok + " x", 400, "malformed JSON"},
		{"trailing brace", "application/json", ok + "}", 400, "malformed JSON"},
		{"trailing bracket", "application/json", ok + "]", 400, "malformed JSON"},
		{"too large", "application/json", huge, 413, "exceeds"},
		{"text/plain", "text/plain", ok, 415, "application/json"},
		{"form", "application/x-www-form-urlencoded", ok, 415, "application/json"},
		{"invalid name", "application/json", `{"name":"-x","config":{"image":"alpine"}}`, 400, "name"},
		{"NUL in name", "application/json", `{"name":"x\u0000","config":{"image":"alpine"}}`, 400, "name"},
		{"invalid restart policy", "application/json", `{"config":{"image":"alpine"},"restart":{"name":"sometimes"}}`, 400, "restart"},
		{"retries without on-failure", "application/json", `{"config":{"image":"alpine"},"restart":{"name":"always","max_retries":2}}`, 400, "restart"},
		{"nothing to run", "application/json", `{"config":{}}`, 400, "nothing to run"},
		{"no config", "application/json", `{}`, 400, "nothing to run"},
		{"relative program", "application/json", `{"config":{"program":"bin/sh"}}`, 400, "absolute"},
		{"NUL in arg", "application/json", `{"config":{"image":"a","args":["\u0000"]}}`, 400, "NUL"},
		{"more memory than the host has", "application/json", `{"config":{"image":"a","memory_mib":1048576}}`, 400, "the host has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, serveReq(t, h, "POST", "/v1/arrows", tc.ct, strings.NewReader(tc.body)), tc.code, tc.msg)
			if strings.HasPrefix(msg, "invalid request") {
				t.Errorf("message %q keeps the sentinel's prefix", msg)
			}
			// Nothing changed.
			if l := listArrows(t, h, true); len(l) != 0 {
				t.Fatalf("after a bad request: %d arrows", len(l))
			}
			if ents, _ := os.ReadDir(filepath.Join(d.cfg.Root, "arrows")); len(ents) != 0 {
				t.Fatalf("after a bad request: %d arrow directories", len(ents))
			}
		})
	}
	if recs, _ := d.st.all(); len(recs) != 0 {
		t.Fatalf("%d records stored", len(recs))
	}
}

// TestHTTPCreateShimFails creates arrows whose supervisor cannot start (no
// such executable), and drives them through the API.
func TestHTTPCreateShimFails(t *testing.T) {
	d := newTestDaemon(t)
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	h := d.Handler()

	// Watch the events meanwhile.
	evResp, err := http.Get(srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer evResp.Body.Close()
	if evResp.StatusCode != 200 || evResp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("events: %d %v", evResp.StatusCode, evResp.Header)
	}
	events := make(chan api.Event, 16)
	go func() {
		dec := json.NewDecoder(evResp.Body)
		for {
			var e api.Event
			if dec.Decode(&e) != nil {
				close(events)
				return
			}
			events <- e
		}
	}()

	body := `{"name":"web","config":{"program":"/bin/true","args":["x"]},"restart":{"name":"always"},"labels":{"team":"a"}}`
	resp := serveReq(t, h, "POST", "/v1/arrows", "application/json; charset=utf-8", strings.NewReader(body+"\n\t "))
	if resp.code != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.code, resp.body)
	}
	var a api.Arrow
	if err := json.Unmarshal(resp.body, &a); err != nil {
		t.Fatal(err)
	}
	// The arrow is created, and says why it is not running; the restart
	// policy does not apply to a start that failed.
	if len(a.ID) != 64 || a.Name != "web" || a.State != api.Exited || a.ExitCode != 125 ||
		!strings.Contains(a.Error, "/nonexistent") || a.FinishedAt.IsZero() || !a.StartedAt.IsZero() ||
		a.ShimPid != 0 || a.Pid != 0 || a.Restarts != 0 || a.Restart.Name != "always" || a.Labels["team"] != "a" {
		t.Fatalf("created arrow %+v", a)
	}
	if a.Dir != filepath.Join(d.cfg.Root, "arrows", a.ID) {
		t.Errorf("dir %s", a.Dir)
	}
	if _, err := os.Stat(a.Dir); err != nil {
		t.Errorf("arrow directory: %v", err)
	}
	if _, err := os.Stat(d.socketPath(a.ID)); err == nil {
		t.Errorf("a socket was left")
	}
	// It is recorded, so a new daemon would see it as it is.
	recs, _ := d.st.all()
	if len(recs) != 1 || recs[0].State != api.Exited || recs[0].Error != a.Error {
		t.Fatalf("stored: %+v", recs)
	}
	if l := listArrows(t, h, false); len(l) != 0 {
		t.Errorf("running list: %d", len(l))
	}
	if l := listArrows(t, h, true); len(l) != 1 || l[0].ID != a.ID {
		t.Errorf("full list: %+v", l)
	}
	// Nothing restarts it.
	time.Sleep(3 * backoffMin)
	if got := d.snapshot(d.arrows[a.ID]); got.State != api.Exited || got.Restarts != 0 {
		t.Fatalf("after a while: %s, %d restarts", got.State, got.Restarts)
	}

	// By name, by ID, by ID prefix.
	for _, ref := range []string{"web", a.ID, a.ID[:6]} {
		resp := serveReq(t, h, "GET", "/v1/arrows/"+ref, "", nil)
		var got api.Arrow
		if resp.code != 200 || json.Unmarshal(resp.body, &got) != nil || got.ID != a.ID {
			t.Errorf("inspect %s: %d %s", ref, resp.code, resp.body)
		}
	}

	// The name is taken.
	wantError(t, serveReq(t, h, "POST", "/v1/arrows", "", strings.NewReader(body)), http.StatusConflict, `"web" is in use`)

	// An arrow without a name gets one.
	resp = serveReq(t, h, "POST", "/v1/arrows", "", strings.NewReader(`{"config":{"image":"alpine"}}`))
	var b api.Arrow
	if resp.code != http.StatusCreated || json.Unmarshal(resp.body, &b) != nil || !api.ValidName(b.Name) || b.Restart.Name != "no" {
		t.Fatalf("create without a name: %d %s", resp.code, resp.body)
	}

	// A prefix of both IDs is ambiguous (IDs are random: one hex digit
	// matches both one time in 16).
	if a.ID[0] == b.ID[0] {
		wantError(t, serveReq(t, h, "GET", "/v1/arrows/"+a.ID[:1], "", nil), http.StatusBadRequest, "more than one arrow")
	}

	// Operations on an arrow that is not running.
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/kill?signal=SIGNOPE", "", nil), http.StatusBadRequest, "SIGNOPE")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/kill?signal=TERM", "", nil), http.StatusConflict, "not running")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/kill", "", nil), http.StatusConflict, "not running")
	wantError(t, serveReq(t, h, "GET", "/v1/arrows/web/attach", "", nil), http.StatusConflict, "not running")
	wantError(t, serveReq(t, h, "GET", "/v1/arrows/web/logs?tail=x", "", nil), http.StatusBadRequest, "tail")
	wantError(t, serveReq(t, h, "GET", "/v1/arrows/web/logs?tail=-1", "", nil), http.StatusBadRequest, "tail")
	wantError(t, serveReq(t, h, "GET", "/v1/arrows/web/logs?since=yesterday", "", nil), http.StatusBadRequest, "since")
	if resp := serveReq(t, h, "GET", "/v1/arrows/web/logs?tail=all&since=10m", "", nil); resp.code != 200 || len(resp.body) != 0 {
		t.Errorf("logs of an arrow that never ran: %d %q", resp.code, resp.body)
	}
	if resp := serveReq(t, h, "POST", "/v1/arrows/web/stop?t=1", "", nil); resp.code != http.StatusNoContent {
		t.Errorf("stop of a stopped arrow: %d %s", resp.code, resp.body)
	}
	resp = serveReq(t, h, "POST", "/v1/arrows/web/wait", "", nil)
	var wr api.WaitResponse
	if resp.code != 200 || json.Unmarshal(resp.body, &wr) != nil || wr.ExitCode != 125 || wr.Error != a.Error {
		t.Errorf("wait: %d %s", resp.code, resp.body)
	}
	// A start fails as the first did, and says so.
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/start", "", nil), http.StatusInternalServerError, "/nonexistent")
	wantError(t, serveReq(t, h, "POST", "/v1/arrows/web/restart", "", nil), http.StatusInternalServerError, "/nonexistent")
	if got := d.snapshot(d.arrows[a.ID]); got.State != api.Exited || got.ExitCode != 125 {
		t.Errorf("after a failed start: %+v", got)
	}

	// Info counts it.
	var info api.Info
	resp = serveReq(t, h, "GET", "/v1/info", "", nil)
	if json.Unmarshal(resp.body, &info) != nil || info.Arrows != 2 || info.Running != 0 {
		t.Errorf("info: %s", resp.body)
	}

	// Metrics see it.
	resp = serveReq(t, h, "GET", "/metrics", "", nil)
	if resp.code != 200 || !strings.Contains(string(resp.body), `arrow_arrows{state="exited"} 2`) {
		t.Errorf("metrics: %d\n%s", resp.code, resp.body)
	}

	// No running arrows: no stats.
	resp = serveReq(t, h, "GET", "/v1/stats", "", nil)
	if resp.code != 200 || strings.TrimSpace(string(resp.body)) != "[]" {
		t.Errorf("stats: %d %s", resp.code, resp.body)
	}

	// Remove it: gone, files and all.
	if resp := serveReq(t, h, "DELETE", "/v1/arrows/web", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", resp.code, resp.body)
	}
	if _, err := os.Stat(a.Dir); !os.IsNotExist(err) {
		t.Errorf("arrow directory after remove: %v", err)
	}
	wantError(t, serveReq(t, h, "GET", "/v1/arrows/"+a.ID, "", nil), http.StatusNotFound, "no such arrow")
	wantError(t, serveReq(t, h, "DELETE", "/v1/arrows/web", "", nil), http.StatusNotFound, "no such arrow")
	if recs, _ := d.st.all(); len(recs) != 1 {
		t.Errorf("%d records after remove", len(recs))
	}

	// The events so far.
	var types []string
	timeout := time.After(2 * time.Second)
collect:
	for {
		select {
		case e, ok := <-events:
			if !ok {
				break collect
			}
			if e.ID == a.ID {
				types = append(types, e.Type)
			}
			if e.Type == "destroy" {
				break collect
			}
		case <-timeout:
			break collect
		}
	}
	t.Logf("events of the arrow: %v", types)
	if len(types) == 0 || types[0] != "create" || types[len(types)-1] != "destroy" {
		t.Errorf("events %v: want create first, destroy last", types)
	}
}

// TestHTTPStatsStream checks the NDJSON framing of stats?stream=1.
func TestHTTPStatsStream(t *testing.T) {
	d := newTestDaemon(t)
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/stats?stream=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "[]\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
}
