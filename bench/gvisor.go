//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/api/client"
)

// runscPath is gVisor's runsc, as Debian's package runsc installs it.
const runscPath = "/usr/bin/runsc"

// benchGVisor measures the peer Arrow has to beat to start a program
// (`go run ./bench -gvisor`): gVisor's `runsc do` (the ptrace platform,
// no network: the host's file system under an overlay, in a sandbox of
// its own) against the ways of the arrow command that start the same
// host program, all as whole commands timed from their start to their
// exit, interleaved after a warm-up round:
//
//   - `arrow run PROGRAM` with an arrowd answering (the benchmark's own,
//     on a data root of its own): a spare of arrowd's pool, taken through
//     arrowd; a spare is ready before each run (waited for, not timed),
//     and arrowd's count of starts in spares must match the runs;
//   - `arrow run --no-daemon PROGRAM`: in-process, a clone of the
//     template (the default without arrowd);
//   - `arrow run --cold PROGRAM`: a boot;
//
// for echo and for python3. The ratios are Arrow's time over gVisor's:
// at most 1 is the goal.
func benchGVisor(ctx context.Context, arrowBin string, runs int) (err error) {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one", runs)
	}
	if _, err := os.Stat(runscPath); err != nil {
		return fmt.Errorf("%s: %w (apt-get install runsc; setup.sh does)", runscPath, err)
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	b, _, done, err := newDaemonBench(su.arrow, su.accel.Name, "arrow-bench-gvisor-")
	if err != nil {
		return err
	}
	defer done()
	defer func() {
		if cerr := b.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := b.startDaemon(ctx); err != nil {
		return err
	}
	// The template of the default machine, and a spare of it.
	if _, _, err := b.cli(ctx, "template", "warm", "--count", "1"); err != nil {
		return err
	}
	apps := []struct {
		name string
		argv []string
		want string
	}{
		{"echo hello", []string{"/bin/echo", "hello"}, "hello\n"},
		{"python3 -c 'print(1)'", []string{"/usr/bin/python3", "-c", "print(1)"}, "1\n"},
	}
	inProcess := append(os.Environ(), "ARROW_NO_DAEMON=1")
	ways := []struct {
		name   string
		prefix []string
		env    []string
		before func(context.Context) error // untimed, before each run
	}{
		{"gVisor: `runsc --platform=ptrace --network=none do`", []string{runscPath, "--platform=ptrace", "--network=none", "do"}, nil, nil},
		{"`arrow run` through arrowd (a spare)", []string{su.arrow, "run"}, append(slices.Clone(b.env), "ARROW_NO_DAEMON=0"), b.awaitSpare},
		{"`arrow run --no-daemon` (a clone)", []string{su.arrow, "run", "--no-daemon"}, inProcess, nil},
		{"`arrow run --cold` (a boot)", []string{su.arrow, "run", "--cold"}, inProcess, nil},
	}
	spares0, err := b.spareStarts(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("median of %d interleaved runs after a warm-up, each a whole command from its start to its exit; accelerator %s\n\n", runs, su.accel.Name)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| program\t| way\t| wall time (median)\t| min – max\t| ÷ gVisor\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|")
	for _, app := range apps {
		samples := make([][]time.Duration, len(ways))
		for round := 0; round <= runs; round++ {
			for i, way := range ways {
				if way.before != nil {
					if err := way.before(ctx); err != nil {
						return fmt.Errorf("%s, %s: %w", app.name, way.name, err)
					}
				}
				argv := append(append([]string(nil), way.prefix...), app.argv...)
				d, err := timeCommand(ctx, argv, way.env, app.want)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", app.name, way.name, err)
				}
				if round > 0 {
					samples[i] = append(samples[i], d)
				}
			}
		}
		gv := medianDuration(samples[0])
		for i, way := range ways {
			med := medianDuration(samples[i])
			lo, hi := minMax(samples[i])
			fmt.Fprintf(w, "| %s\t| %s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", app.name, way.name, med.Seconds(),
				lo.Seconds(), hi.Seconds(), float64(med)/float64(gv))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	spares, err := b.spareStarts(ctx)
	if err != nil {
		return err
	}
	if want := len(apps) * (runs + 1); spares-spares0 != want {
		return fmt.Errorf("arrowd started %d of the %d runs through it in spares", spares-spares0, want)
	}
	return nil
}

// spareStarts reads arrowd's count of arrows started in spares.
func (b *daemonBench) spareStarts(ctx context.Context) (int, error) {
	m, err := client.New(b.socket).Metrics(ctx)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(m, "\n") {
		if rest, ok := strings.CutPrefix(line, `arrow_starts_total{how="spare"} `); ok {
			var n int
			if _, err := fmt.Sscan(rest, &n); err != nil {
				return 0, fmt.Errorf("metrics line %q: %w", line, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

// timeCommand runs argv to its end and returns how long it took; its
// output must be want exactly and its status 0, so that a broken way
// cannot pass for a fast one.
func timeCommand(ctx context.Context, argv, env []string, want string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env // nil: this process's
	var errb strings.Builder
	cmd.Stderr = &errb
	t0 := time.Now()
	out, err := cmd.Output()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tail([]byte(errb.String()), 2000))
	}
	if string(out) != want {
		return 0, fmt.Errorf("%s: output %q, want %q", strings.Join(argv, " "), out, want)
	}
	return d, nil
}
