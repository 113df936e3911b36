//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/api/client"
)

// echoHandler is the functions benchmark's handler: Python's http.server
// answering each POST with its body. It says "ready" once it listens,
// for the cold `arrow run` it is compared with.
const echoHandler = `
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("", 8080), H)
print("ready", flush=True)
s.serve_forever()
`

// benchFunctions measures function invocations (`go run ./bench
// -functions`) under wrk at concurrency 1, 8 and 32: from zero (every
// invocation in a fresh clone of the function's snapshot) and warm
// (kept-warm instances), with latency p50 and p99 and throughput, against
// a cold `arrow run` of the same handler to its first answer; and the
// memory (PSS) of a kept-warm instance.
func benchFunctions(ctx context.Context, arrowBin string, duration time.Duration, runs int) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if os.Geteuid() != 0 {
		return errors.New("-functions runs arrowd, as root")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (setup.sh installs it)")
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	b, work, done, err := newDaemonBench(su.arrow, su.accel.Name, "arrow-bench-functions-")
	if err != nil {
		return err
	}
	defer done()
	defer func() { err = errors.Join(err, b.cleanup()) }()
	fport, err := freeTCPPort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", fport)
	b.daemonArgs = []string{"--pool-size", "0", "--functions-addr", addr}
	if err := b.startDaemon(ctx); err != nil {
		return err
	}
	// Before the cleanup removes what arrowd has: the functions remove
	// their instances themselves.
	defer func() {
		if _, _, rerr := b.cli(context.Background(), "function", "rm", "echo-fresh", "echo-warm"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	handler := filepath.Join(work, "echo.py")
	if err := os.WriteFile(handler, []byte(echoHandler), 0o644); err != nil {
		return err
	}
	argv := []string{"--include", handler, "/usr/bin/python3", handler}

	// The baseline: a cold `arrow run` of the handler, to its first answer.
	var cold []time.Duration
	for i := 0; i <= runs; i++ {
		port, err := freeTCPPort()
		if err != nil {
			return err
		}
		p, err := b.startForegroundLine(append([]string{b.arrow, "run", "--cold", "--no-daemon", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port)}, argv...),
			func(line string) bool { return line == "ready" })
		if err != nil {
			return err
		}
		_, err = p.waitReady(ctx)
		var d time.Duration
		if err == nil {
			d, err = firstPOST(ctx, port, p.start)
		}
		if serr := b.stopForeground(p); err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("cold arrow run: %w\nstderr: %s", err, tail(p.errb.Bytes(), 2000))
		}
		if i > 0 {
			cold = append(cold, d)
		}
	}
	coldMed := medianDuration(cold)

	t0 := time.Now()
	if _, _, err := b.cli(ctx, append([]string{"function", "create", "--max-instances", "32", "echo-fresh"}, append([]string{"--http-port", "8080"}, argv...)...)...); err != nil {
		return err
	}
	created := time.Since(t0)
	if _, _, err := b.cli(ctx, append([]string{"function", "create", "--keep-warm", "--max-instances", "8", "--concurrency", "4", "--idle-timeout", "10m",
		"echo-warm", "--http-port", "8080"}, argv...)...); err != nil {
		return err
	}
	fmt.Printf("function create (a cold start, ready, snapshot): %.2f s\n", created.Seconds())
	fmt.Printf("baseline: a cold `arrow run` of the handler to its first answer, median of %d: %.3f s (accelerator %s)\n\n", runs, coldMed.Seconds(), su.accel.Name)

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "| invocations\t| wrk connections\t| p50\t| p99\t| requests/s\t| non-2xx\t| p50 ÷ cold `arrow run`\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, way := range []struct{ name, fn string }{{"from zero (a fresh clone each)", "echo-fresh"}, {"warm (kept-warm instances)", "echo-warm"}} {
		url := "http://" + addr + "/function/" + way.fn
		if way.fn == "echo-warm" {
			// Up to 8 instances serve 32 connections: start them
			// before timing, as a warm function has them.
			if err := invokeAtOnce(ctx, url, 32); err != nil {
				return err
			}
		}
		for _, conns := range []int{1, 8, 32} {
			if way.fn == "echo-fresh" {
				// The invocations wrk left in flight end first: each
				// run starts from zero.
				if err := awaitNoInstances(ctx, b.socket, way.fn); err != nil {
					return err
				}
			}
			d := duration
			if way.fn == "echo-fresh" && conns == 32 {
				// 32 VMs starting at once on this machine's cores take
				// longer than a short run lasts.
				d = max(duration, 30*time.Second)
			}
			r, err := wrkPost(ctx, url, d, conns, work)
			if errors.Is(err, errNoAnswers) {
				fmt.Fprintf(tw, "| %s\t| %d\t| none in %v\t| \t| 0\t| \t| \t|\n", way.name, conns, d)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s, %d connections: %w", way.name, conns, err)
			}
			fmt.Fprintf(tw, "| %s\t| %d\t| %s\t| %s\t| %.1f\t| %d\t| %.3f×\t|\n", way.name, conns, fmtDur(r.p50), fmtDur(r.p99), r.rps, r.non2xx,
				float64(r.p50)/float64(coldMed))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Memory of a kept-warm instance: the PSS of the instances' QEMUs
	// (the pool is off: every QEMU here is an instance).
	f, err := client.New(b.socket).Function(ctx, "echo-warm")
	if err != nil {
		return err
	}
	var total int64
	n := 0
	for _, pid := range b.marked() {
		if isQEMU(pid) {
			total += pss(pid)
			n++
		}
	}
	if n > 0 {
		fmt.Printf("\nkept-warm instances: %d (function inspect says %d); PSS of their QEMUs: %.1f MiB each\n", n, f.Instances, float64(total)/float64(n)/(1<<20))
	}
	return nil
}

// awaitNoInstances waits until the function fn has no instance.
func awaitNoInstances(ctx context.Context, socket, fn string) error {
	c := client.New(socket)
	deadline := time.Now().Add(readyTimeout)
	for {
		f, err := c.Function(ctx, fn)
		if err != nil {
			return err
		}
		if f.Instances == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("function %s still has %d instances", fn, f.Instances)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// invokeAtOnce sends n invocations at once and waits for their answers.
func invokeAtOnce(ctx context.Context, url string, n int) error {
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("warm"))
			if err != nil {
				errs <- err
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("warming up: %s", resp.Status)
				}
			}
			errs <- err
		}()
	}
	var all []error
	for i := 0; i < n; i++ {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// firstPOST posts to port until an answer comes, and returns the time
// since t0.
func firstPOST(ctx context.Context, port int, t0 time.Time) (time.Duration, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			return time.Since(t0), nil
		}
		if time.Since(t0) > readyTimeout {
			return 0, err
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// wrkResult is what wrk measured.
type wrkResult struct {
	p50, p99 time.Duration
	rps      float64
	non2xx   int
}

var (
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+([0-9]+)`)
)

// errNoAnswers: wrk's run ended before any request was answered.
var errNoAnswers = errors.New("wrk: no request answered")

// wrkPost runs wrk with POST requests of a short body for d.
func wrkPost(ctx context.Context, url string, d time.Duration, conns int, work string) (wrkResult, error) {
	script := filepath.Join(work, "post.lua")
	if err := os.WriteFile(script, []byte("wrk.method = \"POST\"\nwrk.body = \"hello\"\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n"), 0o644); err != nil {
		return wrkResult{}, err
	}
	secs := max(1, int(d.Seconds()))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(min(2, conns)), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "30s", "--latency", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	var r wrkResult
	for _, m := range wrkLatency.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[3])]
		if string(m[1]) == "50" {
			r.p50 = time.Duration(v * float64(unit))
		} else {
			r.p99 = time.Duration(v * float64(unit))
		}
	}
	m := wrkRPS.FindSubmatch(out)
	if m != nil && string(m[1]) == "0.00" {
		return wrkResult{}, errNoAnswers
	}
	if m == nil || r.p50 == 0 {
		return wrkResult{}, fmt.Errorf("wrk: no figures in\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(string(m[1]))
	}
	return r, nil
}

// fmtDur says d in ms, or s above a second.
func fmtDur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
