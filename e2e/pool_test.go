package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

// waitPool waits until arrowd's pool holds n ready spares of the default
// machine.
func (d *testDaemon) waitPool(n int) {
	d.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		entries, err := d.client().Pool(context.Background())
		if err != nil {
			d.t.Fatal(err)
		}
		for _, e := range entries {
			if e.Network == "" && e.Ready >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the pool never held %d spares: %+v\n%s", n, entries, d.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runSpare starts an arrow with -d, checks it started in a spare from the
// pool, and returns its ID.
func (d *testDaemon) runSpare(args ...string) api.Arrow {
	d.t.Helper()
	d.waitPool(1)
	id := strings.TrimSpace(d.must(append([]string{"run", "-d"}, args...)...))
	a := d.waitFor(id, time.Minute, "started", func(a api.Arrow) bool { return a.State != api.Starting })
	if !a.Spare || a.Template == "" {
		d.t.Fatalf("%q did not start in a spare: spare %v, template %q, phases %+v", args, a.Spare, a.Template, a.StartPhases)
	}
	return a
}

// TestDaemonSpares: arrowd keeps warmed spare VMs ready, and arrows that
// start in them behave as any other: exit codes, output, unique identity
// and entropy, published ports, stop signals.
func TestDaemonSpares(t *testing.T) {
	d := startDaemon(t)
	out := d.must("template", "warm", "--count", "2")
	if !strings.Contains(out, "READY") {
		t.Fatalf("template warm --count: %s", out)
	}
	d.waitPool(2)

	script := "cat /sys/class/net/eth0/address; hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/uuid; cat /etc/machine-id; exit 3"
	var outs [2][]string
	for i := range outs {
		a := d.runSpare("/bin/busybox", "sh", "-c", script)
		w, err := d.client().Wait(context.Background(), a.ID)
		if err != nil || w.ExitCode != 3 {
			t.Fatalf("wait: %+v, %v", w, err)
		}
		outs[i] = strings.Split(strings.TrimSpace(d.must("logs", a.ID)), "\n")
		if len(outs[i]) != 5 || len(outs[i][4]) != 32 {
			t.Fatalf("logs %q: want 5 lines, the last a machine ID", outs[i])
		}
		names := ""
		for _, p := range a.StartPhases {
			names += p.Name + " "
		}
		if !strings.Contains(names, "spare") || strings.Contains(names, "clone") {
			t.Errorf("start phases %q: want a spare's", names)
		}
	}
	for j, what := range []string{"MAC", "host name", "/dev/urandom bytes", "random UUID", "machine ID"} {
		if outs[0][j] == outs[1][j] {
			t.Errorf("both spares have the %s %q", what, outs[0][j])
		}
	}

	// A published port: added to the spare's network when it is taken.
	port := freePort(t)
	srv := d.runSpare("-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "--ready-port", "8000",
		"/usr/bin/python3", "-c", "import http.server, socketserver\nsocketserver.TCPServer(('', 8000), http.server.SimpleHTTPRequestHandler).serve_forever()")
	d.waitFor(srv.ID, time.Minute, "healthy", func(a api.Arrow) bool { return a.Health == "healthy" })
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("published port of an arrow in a spare: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Directory listing") {
		t.Errorf("GET: %s %q", resp.Status, body)
	}
	d.must("rm", "-f", srv.ID)

	// A stop signal reaches the application.
	tk := d.runSpare(ticker...)
	d.waitFor(tk.ID, time.Minute, "ticking", func(api.Arrow) bool { return len(d.ticks(tk.ID)) > 0 })
	d.must("stop", tk.ID)
	if a := d.inspect(tk.ID); a.ExitCode != 7 || !strings.Contains(d.must("logs", tk.ID), "got TERM") {
		t.Errorf("stopped: exit %d, logs %q", a.ExitCode, d.must("logs", tk.ID))
	}
	if pool := d.must("template", "pool"); !strings.Contains(pool, "256M") {
		t.Errorf("template pool:\n%s", pool)
	}
	metrics := d.metrics()
	for _, want := range []string{`arrow_starts_total{how="spare"}`, `arrow_spares{state="ready"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
}

// metrics fetches arrowd's Prometheus metrics.
func (d *testDaemon) metrics() string {
	d.t.Helper()
	m, err := d.client().Metrics(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return m
}

// TestDaemonSpareStale: a spare whose template went stale while it waited
// (here: arrow-init changed) is not used: the arrow starts in a clone of
// the new template.
func TestDaemonSpareStale(t *testing.T) {
	initCopy := copyInit(t)
	d := startDaemonEnv(t, []string{"ARROW_INIT=" + initCopy})
	d.must("template", "warm", "--count", "1")
	d.waitPool(1)
	old := d.must("template", "ls")
	// A different arrow-init makes every template built with the old
	// one stale.
	changeInit(t, initCopy)
	id := strings.TrimSpace(d.must("run", "-d", "/bin/busybox", "echo", "fresh"))
	w, err := d.client().Wait(context.Background(), id)
	if err != nil || w.ExitCode != 0 {
		t.Fatalf("wait: %+v, %v", w, err)
	}
	a := d.inspect(id)
	if a.Spare || a.Template == "" || strings.Contains(old, a.Template) {
		t.Errorf("spare %v, template %q: want a clone of a new template, not the stale spare (templates before:\n%s)", a.Spare, a.Template, old)
	}
	if logs := d.must("logs", id); logs != "fresh\n" {
		t.Errorf("logs %q", logs)
	}
}

// copyInit copies the suite's arrow-init to a file of the test's own, for
// ARROW_INIT, so that the test can change it (changeInit).
func copyInit(t *testing.T) string {
	t.Helper()
	initCopy := filepath.Join(t.TempDir(), "arrow-init")
	b, err := os.ReadFile(filepath.Join(filepath.Dir(arrowBin), "arrow-init"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initCopy, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return initCopy
}

// changeInit makes the arrow-init at path another one: trailing bytes
// change its hash, not what it does.
func changeInit(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("changed")); err != nil {
		t.Fatal(err)
	}
}
