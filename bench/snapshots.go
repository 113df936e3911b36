//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// httpServer is the application of -snapshots: Python's http.server,
// whose start-up (CPython's initialization, its imports) is what an
// application snapshot saves its clones.
var httpServer = []string{"/usr/bin/python3", "-u", "-m", "http.server", "8000"}

// benchSnapshots measures the first response of python3's http.server
// (`go run ./bench -snapshots`): each way is timed from the command's
// start to the first HTTP answer on its published port, interleaved
// after a warm-up round, through a private arrowd:
//
//   - `arrow run --cold` in the foreground (a boot, then CPython's start),
//   - `arrow run` in the foreground (a clone of the template),
//   - `arrow run -d` taking a spare of arrowd's pool,
//   - `arrow run -d --from-snapshot` and `arrow run --from-snapshot`: a
//     clone of an application snapshot, CPython started already.
//
// The ratios are over the cold start; the goal for the snapshot is at
// most 0.1.
func benchSnapshots(ctx context.Context, arrowBin string, runs int) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one", runs)
	}
	if os.Geteuid() != 0 {
		return errors.New("-snapshots runs arrows through arrowd with published ports, as root")
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	b, _, done, err := newDaemonBench(su.arrow, su.accel.Name, "arrow-bench-snapshots-")
	if err != nil {
		return err
	}
	defer done()
	defer func() { err = errors.Join(err, b.cleanup()) }()
	b.daemonArgs = []string{"--pool-size", "1"}
	if err := b.startDaemon(ctx); err != nil {
		return err
	}
	// The snapshot: an arrow of the server, once it listens.
	port, err := freeTCPPort()
	if err != nil {
		return err
	}
	if _, _, err := b.cli(ctx, append([]string{"run", "-d", "--name", "snapshot-source", "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "--ready-port", "8000"}, httpServer...)...); err != nil {
		return err
	}
	out, took, err := b.cli(ctx, "snapshot", "create", "snapshot-source", "python-http")
	if err != nil {
		return err
	}
	fmt.Printf("snapshot: %s(`arrow snapshot create` took %.2f s)\n", out, took.Seconds())
	if err := b.remove(ctx, "snapshot-source"); err != nil {
		return err
	}

	type way struct {
		name     string
		detached bool
		spare    bool
		snapshot bool
		args     []string
	}
	ways := []way{
		{name: "`arrow run --cold` (a boot)", args: append([]string{"run", "--cold"}, httpServer...)},
		{name: "`arrow run` (a clone)", args: append([]string{"run"}, httpServer...)},
		{name: "`arrow run -d --ready-port`, a spare", detached: true, spare: true, args: append([]string{"--ready-port", "8000"}, httpServer...)},
		{name: "`arrow run -d --from-snapshot`", detached: true, snapshot: true, args: []string{"--from-snapshot", "python-http"}},
		{name: "`arrow run --from-snapshot`", snapshot: true, args: []string{"run", "--from-snapshot", "python-http"}},
	}
	first := func(w way, round, i int) (time.Duration, error) {
		port, err := freeTCPPort()
		if err != nil {
			return 0, err
		}
		publish := []string{"-p", fmt.Sprintf("127.0.0.1:%d:8000", port)}
		if !w.detached {
			argv := append(append([]string{b.arrow, w.args[0]}, publish...), w.args[1:]...)
			p, err := b.startForegroundLine(argv, func(line string) bool { return strings.HasPrefix(line, "Serving HTTP") })
			if err != nil {
				return 0, err
			}
			if !w.snapshot {
				// It listens once it says so: only then may the
				// request go (through QEMU's user-mode network, a
				// connection to a guest that does not listen yet
				// hangs rather than fails).
				_, err = p.waitReady(ctx)
			}
			var d time.Duration
			if err == nil {
				d, err = firstHTTP(ctx, port, p.start, p.done)
			}
			if serr := b.stopForeground(p); err == nil {
				err = serr
			}
			if err != nil {
				return 0, fmt.Errorf("%v\nstderr: %s", err, tail(p.errb.Bytes(), 2000))
			}
			return d, nil
		}
		if w.spare {
			if err := b.awaitSpare(ctx); err != nil {
				return 0, err
			}
		}
		name := "first-" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
		t0 := time.Now()
		if _, _, err := b.cli(ctx, append(append([]string{"run", "-d", "--name", name}, publish...), w.args...)...); err != nil {
			return 0, err
		}
		d, err := firstHTTP(ctx, port, t0, nil)
		if rerr := b.remove(ctx, name); err == nil {
			err = rerr
		}
		return d, err
	}
	samples := make([][]time.Duration, len(ways))
	for round := 0; round <= runs; round++ {
		for i, w := range ways {
			d, err := first(w, round, i)
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			if round > 0 {
				samples[i] = append(samples[i], d)
			}
		}
	}
	fmt.Printf("first HTTP response of `%s`, from the command's start; median of %d interleaved runs after a warm-up; accelerator %s\n\n", strings.Join(httpServer, " "), runs, su.accel.Name)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "| way\t| first response (median)\t| min – max\t| ÷ cold\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|")
	cold := medianDuration(samples[0])
	for i, w := range ways {
		med := medianDuration(samples[i])
		lo, hi := minMax(samples[i])
		fmt.Fprintf(tw, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", w.name, med.Seconds(), lo.Seconds(), hi.Seconds(), float64(med)/float64(cold))
	}
	return tw.Flush()
}

// firstHTTP polls port until an HTTP answer comes, and returns the time
// since t0; it fails when done (the process serving) closes first.
func firstHTTP(ctx context.Context, port int, t0 time.Time, done <-chan struct{}) (time.Duration, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := t0.Add(readyTimeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return time.Since(t0), nil
		}
		select {
		case <-done:
			return 0, errors.New("the command ended before it answered")
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no answer on port %d after %v: %v", port, readyTimeout, err)
		}
	}
}
