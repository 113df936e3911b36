package shim

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// The test binary doubles as a shim (or a lock holder) when started with
// these variables: see TestMain.
const (
	envServe = "ARROW_SHIM_TEST_SERVE" // serve the arrow in this directory
	envHold  = "ARROW_SHIM_TEST_HOLD"  // hold this directory's lock, then sleep
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envServe); dir != "" {
		ctl, err := ControlFile()
		if err == nil {
			err = Serve(context.Background(), dir, ctl)
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv(envHold); dir != "" {
		if _, err := lockDir(dir); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLockExclusive(t *testing.T) {
	dir := t.TempDir()
	if pid, err := Holder(dir); pid != 0 || err != nil {
		t.Fatalf("Holder of a directory never locked = %d, %v", pid, err)
	}
	l, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := Holder(dir); pid != os.Getpid() || err != nil {
		t.Fatalf("Holder = %d, %v; want this process, %d", pid, err, os.Getpid())
	}
	// A second shim cannot take it, even in the same process (another
	// open file description).
	if l2, err := lockDir(dir); !errors.Is(err, errHeld) {
		l2.Close()
		t.Fatalf("second lockDir = %v, want errHeld", err)
	}
	l.Close()
	if pid, err := Holder(dir); pid != 0 || err != nil {
		t.Fatalf("Holder after release = %d, %v", pid, err)
	}
	l, err = lockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l.Close()
}

// The lock dies with its holder, however it dies: SIGKILL included.
func TestLockDiesWithHolder(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envHold+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, err := readLine(out, 64); err != nil || line != "locked" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	if pid, err := Holder(dir); pid != cmd.Process.Pid || err != nil {
		t.Fatalf("Holder = %d, %v; want the holder, %d", pid, err, cmd.Process.Pid)
	}
	if _, err := lockDir(dir); !errors.Is(err, errHeld) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("lockDir over a live holder = %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if pid, err := Holder(dir); pid != 0 || err != nil {
		t.Fatalf("Holder after SIGKILL = %d, %v", pid, err)
	}
}

// writeTestLaunch writes a launch description for a shim in a new arrow
// directory, its socket in a short directory of its own.
func writeTestLaunch(t *testing.T) (dir string, l *Launch) {
	t.Helper()
	dir = t.TempDir()
	run, err := os.MkdirTemp("", "sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	l = &Launch{ID: "x", Config: api.Config{Program: "/bin/true"}, Root: t.TempDir(), Socket: filepath.Join(run, "x.sock")}
	if err := WriteLaunch(dir, l); err != nil {
		t.Fatal(err)
	}
	return dir, l
}

// A shim whose daemon goes before confirming it ends without starting
// anything, records why, and leaves the arrow free.
func TestShimAbandoned(t *testing.T) {
	dir, l := writeTestLaunch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Setenv(envServe, dir)
	p, err := Start(ctx, os.Args[0], nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := Holder(dir); pid != p.Pid() || err != nil {
		t.Fatalf("Holder of a started shim = %d, %v; want %d", pid, err, p.Pid())
	}
	if _, err := os.Stat(l.Socket); err != nil {
		t.Fatalf("a started shim's socket: %v", err)
	}
	// The daemon's end closes, as it does when the daemon is killed.
	p.Abandon()
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("an abandoned shim still runs")
	}
	e, err := ReadExit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.ExitCode != run.ExitArrowFailed || !strings.Contains(e.Error, "arrowd ended before it confirmed this run") {
		t.Errorf("abandoned shim's exit: %d %q", e.ExitCode, e.Error)
	}
	if e.StartedAt != (time.Time{}) {
		t.Errorf("an abandoned shim started its run at %v", e.StartedAt)
	}
	if pid, err := Holder(dir); pid != 0 || err != nil {
		t.Errorf("Holder after the shim ended = %d, %v", pid, err)
	}
	if _, err := os.Stat(l.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after the shim ended: %v", err)
	}
}

// A second shim for an arrow whose shim lives refuses to start, and
// leaves the live one's socket and exit record alone.
func TestSecondShimRefused(t *testing.T) {
	dir, l := writeTestLaunch(t)
	live, err := lockDir(dir) // the live shim
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := os.WriteFile(l.Socket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Setenv(envServe, dir)
	p, err := Start(ctx, os.Args[0], nil, dir)
	if err == nil {
		p.Abandon()
		<-p.Done
		t.Fatal("a second shim started over a live one")
	}
	if !strings.Contains(err.Error(), "another shim supervises it") || !strings.Contains(err.Error(), "pid") {
		t.Errorf("second shim: %v", err)
	}
	if _, err := os.Stat(l.Socket); err != nil {
		t.Errorf("the live shim's socket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ExitFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second shim wrote an exit record: %v", err)
	}
}
