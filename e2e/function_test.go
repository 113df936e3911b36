package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// upperHandler is a handler of standard input: it reads the request,
// answers it in upper case with its machine ID, and says on standard
// error what it handled; "fail" makes it exit 3.
const upperHandler = `
import sys
body = sys.stdin.read()
print("handled", len(body), "bytes", file=sys.stderr)
if body == "fail":
    print("refusing to handle fail", file=sys.stderr)
    sys.exit(3)
sys.stdout.write(body.upper() + " " + open("/etc/machine-id").read().strip())
`

// webHandler serves HTTP on 8080: it echoes the body with its machine
// ID; "sleep N" sleeps N seconds first.
const webHandler = `
import http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if body.startswith("sleep "):
            time.sleep(float(body.split()[1]))
        out = ("echo " + body + " " + open("/etc/machine-id").read().strip()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
`

// post invokes a function through --functions-addr.
func post(t *testing.T, addr, name, body string) (int, http.Header, string) {
	t.Helper()
	// arrowd answers within the function's timeout; this bounds a test
	// that would otherwise wait without end.
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Post("http://"+addr+"/function/"+name, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /function/%s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestFunctions creates a handler of standard input and an HTTP handler
// and invokes them through the CLI and --functions-addr: answers of
// their own for concurrent invocations, the limits' HTTP errors, scale to
// zero, metrics, logs, and nothing left once removed.
func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	upper, web := filepath.Join(dir, "upper.py"), filepath.Join(dir, "web.py")
	for f, src := range map[string]string{upper: upperHandler, web: webHandler} {
		if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	before := qemuProcesses(t)
	// No pool: every QEMU of this daemon is then a function's (spares
	// would outlive function rm, rightly, until the daemon ends).
	d := startDaemon(t, "--functions-addr", addr, "--pool-size", "0")

	d.must("function", "create", "upper", "--include", upper, "/usr/bin/python3", upper)
	// The CLI: the body on standard input, the answer on standard output.
	invoke := func(name, body string) result {
		cmd := exec.Command(arrowBin, "function", "invoke", name)
		cmd.Env = append(os.Environ(), d.env...)
		cmd.Stdin = strings.NewReader(body)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	}
	if r := invoke("upper", "hello"); r.code != 0 || !strings.HasPrefix(r.stdout, "HELLO ") {
		t.Errorf("invoke upper: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := invoke("upper", "fail"); r.code != 3 || !strings.Contains(r.stderr, "exited with status 3") || !strings.Contains(r.stderr, "refusing to handle fail") {
		t.Errorf("invoke upper with a failing body: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := invoke("nosuch", "x"); r.code != 125 || !strings.Contains(r.stderr, "no such function") {
		t.Errorf("invoke of no function: exit %d, stderr %q", r.code, r.stderr)
	}

	// 8 invocations at once, each in a fresh clone of its own: each
	// gets its own answer, from a machine of its own.
	var wg sync.WaitGroup
	answers := make([]string, 8)
	codes := make([]int, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, answers[i] = post(t, addr, "upper", fmt.Sprintf("request %d", i))
		}()
	}
	wg.Wait()
	machines := map[string]int{}
	for i, a := range answers {
		want := fmt.Sprintf("REQUEST %d ", i)
		if codes[i] != 200 || !strings.HasPrefix(a, want) {
			t.Errorf("invocation %d: %d %q, want 200 and %q...", i, codes[i], a, want)
			continue
		}
		id := strings.TrimPrefix(a, want)
		if j, dup := machines[id]; dup {
			t.Errorf("invocations %d and %d ran on one machine %s", j, i, id)
		}
		machines[id] = i
	}
	if r := d.arrow("function", "logs", "upper"); r.code != 0 || !strings.Contains(r.stderr, "handled 9 bytes") || !strings.Contains(r.stdout, "REQUEST 7 ") {
		t.Errorf("function logs upper: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// Kept warm, a handler of standard input serves one invocation and
	// has its successor made ready meanwhile: the next one is warm, on
	// another machine.
	d.must("function", "create", "--keep-warm", "upper-warm", "--include", upper, "/usr/bin/python3", upper)
	var warmIDs []string
	for i, want := range []string{"cold", "warm"} {
		var code int
		var h http.Header
		var body string
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, h, body = post(t, addr, "upper-warm", "w")
			// The successor may still be starting for the second.
			if i == 0 || h.Get("X-Arrow-Function-Start") == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 200 || h.Get("X-Arrow-Function-Start") != want {
			t.Errorf("upper-warm invocation %d: %d %q, start %q, want %s", i, code, body, h.Get("X-Arrow-Function-Start"), want)
		}
		warmIDs = append(warmIDs, strings.TrimPrefix(body, "W "))
	}
	if len(warmIDs) == 2 && warmIDs[0] == warmIDs[1] {
		t.Errorf("two invocations of a handler of standard input ran on one machine %s", warmIDs[0])
	}

	// An HTTP handler, kept warm: one instance, serving in turn.
	d.must("function", "create", "web", "--http-port", "8080", "--keep-warm", "--max-instances", "1", "--timeout", "3s",
		"--max-body", "100", "--idle-timeout", "2s", "--include", web, "/usr/bin/python3", web)
	code, h, body := post(t, addr, "web", "one")
	if code != 200 || !strings.HasPrefix(body, "echo one ") || h.Get("X-Arrow-Function-Start") != "cold" {
		t.Errorf("first invocation of web: %d %q, start %q", code, body, h.Get("X-Arrow-Function-Start"))
	}
	code, h, body2 := post(t, addr, "web", "two")
	if code != 200 || h.Get("X-Arrow-Function-Start") != "warm" || strings.TrimPrefix(body2, "echo two ") != strings.TrimPrefix(body, "echo one ") {
		t.Errorf("second invocation of web: %d %q, start %q: want the same warm instance as %q", code, body2, h.Get("X-Arrow-Function-Start"), body)
	}
	// The limits: a body over --max-body, an invocation over the one
	// instance's concurrency, one over --timeout.
	if code, _, b := post(t, addr, "web", strings.Repeat("x", 101)); code != http.StatusRequestEntityTooLarge || !strings.Contains(b, "limit of 100 bytes") {
		t.Errorf("a body over the limit: %d %s", code, b)
	}
	busy := make(chan int, 1)
	go func() {
		// Refused while one of the loop's below has the instance: it
		// tries again, until it has it for 2 s.
		for {
			code, _, _ := post(t, addr, "web", "sleep 2")
			if code != http.StatusTooManyRequests {
				busy <- code
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, b := post(t, addr, "web", "three")
		if code == http.StatusTooManyRequests {
			if !strings.Contains(b, "most invocations at once") {
				t.Errorf("429 said %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 429 while the one instance was busy: last %d %s", code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := <-busy; code != 200 {
		t.Errorf("the invocation that kept the instance busy: %d", code)
	}
	if code, _, b := post(t, addr, "web", "sleep 10"); code != http.StatusGatewayTimeout || !strings.Contains(b, "timeout of 3s") {
		t.Errorf("an invocation over the timeout: %d %s", code, b)
	}
	// Scale to zero: no instance once idle for the idle timeout.
	deadline = time.Now().Add(30 * time.Second)
	for {
		f, err := d.client().Function(context.Background(), "web")
		if err != nil {
			t.Fatal(err)
		}
		if f.Instances == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web still has %d instances", f.Instances)
		}
		time.Sleep(200 * time.Millisecond)
	}
	list, err := d.client().List(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if a.Config.Labels["arrow.function"] == "web" {
			t.Errorf("an instance of web left once idle: %s (%s)", a.Name, a.State)
		}
	}
	// And it answers again, from zero.
	if code, h, _ := post(t, addr, "web", "again"); code != 200 || h.Get("X-Arrow-Function-Start") != "cold" {
		t.Errorf("invocation from zero: %d, start %q", code, h.Get("X-Arrow-Function-Start"))
	}
	m := d.metrics()
	for _, want := range []string{
		`arrow_function_invocations_total{code="200",function="upper",start="cold"}`,
		`arrow_function_invocations_total{code="429",function="web",start="none"}`,
		`arrow_function_invocations_total{code="413",function="web",start="none"} 1`,
		`arrow_function_invocations_total{code="504",function="web",start="warm"} 1`,
		`arrow_function_invocation_seconds_count{function="web",start="warm"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if ls := d.must("function", "ls"); !strings.Contains(ls, "upper") || !strings.Contains(ls, "http:8080") {
		t.Errorf("function ls:\n%s", ls)
	}

	// Removal leaves nothing running: no arrow, no QEMU, no snapshot.
	d.must("function", "rm", "web", "upper", "upper-warm")
	if ps := d.must("ps", "-a", "-q"); strings.TrimSpace(ps) != "" {
		t.Errorf("arrows left after function rm:\n%s", ps)
	}
	if ls := d.must("snapshot", "ls"); strings.Contains(ls, "function.") {
		t.Errorf("snapshots left after function rm:\n%s", ls)
	}
	assertNoNewQEMU(t, before)
	if r := d.arrow("function", "inspect", "web"); r.code == 0 {
		t.Errorf("inspect of a removed function succeeded: %s", r.stdout)
	}
}
