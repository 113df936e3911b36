package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// identityServer is a Python HTTP server that draws a token from
// randomness once, at start-up, and answers each GET with it and with
// what it reads at that moment: the machine ID, the host name and fresh
// random bytes. A clone of a snapshot that started the application again
// would show a new token; a clone that was not made unique would show
// its snapshot's machine ID and random bytes.
const identityServer = `
import http.server, json, os, socket, signal
token = os.urandom(8).hex()
reseeded = []
signal.signal(signal.SIGUSR2, lambda *_: reseeded.append(os.urandom(8).hex()))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"token": token, "machine_id": open("/etc/machine-id").read().strip(),
            "hostname": socket.gethostname(), "random": os.urandom(16).hex(), "reseeded": len(reseeded)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("", 8000), H).serve_forever()
`

// identity is identityServer's answer.
type identity struct {
	Token     string `json:"token"`
	MachineID string `json:"machine_id"`
	Hostname  string `json:"hostname"`
	Random    string `json:"random"`
	Reseeded  int    `json:"reseeded"`
}

// getIdentity asks the server published on port, retrying while it is
// not up, for up to timeout.
func getIdentity(t *testing.T, port int, timeout time.Duration) identity {
	t.Helper()
	deadline := time.Now().Add(timeout)
	// A connection that hangs is given up and tried again, within the
	// deadline, rather than waited for without end.
	c := &http.Client{Timeout: 3 * time.Second}
	for {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			var id identity
			if rerr == nil && json.Unmarshal(b, &id) == nil && id.Token != "" {
				return id
			}
			err = fmt.Errorf("answer %q: %v", b, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSnapshot takes an application snapshot of a running Python server
// and starts clones of it, detached and in the foreground: they answer
// with the application's state from before the snapshot (it did not
// start again), each with its own machine ID, host name and random
// bytes, and with the re-seed signal delivered. A snapshot whose
// arrow-init changed is refused, and bad requests fail clearly.
func TestSnapshot(t *testing.T) {
	initCopy := copyInit(t)
	d := startDaemonEnv(t, []string{"ARROW_INIT=" + initCopy})
	srcPort := freePort(t)
	d.must("run", "-d", "--name", "src", "-p", fmt.Sprintf("127.0.0.1:%d:8000", srcPort), "--ready-port", "8000",
		"/usr/bin/python3", "-c", identityServer)
	src := getIdentity(t, srcPort, 20*time.Second)

	out := d.must("snapshot", "create", "--signal", "SIGUSR2", "src", "web")
	if !strings.HasPrefix(out, "web ") {
		t.Errorf("snapshot create said %q", out)
	}
	if ls := d.must("snapshot", "ls"); !strings.Contains(ls, "web") || !strings.Contains(ls, "python3") {
		t.Errorf("snapshot ls:\n%s", ls)
	}
	// The arrow runs on after its snapshot, as it was.
	if after := getIdentity(t, srcPort, 20*time.Second); after.Token != src.Token || after.MachineID != src.MachineID {
		t.Errorf("the arrow after its snapshot: %+v, before: %+v", after, src)
	}

	clones := map[string]identity{"src": src}
	for _, name := range []string{"c1", "c2"} {
		port := freePort(t)
		d.must("run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "--from-snapshot", "web")
		clones[name] = getIdentity(t, port, 20*time.Second)
		if a := d.inspect(name); a.Template == "" || a.Config.Snapshot != "web" {
			t.Errorf("%s: inspect: template %q, snapshot %q", name, a.Template, a.Config.Snapshot)
		}
	}
	// A foreground clone serves too, and ends with the application on
	// SIGTERM (Python's default action: 128+15).
	port := freePort(t)
	fg := exec.Command(arrowBin, "run", "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "--from-snapshot", "web")
	fg.Env = append(os.Environ(), d.env...)
	var fgErr strings.Builder
	fg.Stderr = &fgErr
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	fgDone := make(chan error, 1)
	go func() { fgDone <- fg.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for clones["fg"].Token == "" {
		select {
		case <-fgDone:
			t.Fatalf("the foreground clone ended: exit %d; stderr:\n%s", fg.ProcessState.ExitCode(), fgErr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			resp.Body.Close()
			clones["fg"] = getIdentity(t, port, 5*time.Second)
		}
		if time.Now().After(deadline) {
			_ = fg.Process.Kill()
			t.Fatalf("the foreground clone did not answer; stderr:\n%s", fgErr.String())
		}
	}
	_ = fg.Process.Signal(syscall.SIGTERM)
	select {
	case <-fgDone:
		if code := fg.ProcessState.ExitCode(); code != 143 {
			t.Errorf("foreground clone after SIGTERM: exit %d, want 143; stderr:\n%s", code, fgErr.String())
		}
	case <-time.After(30 * time.Second):
		_ = fg.Process.Kill()
		t.Fatalf("the foreground clone did not end on SIGTERM; stderr:\n%s", fgErr.String())
	}

	seen := map[string]map[string]string{"machine ID": {}, "host name": {}, "random bytes": {}}
	for name, id := range clones {
		if id.Token != src.Token {
			t.Errorf("%s: token %s, the snapshot's application drew %s: it started again", name, id.Token, src.Token)
		}
		if name != "src" && id.Reseeded != 1 {
			t.Errorf("%s: the application got the re-seed signal %d times, want 1", name, id.Reseeded)
		}
		for what, v := range map[string]string{"machine ID": id.MachineID, "host name": id.Hostname, "random bytes": id.Random} {
			if other, dup := seen[what][v]; dup {
				t.Errorf("%s and %s have the same %s %s", name, other, what, v)
			}
			seen[what][v] = name
		}
	}
	// exec in a clone takes its defaults from the snapshot's application.
	if out := d.must("exec", "c1", "/usr/bin/python3", "-c", "import os; print(os.getcwd(), open('/etc/machine-id').read().strip())"); !strings.Contains(out, clones["c1"].MachineID) {
		t.Errorf("exec in c1: %q, want its machine ID %s", out, clones["c1"].MachineID)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no such snapshot", []string{"run", "--from-snapshot", "nosuch"}, 125, "no such snapshot"},
		{"another machine", []string{"run", "-m", "512M", "--from-snapshot", "web"}, 125, "--memory: snapshot web's machine has 256"},
		{"a program too", []string{"run", "--from-snapshot", "web", "/bin/true"}, 125, "unknown command"},
		{"name taken", []string{"snapshot", "create", "src", "web"}, 125, "exists"},
		{"bad name", []string{"snapshot", "create", "src", "../x"}, 125, "snapshot name"},
		{"not running", []string{"snapshot", "create", "nosuch", "x"}, 125, "no such arrow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.arrow(tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("arrow %q: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
	// A cold-booted arrow has no template to be a snapshot of.
	d.must("run", "-d", "--name", "cold", "--cold", "/bin/busybox", "sleep", "600")
	if r := d.arrow("snapshot", "create", "cold", "x"); r.code == 0 || !strings.Contains(r.stderr, "booted cold") {
		t.Errorf("snapshot of a cold arrow: exit %d, %s", r.code, r.stderr)
	}

	// Another arrow-init makes the snapshot unusable: refused, naming
	// why.
	changeInit(t, initCopy)
	if r := d.arrow("run", "-d", "--from-snapshot", "web"); r.code != 125 || !strings.Contains(r.stderr, "arrow-init changed since it was taken") {
		t.Errorf("a stale snapshot: exit %d, stderr %q", r.code, r.stderr)
	}

	// Removing the snapshot leaves its clones running.
	d.must("snapshot", "rm", "web")
	if ls := d.must("snapshot", "ls"); strings.Contains(ls, "web") {
		t.Errorf("snapshot ls after rm:\n%s", ls)
	}
	if a := d.inspect("c1"); a.State != "running" {
		t.Errorf("c1 after the snapshot's removal: %s", a.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.client().Snapshot(ctx, "web"); err == nil || !strings.Contains(err.Error(), "no such snapshot") {
		t.Errorf("inspect of a removed snapshot: %v", err)
	}
}
