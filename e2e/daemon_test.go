package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

// testDaemon is an arrowd of a test's own: its own data root (sharing the
// machine's kernel and initramfs cache) and socket.
type testDaemon struct {
	t      *testing.T
	root   string
	socket string
	env    []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	args   []string // extra arguments of `arrow daemon`
}

// startDaemon starts an arrowd for the test and, at the end of the test,
// removes every arrow it has and checks that no VM of it is left.
func startDaemon(t *testing.T, args ...string) *testDaemon {
	t.Helper()
	return startDaemonEnv(t, nil, args...)
}

// startDaemonEnv is startDaemon with env added to the environment of
// arrowd and of the CLI.
func startDaemonEnv(t *testing.T, env []string, args ...string) *testDaemon {
	t.Helper()
	root := t.TempDir()
	for _, shared := range []string{"kernels", "initramfs"} {
		if err := os.Symlink(filepath.Join("/var/lib/arrow", shared), filepath.Join(root, shared)); err != nil {
			t.Fatal(err)
		}
	}
	// Socket addresses are limited to 108 bytes: keep the runtime
	// directory short.
	run, err := os.MkdirTemp("", "ad")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDaemon{t: t, root: root, socket: filepath.Join(run, "arrow.sock"), args: args}
	d.env = append([]string{"ARROW_ROOT=" + root, "ARROW_SOCKET=" + d.socket}, env...)
	before := qemuProcesses(t)
	d.start()
	t.Cleanup(func() {
		if d.cmd == nil {
			d.start()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := d.client()
		if list, err := c.List(ctx, true); err == nil {
			for _, a := range list {
				if err := c.Remove(ctx, a.ID, true); err != nil {
					t.Errorf("cleanup: rm -f %s: %v", a.Name, err)
				}
			}
		}
		d.stop()
		assertNoNewQEMU(t, before)
		os.RemoveAll(run)
		if t.Failed() {
			t.Logf("arrowd log:\n%s", d.log.String())
		}
	})
	return d
}

// start starts arrowd and waits until it answers.
func (d *testDaemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	cmd := exec.Command(arrowBin, append([]string{"daemon"}, d.args...)...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for d.client().Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			d.t.Fatalf("arrowd did not answer:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends arrowd with SIGTERM.
func (d *testDaemon) stop() { d.signal(syscall.SIGTERM) }

// kill ends arrowd with SIGKILL, as a crash would.
func (d *testDaemon) kill() { d.signal(syscall.SIGKILL) }

func (d *testDaemon) signal(sig syscall.Signal) {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	_ = d.cmd.Wait()
	d.cmd = nil
}

func (d *testDaemon) client() *client.Client { return client.New(d.socket) }

// arrow runs the CLI against this daemon.
func (d *testDaemon) arrow(args ...string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, args...)
	cmd.Env = append(os.Environ(), d.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	if ctx.Err() != nil {
		d.t.Fatalf("arrow %q did not finish\nstderr: %s", args, errb.String())
	}
	return result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// must runs the CLI and fails the test unless it succeeds.
func (d *testDaemon) must(args ...string) string {
	d.t.Helper()
	r := d.arrow(args...)
	if r.code != 0 {
		d.t.Fatalf("arrow %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (d *testDaemon) inspect(ref string) api.Arrow {
	d.t.Helper()
	a, err := d.client().Inspect(context.Background(), ref)
	if err != nil {
		d.t.Fatalf("inspect %s: %v", ref, err)
	}
	return a
}

// waitFor polls until cond holds for the arrow, or fails after timeout.
func (d *testDaemon) waitFor(ref string, timeout time.Duration, what string, cond func(api.Arrow) bool) api.Arrow {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := d.inspect(ref)
		if cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: not %s after %v: %+v", ref, what, timeout, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ticker is a busybox loop that prints a numbered line twice a second.
var ticker = []string{"/bin/busybox", "sh", "-c", `i=0; trap 'echo got TERM; exit 7' TERM; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done`}

// ticks returns the tick numbers in an arrow's log.
func (d *testDaemon) ticks(ref string) []int {
	d.t.Helper()
	var n []int
	for _, line := range strings.Split(d.must("logs", ref), "\n") {
		var i int
		if _, err := fmt.Sscanf(line, "tick %d", &i); err == nil {
			n = append(n, i)
		}
	}
	return n
}

func TestDaemonLifecycle(t *testing.T) {
	d := startDaemon(t)
	id := strings.TrimSpace(d.must(append([]string{"run", "-d", "--name", "web", "--label", "tier=front"}, ticker...)...))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-hex ID", id)
	}
	a := d.inspect("web")
	if a.State != api.Running || a.Pid == 0 || a.Accel == "" || a.Labels["tier"] != "front" {
		t.Fatalf("after run -d: %+v", a)
	}
	if a.Template == "" {
		t.Errorf("inspect does not say which template web was cloned from")
	}
	// Resolution by ID prefix.
	if got := d.inspect(id[:8]); got.Name != "web" {
		t.Fatalf("inspect by prefix: %s", got.Name)
	}
	ps := d.must("ps")
	if !strings.Contains(ps, "web") || !strings.Contains(ps, "Up ") || !strings.Contains(ps, id[:12]) {
		t.Fatalf("ps:\n%s", ps)
	}
	var list []api.Arrow
	if err := json.Unmarshal([]byte(d.must("ps", "--format", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("ps --format json: %v %v", err, list)
	}

	// logs -f follows new lines until the arrow ends.
	d.waitFor("web", time.Minute, "ticking", func(api.Arrow) bool { return len(d.ticks("web")) >= 2 })
	tail := d.must("logs", "--tail", "1", "--timestamps", "web")
	if f := strings.Fields(tail); len(f) != 3 || f[1] != "tick" {
		t.Fatalf("logs --tail 1 --timestamps: %q", tail)
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.Fields(tail)[0]); err != nil {
		t.Fatalf("timestamp: %v", err)
	}

	follow := exec.Command(arrowBin, "logs", "-f", "web")
	follow.Env = append(os.Environ(), d.env...)
	var fout bytes.Buffer
	follow.Stdout = &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}

	// stop: the application's TERM handler runs, and stop returns.
	t0 := time.Now()
	d.must("stop", "-t", "5", "web")
	if el := time.Since(t0); el > 20*time.Second {
		t.Errorf("stop took %v", el)
	}
	a = d.inspect("web")
	if a.State != api.Exited || a.ExitCode != 7 || !a.StoppedByUser {
		t.Fatalf("after stop: state %s exit %d", a.State, a.ExitCode)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = follow.Process.Kill()
		t.Fatal("logs -f did not end when the arrow stopped")
	}
	if !strings.Contains(fout.String(), "got TERM") || !strings.Contains(fout.String(), "tick 1\n") {
		t.Errorf("logs -f saw:\n%s", fout.String())
	}
	if ps := d.must("ps", "-a"); !strings.Contains(ps, "Exited (7)") {
		t.Errorf("ps -a:\n%s", ps)
	}
	if ps := d.must("ps"); strings.Contains(ps, "web") {
		t.Errorf("ps lists a stopped arrow:\n%s", ps)
	}

	// start, then restart: the log goes on across runs. (Each run is
	// given time to print its first line: a signal that comes before the
	// shell set its trap ends it at once.)
	runs := func(n int) {
		t.Helper()
		d.waitFor("web", time.Minute, fmt.Sprintf("in run %d", n), func(api.Arrow) bool {
			return strings.Count(d.must("logs", "web"), "tick 1\n") >= n
		})
	}
	d.must("start", "web")
	if a := d.inspect("web"); a.State != api.Running {
		t.Fatalf("after start: %s", a.State)
	}
	runs(2)
	d.must("restart", "-t", "5", "web")
	a = d.waitFor("web", time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	runs(3)

	// kill -s: a signal the application does not catch ends it.
	d.must("kill", "-s", "USR1", "web")
	r := d.arrow("wait", "web")
	if strings.TrimSpace(r.stdout) != "138" {
		t.Fatalf("wait after kill -s USR1: %q %s", r.stdout, r.stderr)
	}
	if n := strings.Count(d.must("logs", "web"), "tick 1\n"); n != 3 {
		t.Errorf("log has %d runs, want 3 (run, start, restart)", n)
	}

	// rm of a running arrow is refused; rm -f kills it.
	d.must("start", "web")
	if r := d.arrow("rm", "web"); r.code == 0 || !strings.Contains(r.stderr, "running") {
		t.Fatalf("rm of a running arrow: exit %d: %s", r.code, r.stderr)
	}
	d.must("rm", "-f", "web")
	if r := d.arrow("inspect", "web"); r.code == 0 || !strings.Contains(r.stderr, "no such arrow") {
		t.Fatalf("inspect after rm: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(a.Dir); !os.IsNotExist(err) {
		t.Errorf("rm left %s", a.Dir)
	}
}

func TestDaemonStopTimeout(t *testing.T) {
	d := startDaemon(t)
	// An application that ignores SIGTERM is killed after the timeout.
	d.must("run", "-d", "--name", "stubborn", "/bin/busybox", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done")
	d.waitFor("stubborn", time.Minute, "ready", func(api.Arrow) bool { return strings.Contains(d.must("logs", "stubborn"), "ready") })
	t0 := time.Now()
	d.must("stop", "-t", "1", "stubborn")
	el := time.Since(t0)
	a := d.inspect("stubborn")
	if a.ExitCode != 137 {
		t.Errorf("exit %d after stop -t 1 of an app ignoring TERM, want 137", a.ExitCode)
	}
	if el < time.Second || el > 15*time.Second {
		t.Errorf("stop -t 1 took %v", el)
	}
}

func TestDaemonRestartPolicy(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan api.Event, 64)
	go func() { _ = d.client().Events(ctx, func(e api.Event) error { events <- e; return nil }) }()
	time.Sleep(200 * time.Millisecond)

	d.must("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "/bin/busybox", "sh", "-c", "echo run; exit 1")
	a := d.waitFor("flaky", 2*time.Minute, "given up", func(a api.Arrow) bool { return a.State == api.Exited && a.Restarts == 2 })
	if a.ExitCode != 1 {
		t.Errorf("exit %d", a.ExitCode)
	}
	time.Sleep(time.Second) // no third restart comes
	if a := d.inspect("flaky"); a.State != api.Exited || a.Restarts != 2 {
		t.Errorf("restarted beyond on-failure:2: %+v", a)
	}
	if n := strings.Count(d.must("logs", "flaky"), "run\n"); n != 3 {
		t.Errorf("%d runs in the log, want 3", n)
	}
	count := map[string]int{}
	for len(events) > 0 {
		e := <-events
		count[e.Type]++
		if e.Type == "die" && (e.ExitCode == nil || *e.ExitCode != 1) {
			t.Errorf("die event without exit code 1: %+v", e)
		}
	}
	if count["die"] != 3 || count["restart"] != 2 || count["create"] != 1 {
		t.Errorf("events: %v", count)
	}

	// A successful exit is not restarted by on-failure; always restarts it.
	d.must("run", "-d", "--name", "ok", "--restart", "on-failure", "/bin/busybox", "true")
	d.waitFor("ok", time.Minute, "exited", func(a api.Arrow) bool { return a.State == api.Exited })
	d.must("run", "-d", "--name", "again", "--restart", "always", "/bin/busybox", "true")
	d.waitFor("again", 2*time.Minute, "restarted", func(a api.Arrow) bool { return a.Restarts >= 2 })
	d.must("stop", "again")
	a = d.inspect("again")
	n := a.Restarts
	time.Sleep(time.Second)
	if a := d.inspect("again"); a.State != api.Exited || a.Restarts != n {
		t.Errorf("a stopped arrow came back: %+v", a)
	}
	if a := d.inspect("ok"); a.Restarts != 0 {
		t.Errorf("on-failure restarted a success: %d", a.Restarts)
	}
}

func TestDaemonSurvivesKill(t *testing.T) {
	d := startDaemon(t)
	names := []string{"a1", "a2", "a3"}
	for _, n := range names {
		d.must(append([]string{"run", "-d", "--name", n}, ticker...)...)
	}
	pids := map[string]int{}
	for _, n := range names {
		pids[n] = d.inspect(n).Pid
	}
	d.waitFor("a1", time.Minute, "ticking", func(api.Arrow) bool { return len(d.ticks("a1")) >= 1 })
	d.kill()
	time.Sleep(2 * time.Second) // the arrows go on without a daemon
	for n, pid := range pids {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s's VM (pid %d) died with arrowd", n, pid)
		}
	}
	d.start()
	for _, n := range names {
		a := d.inspect(n)
		if a.State != api.Running || a.Pid != pids[n] {
			t.Errorf("after arrowd restart, %s: state %s pid %d (was %d)", n, a.State, a.Pid, pids[n])
		}
	}
	// The log is continuous: the numbers go on without a gap or repeat.
	before := d.ticks("a2")
	d.waitFor("a2", time.Minute, "ticking on", func(api.Arrow) bool { return len(d.ticks("a2")) > len(before)+2 })
	got := d.ticks("a2")
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("a2's log is not continuous across the daemon restart: %v", got)
		}
	}
	// Still controllable.
	d.must("stop", "-t", "5", "a1")
	if a := d.inspect("a1"); a.State != api.Exited || a.ExitCode != 7 {
		t.Errorf("a1 after stop: %s %d", a.State, a.ExitCode)
	}
	d.must("kill", "a2")
	if r := d.arrow("wait", "a2"); strings.TrimSpace(r.stdout) != "137" {
		t.Errorf("a2 wait after kill: %q", r.stdout)
	}

	// An arrow that ends while no daemon runs is reported with its status.
	d.kill()
	if err := syscall.Kill(pids["a3"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	d.start()
	a := d.waitFor("a3", 30*time.Second, "exited", func(a api.Arrow) bool { return a.State == api.Exited })
	if a.ExitCode == 0 || a.Error == "" {
		t.Errorf("a3, whose VM was killed while arrowd was down: exit %d error %q", a.ExitCode, a.Error)
	}
}

func TestDaemonConcurrentStarts(t *testing.T) {
	d := startDaemon(t)
	c := d.client()
	const n = 10
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := c.Create(context.Background(), &api.CreateRequest{
				Name:   fmt.Sprintf("c%d", i),
				Config: api.Config{Program: "/bin/busybox", Args: []string{"sleep", "600"}, Dir: "/", MemoryMiB: 128, BootTimeout: 120},
			})
			if err == nil && a.State != api.Running {
				err = fmt.Errorf("%s: %s (%s)", a.Name, a.State, a.Error)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	list, err := c.List(context.Background(), false)
	if err != nil || len(list) != n {
		t.Fatalf("ps: %d running, %v", len(list), err)
	}
	stats, err := c.Stats(context.Background())
	if err != nil || len(stats) != n {
		t.Fatalf("stats: %d, %v", len(stats), err)
	}
	for _, s := range stats {
		if s.MemoryBytes <= 0 {
			t.Errorf("stats of %s: no memory: %+v", s.Name, s)
		}
	}
}

func TestDaemonBadRequests(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "-d", "--name", "one", "/bin/busybox", "true")
	d.must("wait", "one")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
	}}}
	big := `{"name":"x","config":{"program":"/bin/true","args":["` + strings.Repeat("a", api.MaxRequestBytes) + `"]}}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"unknown arrow", "GET", "/v1/arrows/nosuch", "", 404, "no such arrow"},
		{"stop unknown", "POST", "/v1/arrows/nosuch/stop", "", 404, "no such arrow"},
		{"duplicate name", "POST", "/v1/arrows", `{"name":"one","config":{"program":"/bin/true"}}`, 409, "in use"},
		{"malformed JSON", "POST", "/v1/arrows", `{"name":`, 400, "malformed"},
		{"unknown field", "POST", "/v1/arrows", `{"nmae":"x","config":{"program":"/bin/true"}}`, 400, "unknown field"},
		{"oversized body", "POST", "/v1/arrows", big, 413, "exceeds"},
		{"bad name", "POST", "/v1/arrows", `{"name":"../x","config":{"program":"/bin/true"}}`, 400, "name"},
		{"bad restart", "POST", "/v1/arrows", `{"config":{"program":"/bin/true"},"restart":{"name":"sometimes"}}`, 400, "restart"},
		{"nothing to run", "POST", "/v1/arrows", `{"config":{}}`, 400, "nothing to run"},
		{"bad signal", "POST", "/v1/arrows/one/kill?signal=SIGNOPE", "", 400, "signal"},
		{"kill an exited arrow", "POST", "/v1/arrows/one/kill", "", 409, "not running"},
		{"bad timeout", "POST", "/v1/arrows/one/stop?t=soon", "", 400, "seconds"},
		{"no such endpoint", "GET", "/v2/things", "", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://arrowd"+tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("status %d %q, want %d containing %q", resp.StatusCode, e.Message, tc.status, tc.want)
			}
		})
	}
	// None of that changed anything.
	list, err := d.client().List(context.Background(), true)
	if err != nil || len(list) != 1 || list[0].Name != "one" {
		t.Fatalf("arrows after bad requests: %v %v", list, err)
	}
}

func TestDaemonOOM(t *testing.T) {
	// With (almost) no allowance for QEMU's own memory, a guest that fills
	// its RAM takes the VM past its cgroup limit: the host kills it, and
	// arrowd reports it rather than restarting it.
	d := startDaemon(t, "--vm-overhead", "8")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan api.Event, 64)
	go func() { _ = d.client().Events(ctx, func(e api.Event) error { events <- e; return nil }) }()
	time.Sleep(200 * time.Millisecond)
	// Cold: a clone of a template shares its booted pages with the
	// template, and stays under the limit where a cold VM does not.
	d.arrow("run", "-d", "--cold", "--name", "hog", "--memory", "96M", "--restart", "always",
		"/bin/busybox", "sh", "-c", "echo filling; dd if=/dev/zero of=/tmp/fill bs=1M count=90; echo survived")
	a := d.waitFor("hog", 2*time.Minute, "killed", func(a api.Arrow) bool { return a.State == api.Exited })
	if a.Template != "" {
		t.Errorf("a --cold arrow says it was cloned from %s", a.Template)
	}
	if !a.OOMKilled || a.ExitCode != 137 || a.Restarts != 0 {
		t.Fatalf("hog: oom %v exit %d restarts %d error %q", a.OOMKilled, a.ExitCode, a.Restarts, a.Error)
	}
	if !strings.Contains(d.must("ps", "-a"), "(OOM)") {
		t.Errorf("ps -a does not say OOM")
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Type == "oom" && e.Name == "hog" {
				return
			}
		case <-deadline:
			t.Fatal("no oom event")
		}
	}
}

func TestDaemonAttach(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "-d", "-i", "--name", "echoer", "/bin/busybox", "sh", "-c", `echo ready; while read l; do echo "got $l"; echo "err $l" >&2; done; echo eof`)
	d.waitFor("echoer", time.Minute, "ready", func(api.Arrow) bool { return strings.Contains(d.must("logs", "echoer"), "ready") })

	att := exec.Command(arrowBin, "attach", "echoer")
	att.Env = append(os.Environ(), d.env...)
	stdin, err := att.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb syncbuf.Buffer
	att.Stdout, att.Stderr = &out, &errb
	if err := att.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := stdin.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "got hello") || !strings.Contains(errb.String(), "err hello") {
		if time.Now().After(deadline) {
			t.Fatalf("attach: stdout %q stderr %q", out.String(), errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Detaching (^C) leaves the arrow running.
	_ = att.Process.Signal(os.Interrupt)
	_ = att.Wait()
	if a := d.inspect("echoer"); a.State != api.Running {
		t.Fatalf("after detach: %s", a.State)
	}
	// A second attach sees the end, and exits with the arrow's status.
	att2 := exec.Command(arrowBin, "attach", "echoer")
	att2.Env = append(os.Environ(), d.env...)
	var out2 syncbuf.Buffer
	att2.Stdout = &out2
	if err := att2.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d.must("kill", "-s", "TERM", "echoer")
	if err := att2.Wait(); err == nil || att2.ProcessState.ExitCode() != 143 {
		t.Fatalf("attach after the arrow ended: %v (exit %d), want 143", err, att2.ProcessState.ExitCode())
	}
}

func TestDaemonSpecFile(t *testing.T) {
	d := startDaemon(t)
	spec := filepath.Join(t.TempDir(), "arrow.yaml")
	if err := os.WriteFile(spec, []byte(`version: 1
name: specced
program: /bin/busybox
args: [sh, -c, "echo from spec; exit 2"]
restart: on-failure:1
labels: {team: infra}
memory: 128M
`), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must("run", "-d", "-f", spec)
	a := d.waitFor("specced", time.Minute, "given up", func(a api.Arrow) bool { return a.State == api.Exited && a.Restarts == 1 })
	if a.ExitCode != 2 || a.Labels["team"] != "infra" || a.Config.MemoryMiB != 128 || a.Restart.String() != "on-failure:1" {
		t.Fatalf("arrow from a spec: %+v", a)
	}
	// Without -d, the spec's restart policy and labels mean nothing and
	// are no error; --restart given by hand is.
	if r := d.arrow("run", "--restart", "always", "/bin/true"); r.code != 125 || !strings.Contains(r.stderr, "-d") {
		t.Fatalf("--restart without -d: exit %d %s", r.code, r.stderr)
	}
}

func TestDaemonReadyPort(t *testing.T) {
	d := startDaemon(t)
	port := freePort(t)
	// The server sleeps before it listens: run -d must wait for it.
	d.must("run", "-d", "--name", "srv", "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "--ready-port", "8000",
		"/usr/bin/python3", "-c", "import time, http.server, socketserver\ntime.sleep(2)\nsocketserver.TCPServer(('', 8000), http.server.SimpleHTTPRequestHandler).serve_forever()")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("right after run -d --ready-port: %v", err)
	}
	resp.Body.Close()
	if a := d.inspect("srv"); a.Health != "healthy" {
		t.Errorf("health %q", a.Health)
	}
	if ps := d.must("ps"); !strings.Contains(ps, "(healthy)") {
		t.Errorf("ps:\n%s", ps)
	}
	// A ready port that is not published in user mode is refused up front.
	if r := d.arrow("run", "-d", "--ready-port", "9000", "/bin/true"); r.code != 125 || !strings.Contains(r.stderr, "published") {
		t.Errorf("unpublished ready port: exit %d: %s", r.code, r.stderr)
	}
	// An application that ends before it is ready fails run -d with its
	// own exit status and its last words, not exit 0.
	r := d.arrow("run", "-d", "--name", "dies", "-p", fmt.Sprintf("127.0.0.1:%d:8001", freePort(t)), "--ready-port", "8001",
		"/bin/sh", "-c", "echo starting; echo no config here >&2; exit 3")
	if r.code != 3 || !strings.Contains(r.stderr, "before accepting connections on port 8001") || !strings.Contains(r.stderr, "no config here") {
		t.Errorf("app exiting before ready: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if a := d.inspect("dies"); a.State != api.Exited || a.ExitCode != 3 {
		t.Errorf("the arrow: state %s, exit %d", a.State, a.ExitCode)
	}
}
