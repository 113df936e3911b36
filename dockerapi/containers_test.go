package dockerapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/logs"
)

// testServer serves the Docker API over a fake backend.
func testServer(t *testing.T) (*fakeBackend, *httptest.Server) {
	t.Helper()
	fb := newFakeBackend(t)
	s := New(Options{Backend: fb, Version: "test"})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return fb, ts
}

// call makes a request and returns the status and body.
func call(t *testing.T, ts *httptest.Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustCall is call, failing unless the status is want; it decodes the
// body into v, if given.
func mustCall(t *testing.T, ts *httptest.Server, method, path, body string, want int, v any) {
	t.Helper()
	code, b := call(t, ts, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// errorOf decodes Docker's error shape.
func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var e common.ErrorResponse
	if err := json.Unmarshal(b, &e); err != nil || e.Message == "" {
		t.Fatalf("not Docker's error shape: %s", b)
	}
	return e.Message
}

func create(t *testing.T, ts *httptest.Server, name, body string) string {
	t.Helper()
	var cr container.CreateResponse
	mustCall(t, ts, "POST", "/v1.47/containers/create?name="+name, body, http.StatusCreated, &cr)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(cr.ID) {
		t.Fatalf("ID %q: want 64 hex digits", cr.ID)
	}
	if cr.Warnings == nil {
		t.Error("Warnings is null: want a list")
	}
	return cr.ID
}

// hijacked makes a request that takes over the connection, as the docker
// CLI does, and returns the connection after the response's head.
func hijacked(t *testing.T, ts *httptest.Server, method, path, body string, upgrade bool) (*net.TCPConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, len(body))
	if upgrade {
		head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"+body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), br, resp
}

func TestContainerLifecycle(t *testing.T) {
	fb, ts := testServer(t)
	id := create(t, ts, "web1", `{"Image":"busybox","Cmd":["sleep","100"],"Labels":{"a":"b"}}`)

	var in container.InspectResponse
	mustCall(t, ts, "GET", "/containers/web1/json", "", http.StatusOK, &in)
	if in.ID != id || in.Name != "/web1" || in.State.Status != container.StateCreated || in.Config.Labels["a"] != "b" {
		t.Fatalf("inspect %+v", in)
	}
	// A prefix of the ID names it, as in arrow ps.
	mustCall(t, ts, "GET", "/containers/"+id[:6]+"/json", "", http.StatusOK, &in)

	var list []container.Summary
	mustCall(t, ts, "GET", "/containers/json", "", http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("a created container listed without all: %+v", list)
	}
	mustCall(t, ts, "GET", "/containers/json?all=1", "", http.StatusOK, &list)
	if len(list) != 1 || list[0].ID != id || list[0].State != container.StateCreated {
		t.Errorf("list all %+v", list)
	}

	mustCall(t, ts, "POST", "/containers/web1/start", "", http.StatusNoContent, nil)
	mustCall(t, ts, "POST", "/containers/web1/start", "", http.StatusNotModified, nil)
	mustCall(t, ts, "GET", "/containers/json?filters="+url.QueryEscape(`{"label":["a=b"],"status":["running"]}`), "", http.StatusOK, &list)
	if len(list) != 1 || list[0].State != container.StateRunning {
		t.Errorf("list running %+v", list)
	}
	mustCall(t, ts, "GET", "/containers/json?filters="+url.QueryEscape(`{"label":{"a=c":true}}`), "", http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("label filter matched %+v", list)
	}

	code, b := call(t, ts, "DELETE", "/containers/web1", "")
	if code != http.StatusConflict || !strings.Contains(errorOf(t, b), "stop the container") {
		t.Errorf("rm of a running container: %d %s", code, b)
	}
	mustCall(t, ts, "POST", "/containers/web1/pause", "", http.StatusNoContent, nil)
	mustCall(t, ts, "GET", "/containers/web1/json", "", http.StatusOK, &in)
	if in.State.Status != container.StatePaused || !in.State.Paused || !in.State.Running {
		t.Errorf("paused state %+v", in.State)
	}
	mustCall(t, ts, "POST", "/containers/web1/unpause", "", http.StatusNoContent, nil)
	mustCall(t, ts, "POST", "/containers/web1/rename?name=web2", "", http.StatusNoContent, nil)
	mustCall(t, ts, "POST", "/containers/web2/stop?t=3", "", http.StatusNoContent, nil)
	mustCall(t, ts, "POST", "/containers/web2/stop", "", http.StatusNotModified, nil)
	code, b = call(t, ts, "POST", "/containers/web2/kill", "")
	if code != http.StatusConflict || !strings.Contains(errorOf(t, b), "is not running") {
		t.Errorf("kill of a stopped container: %d %s", code, b)
	}
	mustCall(t, ts, "GET", "/containers/web2/json", "", http.StatusOK, &in)
	if in.State.Status != container.StateExited || in.State.ExitCode != 143 {
		t.Errorf("stopped state %+v", in.State)
	}
	mustCall(t, ts, "DELETE", "/containers/"+id[:12], "", http.StatusNoContent, nil)
	code, b = call(t, ts, "GET", "/containers/web2/json", "")
	if code != http.StatusNotFound || errorOf(t, b) != "No such container: web2" {
		t.Errorf("inspect after rm: %d %s", code, b)
	}
	want := []string{"create web1", "start web1", "pause web1", "unpause web1", "rename web1 web2", "stop web2 3s", "remove web2 false"}
	if got := fb.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("backend calls %q, want %q", got, want)
	}
}

func TestContainerErrors(t *testing.T) {
	_, ts := testServer(t)
	create(t, ts, "c1", `{"Image":"busybox"}`)
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Privileged":true}}`, 501, "Arrow does not support privileged"},
		{"POST", "/containers/create", `{"Image":"busybox"`, 400, "malformed JSON"},
		{"POST", "/containers/create?name=c1", `{"Image":"busybox"}`, 409, "in use"},
		{"POST", "/containers/nope/start", ``, 404, "No such container: nope"},
		{"POST", "/containers/c1/stop?signal=SIGINT", ``, 501, "SIGTERM"},
		{"POST", "/containers/c1/stop?t=x", ``, 400, "seconds"},
		{"POST", "/containers/c1/kill?signal=SIGNOPE", ``, 400, "unknown"},
		{"POST", "/containers/c1/wait?condition=soon", ``, 400, "invalid condition"},
		{"POST", "/containers/c1/rename?name=a%20b", ``, 400, "Invalid container name"},
		{"POST", "/containers/c1/resize?h=x&w=1", ``, 400, "rows and columns"},
		{"GET", "/containers/c1/logs", ``, 400, "at least one stream"},
		{"GET", "/containers/json?filters=" + url.QueryEscape(`{"before":["x"]}`), ``, 400, "invalid filter 'before'"},
		{"GET", "/containers/c1/archive?path=/etc", ``, 501, "docker cp"},
		{"PUT", "/containers/c1/archive?path=/etc", ``, 501, "docker cp"},
		{"GET", "/containers/c1/export", ``, 501, "docker export"},
		{"GET", "/containers/c1/changes", ``, 501, "docker diff"},
		{"POST", "/containers/c1/update", `{}`, 501, "docker update"},
		{"POST", "/commit?container=c1", ``, 501, "docker commit"},
		{"GET", "/containers/c1/checkpoints", ``, 501, "checkpoints"},
		{"POST", "/containers/c1/exec", `{"Cmd":["ls"]}`, 409, "is not running"},
		{"POST", "/containers/c1/exec", `{"Cmd":[]}`, 400, "No exec command"},
		{"POST", "/containers/c1/exec", `{"Cmd":["ls"],"Privileged":true}`, 501, "privileged"},
		{"POST", "/exec/0000/start", `{}`, 404, "No such exec instance"},
		{"GET", "/containers/c1/top", ``, 409, "is not running"},
		{"GET", "/events?filters=" + url.QueryEscape(`{"colour":["red"]}`), ``, 400, "invalid filter"},
	} {
		code, b := call(t, ts, tc.method, tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, b, tc.code)
			continue
		}
		if msg := errorOf(t, b); !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s: %q does not say %q", tc.method, tc.path, msg, tc.msg)
		}
	}
}

func TestCreateMissingImage(t *testing.T) {
	dir := t.TempDir()
	fb := newFakeBackend(t)
	ts := httptest.NewServer(New(Options{Backend: fb, Images: func() (*store.Store, error) { return store.Open(dir) }}))
	defer ts.Close()
	code, b := call(t, ts, "POST", "/containers/create", `{"Image":"busybox"}`)
	// The docker CLI pulls on this answer, then creates again.
	if code != http.StatusNotFound || errorOf(t, b) != "No such image: busybox:latest" {
		t.Errorf("%d %s", code, b)
	}
	if len(fb.Calls()) != 0 {
		t.Errorf("the backend was asked %q", fb.Calls())
	}
}

// waitBody starts a wait and returns the channel its answer comes on,
// once the server has answered its status line (the wait is in place).
func waitBody(t *testing.T, ts *httptest.Server, ref, cond string) <-chan container.WaitResponse {
	t.Helper()
	resp, err := http.Post(ts.URL+"/containers/"+ref+"/wait?condition="+cond, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("wait: %s", resp.Status)
	}
	ch := make(chan container.WaitResponse, 1)
	go func() {
		defer resp.Body.Close()
		var w container.WaitResponse
		if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
			t.Errorf("wait body: %v", err)
			w.StatusCode = -1
		}
		ch <- w
	}()
	return ch
}

func TestWait(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "w1", `{"Image":"busybox"}`)

	// not-running: at once for a container that is not running.
	if w := <-waitBody(t, ts, "w1", "not-running"); w.StatusCode != 0 || w.Error != nil {
		t.Errorf("not-running on a created container: %+v", w)
	}
	// next-exit before start, as docker run does.
	ch := waitBody(t, ts, "w1", "next-exit")
	mustCall(t, ts, "POST", "/containers/w1/start", "", http.StatusNoContent, nil)
	select {
	case w := <-ch:
		t.Fatalf("wait answered before the run ended: %+v", w)
	case <-time.After(100 * time.Millisecond):
	}
	fb.exit("w1", 3)
	select {
	case w := <-ch:
		if w.StatusCode != 3 {
			t.Errorf("next-exit: %+v", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not answer after the run ended")
	}
	// The default condition on a running container waits for its end.
	mustCall(t, ts, "POST", "/containers/w1/start", "", http.StatusNoContent, nil)
	ch = waitBody(t, ts, "w1", "")
	fb.exit("w1", 0)
	if w := <-ch; w.StatusCode != 0 {
		t.Errorf("not-running on a running container: %+v", w)
	}
}

func TestAutoRemove(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "rm1", `{"Image":"busybox","HostConfig":{"AutoRemove":true}}`)
	ch := waitBody(t, ts, "rm1", "removed")
	mustCall(t, ts, "POST", "/containers/rm1/start", "", http.StatusNoContent, nil)
	fb.exit("rm1", 7)
	select {
	case w := <-ch:
		if w.StatusCode != 7 || w.Error != nil {
			t.Errorf("removed: %+v", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the container was not removed after its run")
	}
	if code, _ := call(t, ts, "GET", "/containers/rm1/json", ""); code != http.StatusNotFound {
		t.Errorf("inspect after auto-remove: %d", code)
	}
}

// TestAutoRemoveRestart: docker restart of a --rm container keeps it. The
// old run ends inside the restart, before the new one starts; the remover
// that wakes then must wait for the new run, not remove (and kill) it.
func TestAutoRemoveRestart(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "rr", `{"Image":"busybox","HostConfig":{"AutoRemove":true}}`)
	mustCall(t, ts, "POST", "/containers/rr/start", "", http.StatusNoContent, nil)
	gap := make(chan struct{})
	fb.mu.Lock()
	fb.restartGap = gap
	fb.mu.Unlock()
	done := make(chan int, 1)
	go func() {
		code, _ := call(t, ts, "POST", "/containers/rr/restart?t=1", "")
		done <- code
	}()
	// Wait until the old run ended: the remover woke up then.
	for {
		var in container.InspectResponse
		mustCall(t, ts, "GET", "/containers/rr/json", "", http.StatusOK, &in)
		if !in.State.Running {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // give a wrong remover its chance
	close(gap)
	if code := <-done; code != http.StatusNoContent {
		t.Fatalf("restart: %d", code)
	}
	var in container.InspectResponse
	mustCall(t, ts, "GET", "/containers/rr/json", "", http.StatusOK, &in)
	if !in.State.Running {
		t.Fatalf("after restart: %+v", in.State)
	}
	ch := waitBody(t, ts, "rr", "removed")
	fb.exit("rr", 0)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the restarted run's end did not remove the container")
	}
}

// readMux reads frames until EOF and returns stdout and stderr.
func readMux(t *testing.T, r io.Reader) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	for {
		st, p, err := readMuxFrame(r)
		if err == io.EOF {
			return o.String(), e.String()
		}
		if err != nil {
			t.Fatalf("after %q %q: %v", o.String(), e.String(), err)
		}
		if st == stdoutStream {
			o.Write(p)
		} else {
			e.Write(p)
		}
	}
}

func TestAttach(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "a1", `{"Image":"busybox","OpenStdin":true,"StdinOnce":true}`)
	c, br, resp := hijacked(t, ts, "POST", "/v1.47/containers/a1/attach?stream=1&stdin=1&stdout=1&stderr=1", "", true)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "tcp" || resp.Header.Get("Content-Type") != muxStreamType {
		t.Fatalf("attach: %s %v", resp.Status, resp.Header)
	}
	// Answered before the start, as docker run needs; joined at it.
	select {
	case <-fb.attaches:
		t.Fatal("joined before the start")
	case <-time.After(50 * time.Millisecond):
	}
	mustCall(t, ts, "POST", "/containers/a1/start", "", http.StatusNoContent, nil)
	far := <-fb.attaches
	if !far.stdinOnce {
		t.Error("StdinOnce not passed on")
	}
	// Output: frames of the shim's streams, kept apart.
	if err := api.WriteFrame(far.conn, api.StreamStdout, []byte("out\n")); err != nil {
		t.Fatal(err)
	}
	if err := api.WriteFrame(far.conn, api.StreamStderr, []byte("err\n")); err != nil {
		t.Fatal(err)
	}
	// Input: raw, passed on; the client's end of it ends the
	// container's (StdinOnce).
	if _, err := io.WriteString(c, "input"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(far.r)
	if err != nil || string(got) != "input" {
		t.Errorf("the container read %q, %v", got, err)
	}
	far.conn.Close() // the run ends
	stdout, stderr := readMux(t, br)
	if stdout != "out\n" || stderr != "err\n" {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
}

func TestAttachTTYAndStreams(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "t1", `{"Image":"busybox","Tty":true}`)
	// Without an upgrade asked, 200; with a TTY, raw output.
	_, br, resp := hijacked(t, ts, "POST", "/containers/t1/attach?stream=1&stdout=1&stderr=1", "", false)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != rawStreamType {
		t.Fatalf("attach: %s %v", resp.Status, resp.Header)
	}
	mustCall(t, ts, "POST", "/containers/t1/start", "", http.StatusNoContent, nil)
	far := <-fb.attaches
	_ = api.WriteFrame(far.conn, api.StreamStdout, []byte("\x1b[1mbold\r\n"))
	far.conn.Close()
	if b, _ := io.ReadAll(br); string(b) != "\x1b[1mbold\r\n" {
		t.Errorf("raw output %q", b)
	}

	// stderr only: stdout is not passed on.
	create(t, ts, "t2", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/t2/start", "", http.StatusNoContent, nil)
	_, br, _ = hijacked(t, ts, "POST", "/containers/t2/attach?stream=1&stderr=1", "", true)
	far = <-fb.attaches
	_ = api.WriteFrame(far.conn, api.StreamStdout, []byte("hidden"))
	_ = api.WriteFrame(far.conn, api.StreamStderr, []byte("shown"))
	far.conn.Close()
	if stdout, stderr := readMux(t, br); stdout != "" || stderr != "shown" {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
}

func TestLogs(t *testing.T) {
	fb, ts := testServer(t)
	id := create(t, ts, "l1", `{"Image":"busybox"}`)
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	fb.mu.Lock()
	fb.logs[id] = []logs.Entry{
		{Time: t0, Stream: logs.Stdout, Line: []byte("one")},
		{Time: t0.Add(time.Second), Stream: logs.Stderr, Line: []byte("two")},
		{Time: t0.Add(2 * time.Second), Stream: logs.Stdout, Line: []byte("thr"), Partial: true},
		{Time: t0.Add(3 * time.Second), Stream: logs.Stdout, Line: []byte("ee")},
	}
	fb.mu.Unlock()
	for _, tc := range []struct {
		q              string
		stdout, stderr string
	}{
		{"stdout=1&stderr=1", "one\nthree\n", "two\n"},
		{"stdout=1", "one\nthree\n", ""},
		{"stderr=1&timestamps=1", "", "2026-01-01T10:00:01Z two\n"},
		{"stdout=1&stderr=1&tail=2", "three\n", ""},
		{"stdout=1&stderr=1&since=" + fmt.Sprint(t0.Add(time.Second).Unix()), "three\n", "two\n"},
		{"stdout=1&stderr=1&until=" + t0.Add(1500*time.Millisecond).Format(time.RFC3339Nano), "one\n", "two\n"},
	} {
		resp, err := http.Get(ts.URL + "/v1.45/containers/l1/logs?" + tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Content-Type") != muxStreamType {
			t.Errorf("%s: content type %q", tc.q, resp.Header.Get("Content-Type"))
		}
		stdout, stderr := readMux(t, resp.Body)
		resp.Body.Close()
		if stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("%s: stdout %q stderr %q, want %q %q", tc.q, stdout, stderr, tc.stdout, tc.stderr)
		}
	}
}

// execStream is the client's side of a started exec.
func startExec(t *testing.T, ts *httptest.Server, fb *fakeBackend, container, body string) (id string, c *net.TCPConn, br *bufio.Reader, far *fakeStream) {
	t.Helper()
	var ir common.IDResponse
	mustCall(t, ts, "POST", "/containers/"+container+"/exec", body, http.StatusCreated, &ir)
	c, br, resp := hijacked(t, ts, "POST", "/exec/"+ir.ID+"/start", `{"Detach":false,"Tty":false}`, true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("exec start: %s", resp.Status)
	}
	return ir.ID, c, br, <-fb.execs
}

func TestExec(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "e1", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/e1/start", "", http.StatusNoContent, nil)

	id, c, br, far := startExec(t, ts, fb, "e1", `{"Cmd":["sh","-c","cat; exit 2"],"Env":["A=1"],"WorkingDir":"/tmp","User":"nobody","AttachStdin":true,"AttachStdout":true,"AttachStderr":true}`)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Errorf("exec ID %q", id)
	}
	want := api.ExecConfig{Cmd: []string{"sh", "-c", "cat; exit 2"}, Env: []string{"A=1"}, WorkingDir: "/tmp", User: "nobody", Stdin: true}
	if !reflect.DeepEqual(*far.exec, want) {
		t.Errorf("exec config %+v, want %+v", *far.exec, want)
	}
	var ei container.ExecInspectResponse
	mustCall(t, ts, "GET", "/exec/"+id+"/json", "", http.StatusOK, &ei)
	if !ei.Running || ei.ExitCode != nil || ei.ContainerID == "" || ei.ProcessConfig.Entrypoint != "sh" {
		t.Errorf("running exec %+v", ei)
	}
	// Input becomes stdin frames, its end the close frame.
	_, _ = io.WriteString(c, "hello")
	_ = c.CloseWrite()
	var in []byte
	for {
		st, p, err := api.ReadExecFrame(far.r, api.ExecStdin, api.ExecStdinClose)
		if err != nil {
			t.Fatalf("stdin: %v", err)
		}
		if st == api.ExecStdinClose {
			break
		}
		in = append(in, p...)
	}
	if string(in) != "hello" {
		t.Errorf("the process read %q", in)
	}
	_ = api.WriteFrame(far.conn, api.StreamStdout, []byte("hello"))
	_ = api.WriteFrame(far.conn, api.StreamStderr, []byte("oops"))
	_ = api.WriteExecControl(far.conn, api.StreamExit, api.ExecExit{ExitCode: 2})
	far.conn.Close()
	if stdout, stderr := readMux(t, br); stdout != "hello" || stderr != "oops" {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
	mustCall(t, ts, "GET", "/exec/"+id+"/json", "", http.StatusOK, &ei)
	if ei.Running || ei.ExitCode == nil || *ei.ExitCode != 2 {
		t.Errorf("ended exec %+v", ei)
	}
	code, b := call(t, ts, "POST", "/exec/"+id+"/start", `{}`)
	if code != http.StatusConflict || !strings.Contains(errorOf(t, b), "already been started") {
		t.Errorf("second start: %d %s", code, b)
	}
}

func TestExecTTYResize(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "e2", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/e2/start", "", http.StatusNoContent, nil)
	id, _, br, far := startExec(t, ts, fb, "e2", `{"Cmd":["sh"],"Tty":true,"ConsoleSize":[24,80],"AttachStdout":true}`)
	if !far.exec.TTY || far.exec.Rows != 24 || far.exec.Cols != 80 {
		t.Errorf("exec config %+v", far.exec)
	}
	mustCall(t, ts, "POST", "/exec/"+id+"/resize?h=40&w=100", "", http.StatusOK, nil)
	st, p, err := api.ReadExecFrame(far.r, api.ExecResize)
	if err != nil {
		t.Fatal(err)
	}
	var size api.ExecSize
	if err := api.DecodeExecControl(p, &size); err != nil || st != api.ExecResize || size != (api.ExecSize{Rows: 40, Cols: 100}) {
		t.Errorf("resize frame %d %s: %v", st, p, err)
	}
	_ = api.WriteFrame(far.conn, api.StreamStdout, []byte("$ "))
	_ = api.WriteExecControl(far.conn, api.StreamExit, api.ExecExit{ExitCode: 0})
	far.conn.Close()
	if b, _ := io.ReadAll(br); string(b) != "$ " {
		t.Errorf("raw output %q", b)
	}
	code, _ := call(t, ts, "POST", "/exec/"+id+"/resize?h=1&w=1", "")
	if code != http.StatusConflict {
		t.Errorf("resize of an ended exec: %d", code)
	}
}

func TestExecDetached(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "e3", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/e3/start", "", http.StatusNoContent, nil)
	var ir common.IDResponse
	mustCall(t, ts, "POST", "/containers/e3/exec", `{"Cmd":["touch","/x"]}`, http.StatusCreated, &ir)
	mustCall(t, ts, "POST", "/exec/"+ir.ID+"/start", `{"Detach":true}`, http.StatusOK, nil)
	far := <-fb.execs
	_ = api.WriteExecControl(far.conn, api.StreamExit, api.ExecExit{ExitCode: 5})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ei container.ExecInspectResponse
		mustCall(t, ts, "GET", "/exec/"+ir.ID+"/json", "", http.StatusOK, &ei)
		if ei.ExitCode != nil {
			if *ei.ExitCode != 5 || ei.Running {
				t.Errorf("detached exec %+v", ei)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the detached exec's end was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTop(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "p1", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/p1/start", "", http.StatusNoContent, nil)
	go func() {
		far := <-fb.execs
		if !slices.Equal(far.exec.Cmd, []string{"ps", "-ef"}) {
			t.Errorf("top ran %q", far.exec.Cmd)
		}
		_ = api.WriteFrame(far.conn, api.StreamStdout, []byte("UID PID CMD\nroot 1 /sbin/arrow-init\n"))
		_ = api.WriteExecControl(far.conn, api.StreamExit, api.ExecExit{ExitCode: 0})
		far.conn.Close()
	}()
	var top container.TopResponse
	mustCall(t, ts, "GET", "/containers/p1/top", "", http.StatusOK, &top)
	if !reflect.DeepEqual(top.Titles, []string{"UID", "PID", "CMD"}) || len(top.Processes) != 1 || top.Processes[0][2] != "/sbin/arrow-init" {
		t.Errorf("top %+v", top)
	}
	// An image without ps says so.
	go func() {
		far := <-fb.execs
		_ = api.WriteExecControl(far.conn, api.StreamExit, api.ExecExit{ExitCode: 127, Error: "ps: not found"})
		far.conn.Close()
	}()
	code, b := call(t, ts, "GET", "/containers/p1/top", "")
	if code != http.StatusNotImplemented || !strings.Contains(errorOf(t, b), "has no ps") {
		t.Errorf("top without ps: %d %s", code, b)
	}
}

func TestStats(t *testing.T) {
	fb, ts := testServer(t)
	id := create(t, ts, "s1", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/s1/start", "", http.StatusNoContent, nil)
	fb.mu.Lock()
	fb.stats = []api.Stats{{ID: id, Name: "s1", CPUPercent: 25, MemoryBytes: 64 << 20, MemoryLimit: 512 << 20}}
	fb.mu.Unlock()
	var st container.StatsResponse
	mustCall(t, ts, "GET", "/containers/s1/stats?stream=false&one-shot=true", "", http.StatusOK, &st)
	if st.ID != id || st.MemoryStats.Usage != 64<<20 || st.MemoryStats.Limit != 512<<20 {
		t.Errorf("stats %+v", st)
	}
	cpu := float64(st.CPUStats.CPUUsage.TotalUsage - st.PreCPUStats.CPUUsage.TotalUsage)
	sys := float64(st.CPUStats.SystemUsage - st.PreCPUStats.SystemUsage)
	if pct := cpu / sys * float64(st.CPUStats.OnlineCPUs) * 100; pct < 24.9 || pct > 25.1 {
		t.Errorf("the CLI would show %.2f%%", pct)
	}
	// Streamed: one sample a second, counters that only grow.
	resp, err := http.Get(ts.URL + "/containers/s1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var a, b container.StatsResponse
	if err := dec.Decode(&a); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&b); err != nil {
		t.Fatal(err)
	}
	if b.PreCPUStats.CPUUsage.TotalUsage != a.CPUStats.CPUUsage.TotalUsage || b.CPUStats.CPUUsage.TotalUsage <= a.CPUStats.CPUUsage.TotalUsage {
		t.Errorf("counters do not carry over: %+v then %+v", a.CPUStats, b.CPUStats)
	}
}

func TestEventsStream(t *testing.T) {
	fb, ts := testServer(t)
	resp, err := http.Get(ts.URL + "/events?filters=" + url.QueryEscape(`{"label":["com.docker.compose.project=p"],"type":["container"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for fb.subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	create(t, ts, "other", `{"Image":"busybox"}`)
	id := create(t, ts, "mine", `{"Image":"busybox","Labels":{"com.docker.compose.project":"p"}}`)
	mustCall(t, ts, "POST", "/containers/mine/start", "", http.StatusNoContent, nil)
	fb.exit("mine", 1)
	mustCall(t, ts, "DELETE", "/containers/mine", "", http.StatusNoContent, nil)
	dec := json.NewDecoder(resp.Body)
	var got []string
	for _, want := range []string{"create", "start", "die", "destroy"} {
		var m eventMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(m.Action))
		if m.Actor.ID != id || string(m.Action) != want || m.Actor.Attributes["name"] != "mine" || m.Actor.Attributes["com.docker.compose.project"] != "p" {
			t.Errorf("event %+v, want %s of mine", m, want)
		}
		if want == "die" && m.Actor.Attributes["exitCode"] != "1" {
			t.Errorf("die without its exit code: %v", m.Actor.Attributes)
		}
	}
}

func TestEventsUntil(t *testing.T) {
	_, ts := testServer(t)
	start := time.Now()
	until := start.Add(300 * time.Millisecond)
	resp, err := http.Get(ts.URL + fmt.Sprintf("/events?until=%d.%09d", until.Unix(), until.Nanosecond()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("until: %q after %v", b, time.Since(start))
	}
}

func TestPrune(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "run1", `{"Image":"busybox"}`)
	mustCall(t, ts, "POST", "/containers/run1/start", "", http.StatusNoContent, nil)
	done := create(t, ts, "done1", `{"Image":"busybox","Labels":{"x":"1"}}`)
	create(t, ts, "done2", `{"Image":"busybox"}`)
	var rep container.PruneReport
	mustCall(t, ts, "POST", "/containers/prune?filters="+url.QueryEscape(`{"label":["x=1"]}`), "", http.StatusOK, &rep)
	if !reflect.DeepEqual(rep.ContainersDeleted, []string{done}) {
		t.Errorf("pruned %q", rep.ContainersDeleted)
	}
	mustCall(t, ts, "POST", "/containers/prune", "", http.StatusOK, &rep)
	if len(rep.ContainersDeleted) != 1 || len(fb.List(true)) != 1 {
		t.Errorf("pruned %q, left %d", rep.ContainersDeleted, len(fb.List(true)))
	}
}

func TestResize(t *testing.T) {
	fb, ts := testServer(t)
	create(t, ts, "r1", `{"Image":"busybox","Tty":true,"HostConfig":{"ConsoleSize":[30,90]}}`)
	mustCall(t, ts, "POST", "/containers/r1/start", "", http.StatusNoContent, nil)
	mustCall(t, ts, "POST", "/containers/r1/resize?h=50&w=120", "", http.StatusOK, nil)
	fb.mu.Lock()
	got := slices.Clone(fb.resizes)
	fb.mu.Unlock()
	if want := []string{"r1 30x90", "r1 50x120"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resizes %q, want %q", got, want)
	}
}

// TestAutoRemoveAfterRestart: the containers arrowd's previous run was to
// auto-remove are taken over by the first request after its restart.
func TestAutoRemoveAfterRestart(t *testing.T) {
	fb := newFakeBackend(t)
	mk := func(name, body string, state api.State) string {
		req, _, err := testTranslator().translate(name, decodeCreate(t, body))
		if err != nil {
			t.Fatal(err)
		}
		a, err := fb.Create(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if state != api.Created {
			if _, err := fb.Start(t.Context(), a.ID); err != nil {
				t.Fatal(err)
			}
		}
		if state == api.Exited {
			fb.exit(a.ID, 0)
		}
		return a.ID
	}
	running := mk("running", `{"Image":"busybox","HostConfig":{"AutoRemove":true}}`, api.Running)
	mk("ended", `{"Image":"busybox","HostConfig":{"AutoRemove":true}}`, api.Exited)
	mk("created", `{"Image":"busybox","HostConfig":{"AutoRemove":true}}`, api.Created)
	mk("kept", `{"Image":"busybox"}`, api.Exited)

	ts := httptest.NewServer(New(Options{Backend: fb}))
	defer ts.Close()
	names := func() []string {
		var list []container.Summary
		mustCall(t, ts, "GET", "/containers/json?all=1", "", http.StatusOK, &list)
		var out []string
		for _, s := range list {
			out = append(out, s.Names[0])
		}
		slices.Sort(out)
		return out
	}
	if got, want := names(), []string{"/created", "/kept", "/running"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the first request: %q, want %q", got, want)
	}
	fb.exit(running, 0)
	deadline := time.Now().Add(5 * time.Second)
	for want := []string{"/created", "/kept"}; !reflect.DeepEqual(names(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the running one was not removed after its end: %q", names())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCreateFromStore: create finds an image as Docker names it, hands the
// daemon the store's name, and publishes the image's exposed ports.
func TestCreateFromStore(t *testing.T) {
	fb := newFakeBackend(t)
	root := t.TempDir()
	st, err := store.Open(root + "/images")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Options{Backend: fb, Root: root, Images: func() (*store.Store, error) { return st, nil }}))
	defer ts.Close()
	img := imgTestImage(t, v1.Config{Cmd: []string{"/bin/web"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}}, [2]string{"bin/web", "x"})
	req, err := http.NewRequest("POST", ts.URL+"/images/load", bytes.NewReader(imgDockerSave(t, map[string]v1.Image{"web:latest": img})))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	imgs, err := st.List(t.Context())
	if err != nil || len(imgs) != 1 {
		t.Fatalf("load: %s, %v %v", resp.Status, imgs, err)
	}
	id := imgs[0].ID
	for i, ref := range []string{"web", "web:latest", "docker.io/library/web:latest", id[:8], "sha256:" + id} {
		cid := create(t, ts, fmt.Sprintf("c%d", i), `{"Image":"`+ref+`","HostConfig":{"PublishAllPorts":true}}`)
		a, err := fb.Get(cid)
		if err != nil {
			t.Fatal(err)
		}
		want := "web:latest"
		if strings.HasPrefix(ref, "sha256:") || ref == id[:8] {
			want = id // an ID pins the image
		}
		if a.Config.Image != want {
			t.Errorf("%s: the daemon is to run %q, want %q", ref, a.Config.Image, want)
		}
		if len(a.Config.Ports) != 1 || a.Config.Ports[0].GuestPort != 8080 || a.Config.Ports[0].HostPort == 0 {
			t.Errorf("%s: ports %+v", ref, a.Config.Ports)
		}
		var in container.InspectResponse
		mustCall(t, ts, "GET", "/containers/"+cid+"/json", "", http.StatusOK, &in)
		if in.Image != "sha256:"+id || in.Config.Image != ref {
			t.Errorf("%s: inspect shows image %q, config image %q", ref, in.Image, in.Config.Image)
		}
	}
	var list []container.Summary
	mustCall(t, ts, "GET", "/containers/json?all=1&filters="+url.QueryEscape(`{"ancestor":["web"]}`), "", http.StatusOK, &list)
	if len(list) != 5 {
		t.Errorf("ancestor=web lists %d containers, want 5", len(list))
	}
	code, b := call(t, ts, "POST", "/containers/create", `{"Image":"db"}`)
	if code != http.StatusNotFound || errorOf(t, b) != "No such image: db:latest" {
		t.Errorf("a missing image: %d %s", code, b)
	}
}

// TestInspectShortIDAlias: on a bridge network the short ID is among the
// aliases, as docker-compose 1.29 expects of a container it need not
// reconnect.
func TestInspectShortIDAlias(t *testing.T) {
	fb, ts := testServer(t)
	fb.NetworkCreate(t.Context(), &api.NetworkCreateRequest{Name: "p_default"})
	id := create(t, ts, "c1", `{"Image":"busybox","HostConfig":{"NetworkMode":"p_default"},"NetworkingConfig":{"EndpointsConfig":{"p_default":{"Aliases":["web"]}}}}`)
	var in container.InspectResponse
	mustCall(t, ts, "GET", "/v1.50/containers/c1/json", "", http.StatusOK, &in)
	if got := in.NetworkSettings.Networks["p_default"].Aliases; !reflect.DeepEqual(got, []string{"web", id[:12]}) {
		t.Errorf("aliases %q", got)
	}
	create(t, ts, "c2", `{"Image":"busybox"}`)
	mustCall(t, ts, "GET", "/v1.50/containers/c2/json", "", http.StatusOK, &in)
	if got := in.NetworkSettings.Networks["bridge"].Aliases; len(got) != 0 {
		t.Errorf("aliases on the default network %q", got)
	}
}
