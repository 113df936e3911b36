package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mode is a run mode (runModes) as a test entered it: the flags and
// environment of its runs and, in spare mode, the test's own arrowd.
type mode struct {
	name string
	args []string
	env  []string
	d    *testDaemon // spare mode: the arrowd whose spares the runs take
}

// enterMode prepares mode m for the test t and its subtests. Spare mode
// starts an arrowd of t's own (its own data root and socket: the host's
// arrowd, if one runs, is never asked) with a spare of the default
// machine ready, and lets the runs use it (the suite sets
// ARROW_NO_DAEMON=1 for every other run).
func enterMode(t *testing.T, name string, args []string) *mode {
	t.Helper()
	m := &mode{name: name, args: args}
	if name != "spare" {
		forMode(t, name, nil) // warms the template in template mode
		return m
	}
	m.d = startDaemon(t)
	m.env = append(slices.Clone(m.d.env), "ARROW_NO_DAEMON=0")
	// A spare of the default machine from the start (the pool keeps
	// spares of the machines arrows were started with, and no arrow was).
	m.d.must("template", "warm", "--count", "1")
	m.d.waitPool(1)
	return m
}

// runArgs are `arrow run`'s arguments for args in this mode.
func (m *mode) runArgs(args ...string) []string {
	return append(append([]string{"run"}, m.args...), args...)
}

// begin prepares a run of args and returns what checks it once it ended:
// no VM of it left behind; in spare mode, that arrowd started it, in a
// spare when it is of the default machine (the pool's), and removed it.
func (m *mode) begin(t *testing.T, args []string) (done func()) {
	t.Helper()
	if m.d == nil {
		before := qemuProcesses(t)
		return func() { t.Helper(); assertNoNewQEMU(t, before) }
	}
	defaultMachine := !slices.ContainsFunc(args, func(a string) bool {
		return a == "--cpus" || a == "--memory" || a == "-m"
	})
	if defaultMachine {
		m.d.waitPool(1)
	}
	spares0, all0 := m.d.starts()
	return func() {
		t.Helper()
		// The spares' VMs are arrowd's until it ends (its test's
		// cleanup checks that none is left); the arrow's is gone once
		// arrowd removed it.
		m.d.waitNoArrows()
		spares, all := m.d.starts()
		if all != all0+1 {
			t.Errorf("arrowd started %d arrows for the run, want 1", all-all0)
		}
		if defaultMachine && spares != spares0+1 {
			t.Errorf("arrowd started %d arrows in spares for the run, want 1", spares-spares0)
		}
	}
}

// run runs `arrow run` with args in this mode, and checks it as begin
// says.
func (m *mode) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	done := m.begin(t, args)
	r := runArrow(t, m.env, stdin, m.runArgs(args...)...)
	done()
	return r
}

// start starts `arrow run` with args in this mode as startArrowEnv does.
func (m *mode) start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startArrowEnv(t, m.env, append(slices.Clone(m.args), args...)...)
}

// starts reads arrowd's count of starts in spares, and of all starts.
func (d *testDaemon) starts() (spares, all int) {
	d.t.Helper()
	for _, line := range strings.Split(d.metrics(), "\n") {
		rest, ok := strings.CutPrefix(line, "arrow_starts_total{")
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscan(rest[strings.Index(rest, "}")+1:], &n); err != nil {
			d.t.Fatalf("metrics line %q: %v", line, err)
		}
		all += n
		if strings.HasPrefix(rest, `how="spare"`) {
			spares += n
		}
	}
	return spares, all
}

// waitNoArrows waits until arrowd has no arrow left: the foreground runs'
// arrows are removed as they end.
func (d *testDaemon) waitNoArrows() {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := d.client().List(context.Background(), true)
		if err != nil {
			d.t.Fatal(err)
		}
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("arrowd still has %d arrows after a minute: %+v", len(l), l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runArrow runs the arrow CLI with env added to the environment, bounded
// by a generous deadline.
func runArrow(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("arrow %q did not finish: %v\nstderr: %s", args, err, r.stderr)
	}
	return r
}

// startArrowEnv starts arrow run, with env added to the environment, in
// the background and waits until the application printed its first line,
// so that signals sent afterwards reach a running application rather than
// a booting VM.
func startArrowEnv(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(arrowBin, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l == "" {
			_ = cmd.Wait()
			t.Fatalf("application printed nothing; stderr: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("application did not start; stderr: %s", stderr.String())
	}
	return cmd, &stderr
}

// TestRunThroughDaemon: what is particular to foreground runs through
// arrowd, beyond the run tables' spare mode. The arrow is arrowd's while it
// runs (inspect says it is in a spare, and removed when it ends); runs
// told to stay in-process, and runs of another data root, do not reach
// arrowd; an arrowd that dies mid-run fails the run with 125, and the
// next arrowd stops and removes the arrow.
func TestRunThroughDaemon(t *testing.T) {
	m := enterMode(t, "spare", nil)
	d := m.d
	sleeper := []string{"--include", "/bin/sleep", "/bin/sh", "-c", "echo ready; exec /bin/sleep 60"}

	t.Run("in-process", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  []string
			args []string
		}{
			{"--no-daemon", nil, []string{"--no-daemon"}},
			{"ARROW_NO_DAEMON=1", []string{"ARROW_NO_DAEMON=1"}, nil},
			{"--cold", nil, []string{"--cold"}},
			{"another data root", []string{"ARROW_ROOT=" + t.TempDir()}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, all0 := d.starts()
				env := append(slices.Clone(m.env), tc.env...)
				r := runArrow(t, env, "", append(append([]string{"run"}, tc.args...), "/bin/echo", "here")...)
				if r.code != 0 || r.stdout != "here\n" {
					t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
				}
				if _, all := d.starts(); all != all0 {
					t.Errorf("arrowd started %d arrows for a run that should stay in-process", all-all0)
				}
			})
		}
	})

	t.Run("inspect while it runs", func(t *testing.T) {
		done := m.begin(t, sleeper)
		cmd, _ := m.start(t, sleeper...)
		l, err := d.client().List(context.Background(), false)
		if err != nil || len(l) != 1 {
			t.Fatalf("arrows while a foreground run runs: %+v, %v", l, err)
		}
		a := d.inspect(l[0].ID)
		if !a.Spare || !a.AutoRemove || a.Template == "" {
			t.Errorf("inspect: spare %v, auto-remove %v, template %q", a.Spare, a.AutoRemove, a.Template)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, cmd, time.Minute); code != 143 {
			t.Errorf("exit %d, want 143", code)
		}
		done()
	})

	t.Run("arrowd dies mid-run", func(t *testing.T) {
		d.waitPool(1)
		cmd, stderr := m.start(t, sleeper...)
		d.kill()
		if code := waitExit(t, cmd, time.Minute); code != 125 {
			t.Errorf("exit %d, want 125", code)
		}
		if !strings.Contains(stderr.String(), "arrowd went away") {
			t.Errorf("stderr does not say what happened: %q", stderr.String())
		}
		// The next arrowd stops and removes the arrow whose client went
		// (the test's cleanup checks that its VM is gone).
		d.start()
		d.waitNoArrows()
		if !strings.Contains(d.log.String(), "its client went with the last daemon") {
			t.Errorf("arrowd's log does not say why it removed the arrow:\n%s", d.log)
		}
	})
}
