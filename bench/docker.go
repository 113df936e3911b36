//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/e2e/fixture"
)

// dockerBenchImage is the image every contender of benchDocker runs: the
// busybox image the Docker API's e2e tests load.
const dockerBenchImage = "arrow-bench/busybox:1"

// dockerCLIPath is the docker CLI (28.x) the machine ships.
const dockerCLIPath = "/usr/local/bin/docker"

// benchDocker measures what the Docker Engine API costs (`go run ./bench
// -docker`): `docker run --rm IMAGE true` through arrowd's docker.sock
// against the same run without the API layer, measured alongside:
//
//   - `arrow run -d IMAGE true`, `arrow wait`, `arrow rm` through the same
//     arrowd: the same path (a detached arrow, a spare from the pool, the
//     arrow removed at its end, as --rm does) through Arrow's own API;
//   - `arrow run IMAGE true` in the foreground: no daemon at all (a clone
//     of the template).
//
// Runs are interleaved after a warm-up round, and each contender's median
// wall time is compared. The goal: the API layer adds at most 5%
// to the first comparison.
func benchDocker(ctx context.Context, arrowBin string, runs int) (err error) {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one", runs)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	b, work, done, err := newDaemonBench(su.arrow, su.accel.Name, "arrow-bench-docker-")
	if err != nil {
		return err
	}
	defer done()
	defer func() {
		if cerr := b.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			if log, rerr := os.ReadFile(b.log); rerr == nil && len(log) > 0 {
				err = fmt.Errorf("%w\narrowd log:\n%s", err, tail(log, 4000))
			}
		}
	}()
	if err := b.startDaemon(ctx); err != nil {
		return err
	}
	dockerEnv := append(append([]string(nil), b.env...),
		"DOCKER_HOST=unix://"+filepath.Join(filepath.Dir(b.socket), "docker.sock"),
		"DOCKER_CONFIG="+filepath.Join(work, "docker-config"),
		"DOCKER_CLI_HINTS=false")
	docker := func(ctx context.Context, args ...string) (string, error) {
		return runEnv(ctx, dockerEnv, append([]string{dockerCLIPath}, args...)...)
	}
	arrow := func(ctx context.Context, args ...string) (string, error) {
		return runEnv(ctx, b.env, append([]string{b.arrow}, args...)...)
	}

	archive := filepath.Join(work, "busybox.tar")
	if err := fixture.BusyboxArchive(archive, dockerBenchImage); err != nil {
		return err
	}
	if out, err := docker(ctx, "load", "-i", archive); err != nil || !strings.Contains(out, dockerBenchImage) {
		return fmt.Errorf("docker load: %v %q", err, out)
	}
	// A broken path must not pass for a fast one: each way runs the
	// image's program, and its exit status comes back.
	for _, check := range []func() error{
		func() error {
			_, err := docker(ctx, "run", "--rm", dockerBenchImage, "sh", "-c", "exit 7")
			return wantExit(err, 7)
		},
		func() error {
			_, err := arrow(ctx, "run", dockerBenchImage, "sh", "-c", "exit 7")
			return wantExit(err, 7)
		},
	} {
		if err := check(); err != nil {
			return err
		}
	}

	contenders := []struct {
		name    string
		run     func(ctx context.Context) error
		samples []time.Duration
	}{
		{name: "`docker run --rm IMAGE true` (Docker API)", run: func(ctx context.Context) error {
			_, err := docker(ctx, "run", "--rm", dockerBenchImage, "true")
			return err
		}},
		{name: "`arrow run -d IMAGE true` + `arrow wait` + `arrow rm` (arrowd's API)", run: func(ctx context.Context) error {
			out, err := arrow(ctx, "run", "-d", dockerBenchImage, "true")
			if err != nil {
				return err
			}
			id := strings.TrimSpace(out)
			if out, err := arrow(ctx, "wait", id); err != nil || strings.TrimSpace(out) != "0" {
				return fmt.Errorf("arrow wait %s: %q, %v", id, out, err)
			}
			_, err = arrow(ctx, "rm", id)
			return err
		}},
		{name: "`arrow run IMAGE true` (foreground, no daemon)", run: func(ctx context.Context) error {
			_, err := arrow(ctx, "run", dockerBenchImage, "true")
			return err
		}},
	}
	for round := 0; round <= runs; round++ {
		for i := range contenders {
			// Every run starts with the pool refilled: a run right after
			// another would find no spare (its refill takes a boot) and
			// pay for it, whichever way came second, and a refill going
			// on would slow the foreground run too.
			if err := b.awaitSpare(ctx); err != nil {
				return err
			}
			t0 := time.Now()
			if err := contenders[i].run(ctx); err != nil {
				return fmt.Errorf("%s: %w", contenders[i].name, err)
			}
			if round > 0 { // round 0 warms caches, templates and the pool
				contenders[i].samples = append(contenders[i].samples, time.Since(t0))
			}
		}
	}
	// Nothing may be left: --rm and arrow rm removed every arrow.
	if out, err := arrow(ctx, "ps", "-a", "-q"); err != nil || strings.TrimSpace(out) != "" {
		return fmt.Errorf("arrows left after the runs: %q, %v", out, err)
	}

	fmt.Printf("%s: true, median of %d interleaved runs after a warm-up, each started with a spare ready in the pool; accelerator %s (%s)\n\n",
		dockerBenchImage, runs, su.accel.Name, su.accel.Reason)
	dockerMed := medianDuration(contenders[0].samples)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| way\t| wall time (median)\t| min – max\t| docker run ÷ this\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|")
	for _, c := range contenders {
		med := medianDuration(c.samples)
		lo, hi := minMax(c.samples)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.3f×\t|\n", c.name, med.Seconds(), lo.Seconds(), hi.Seconds(),
			float64(dockerMed)/float64(med))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	ratio := float64(dockerMed) / float64(medianDuration(contenders[1].samples))
	verdict := "within"
	if ratio > 1.05 {
		verdict = "over"
	}
	fmt.Printf("\ndocker run --rm ÷ the same path through arrowd's own API: %.3f× (%+.1f%%), %s the issue's goal of at most 1.05×.\n", ratio, (ratio-1)*100, verdict)
	fmt.Println("Both daemon ways take a spare from the pool; the foreground run clones the template (no pool without arrowd).")
	return nil
}

// runEnv runs argv with env and returns its standard output; its error
// carries the standard error (and is an *exec.ExitError for a status).
func runEnv(ctx context.Context, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// wantExit checks that err is an exit with status code.
func wantExit(err error, code int) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == code {
		return nil
	}
	return fmt.Errorf("want exit status %d, got %v", code, err)
}
