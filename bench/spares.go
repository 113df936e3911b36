//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// benchSpares measures how an application's VM starts, for a hello world
// and for python3: a cold boot, a clone of the template (the default of
// `arrow run`) and a spare from a pool (what arrowd's arrows start in: a
// clone started, warmed up and paused beforehand). It reports the median
// latency to the application's first output and to its exit, and their
// ratios to the cold boot, all measured in this run with the run package
// itself (no CLI process around it), so that the three differ only in how
// the VM starts. A spare is started before each of its runs, untimed: a
// pool has it ready.
func benchSpares(ctx context.Context, arrowBin string, runs int) error {
	initPath := filepath.Join(filepath.Dir(arrowBin), "arrow-init")
	if _, err := os.Stat(initPath); err != nil {
		return fmt.Errorf("arrow-init next to %s: %w (run `make`)", arrowBin, err)
	}
	root := dataRoot()
	apps := []struct {
		name string
		prog string
		args []string
		want string
	}{
		{"echo hello", "/bin/echo", []string{"hello"}, "hello"},
		{"python3 -c print", "/usr/bin/python3", []string{"-c", "print('hello')"}, "hello"},
	}
	// Each start, jailed (package jail, as every run as root is) and
	// with --no-jail, interleaved: the jail's cost is the ratio of the
	// two.
	modes := []string{"cold", "clone", "spare", "cold --no-jail", "clone --no-jail", "spare --no-jail"}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "median of %d runs each (TCG or KVM as detected), data root %s\n\n", runs, root)
	fmt.Fprintln(w, "| application\t| start\t| first output\t| exit\t| first output ÷ cold\t| exit ÷ cold\t| jailed ÷ unjailed (first output)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	jailer := filepath.Join(filepath.Dir(arrowBin), "arrow-jailer")
	for _, app := range apps {
		base := run.Options{Root: root, Init: initPath, JailHelper: jailer, Config: api.Config{Program: app.prog, Args: app.args, Dir: "/"}}
		first := make(map[string][]time.Duration)
		exit := make(map[string][]time.Duration)
		// One untimed round first: templates built, caches warm.
		for round := -1; round < runs; round++ {
			for _, mode := range modes {
				o := base
				how, nojail := strings.CutSuffix(mode, " --no-jail")
				o.NoJail = nojail
				switch how {
				case "cold":
					o.Cold = true
				case "spare":
					sp, err := run.StartSpare(ctx, o)
					if err != nil {
						return fmt.Errorf("%s: spare: %w", app.name, err)
					}
					o.Spare = sp
				}
				f, e, err := timeRun(ctx, o, app.want)
				if err != nil {
					return fmt.Errorf("%s (%s): %w", app.name, mode, err)
				}
				if round >= 0 {
					first[mode] = append(first[mode], f)
					exit[mode] = append(exit[mode], e)
				}
			}
		}
		for _, mode := range modes {
			how, nojail := strings.CutSuffix(mode, " --no-jail")
			cold := "cold"
			if nojail {
				cold += " --no-jail"
			}
			cf, ce := medianDuration(first[cold]), medianDuration(exit[cold])
			f, e := medianDuration(first[mode]), medianDuration(exit[mode])
			vsJail := "-"
			if !nojail {
				vsJail = fmt.Sprintf("%.3f×", float64(f)/float64(medianDuration(first[how+" --no-jail"])))
			}
			fmt.Fprintf(w, "| %s\t| %s\t| %.3f s\t| %.3f s\t| %.2f×\t| %.2f×\t| %s\t|\n", app.name, mode, f.Seconds(), e.Seconds(),
				float64(f)/float64(cf), float64(e)/float64(ce), vsJail)
		}
	}
	return w.Flush()
}

// timeRun runs o and returns how long it took to the first byte of output
// and to the end. The output must contain want.
func timeRun(ctx context.Context, o run.Options, want string) (first, exit time.Duration, err error) {
	out := &firstWriter{t0: time.Now()}
	o.Out = out
	var errb strings.Builder
	o.Err, o.Log = &errb, &errb
	res, err := run.Run(ctx, o)
	exit = time.Since(out.t0)
	if err == nil && res.ExitCode() != 0 {
		err = fmt.Errorf("exit %d", res.ExitCode())
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), want) {
		return 0, 0, fmt.Errorf("output %q does not contain %q", out.String(), want)
	}
	return out.first, exit, nil
}

// firstWriter keeps what is written and when the first write came.
type firstWriter struct {
	mu    sync.Mutex
	t0    time.Time
	first time.Duration
	b     strings.Builder
}

func (w *firstWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first == 0 {
		w.first = time.Since(w.t0)
	}
	return w.b.Write(p)
}

func (w *firstWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
