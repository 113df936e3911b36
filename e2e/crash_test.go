package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/shim"
)

// Crash windows: arrowd is SIGKILLed (by its hidden --crash-at failpoint)
// at each step of starting an arrow. Afterwards no shim and no VM of the
// start may be left running; the next arrowd reports the arrow as exited,
// saying why, and can start it again (no second shim over a live one).

// processGone reports whether pid has ended (or is a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// waitNoHolder waits until no shim holds dir's lock.
func waitNoHolder(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pid, err := shim.Holder(dir)
		if err != nil {
			t.Fatal(err)
		}
		if pid == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a shim (pid %d) of %s still runs %v after arrowd was killed", pid, dir, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmSpare asks d for one spare of the default machine and waits until
// it is ready; it returns the spare shim's PID.
func warmSpare(t *testing.T, d *testDaemon) int {
	t.Helper()
	ctx := context.Background()
	if _, err := d.client().SetPool(ctx, &api.PoolRequest{Count: 1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ps, err := d.client().Pool(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 1 && ps[0].Ready == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no spare ready: %+v", ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ents, err := os.ReadDir(filepath.Join(d.root, "spares"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("spare directories: %d, %v", len(ents), err)
	}
	pid, err := shim.Holder(filepath.Join(d.root, "spares", ents[0].Name()))
	if err != nil || pid <= 0 {
		t.Fatalf("the spare's shim: pid %d, %v", pid, err)
	}
	return pid
}

func TestCrashWhileStarting(t *testing.T) {
	for _, tc := range []struct {
		point string
		spare bool // a spare is claimed for the arrow
	}{
		{"launching", false},
		{"shim-started", false},
		{"shim-started", true},
		{"recorded", false},
	} {
		name := tc.point
		if tc.spare {
			name += ", spare claimed"
		}
		t.Run(name, func(t *testing.T) {
			d := startDaemon(t, "--crash-at", tc.point, "--pool-size", "0")
			var sparePid int
			if tc.spare {
				sparePid = warmSpare(t, d)
			}
			before := time.Now()
			if r := d.arrow(append([]string{"run", "-d", "--name", "x"}, ticker...)...); r.code == 0 {
				t.Fatalf("run -d succeeded although arrowd was to crash at %s: %s", tc.point, r.stdout)
			}
			if err := d.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("arrowd did not crash at %s: %v\n%s", tc.point, err, d.log)
			}
			d.cmd = nil
			arrows, err := os.ReadDir(filepath.Join(d.root, "arrows"))
			if err != nil || len(arrows) != 1 {
				t.Fatalf("arrow directories: %d, %v", len(arrows), err)
			}
			// Before any new arrowd: the shim ends by itself, its VM
			// (a claimed spare's included) with it.
			waitNoHolder(t, filepath.Join(d.root, "arrows", arrows[0].Name()), 10*time.Second)
			if tc.spare {
				// Its lock is released last, as it exits.
				deadline := time.Now().Add(5 * time.Second)
				for !processGone(sparePid) {
					if time.Now().After(deadline) {
						t.Fatalf("the claimed spare's shim (pid %d) still runs", sparePid)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			assertNoNewQEMU(t, map[string]bool{})

			d.args = nil
			d.start()
			a := d.inspect("x")
			if a.State != api.Exited || a.ExitCode != 125 || !strings.Contains(a.Error, "arrowd ended") || a.FinishedAt.Before(before) {
				t.Fatalf("after the crash at %s: %s, exit %d, %q, finished %v", tc.point, a.State, a.ExitCode, a.Error, a.FinishedAt)
			}
			// It starts again: nothing of the abandoned start is in
			// the way.
			d.must("start", "x")
			d.waitFor("x", time.Minute, "ticking", func(api.Arrow) bool { return len(d.ticks("x")) >= 1 })
			if a := d.inspect("x"); a.State != api.Running {
				t.Fatalf("restarted: %s %q", a.State, a.Error)
			}
		})
	}
}

// A spare shim and its VM end with the daemon that started them: a SIGKILL
// of arrowd leaves neither running, and the next arrowd starts clean.
func TestCrashSpareDiesWithDaemon(t *testing.T) {
	d := startDaemon(t, "--pool-size", "0")
	pid := warmSpare(t, d)
	d.kill()
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the spare shim (pid %d) outlived its arrowd by 10 s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertNoNewQEMU(t, map[string]bool{})
	d.start()
	if ents, err := os.ReadDir(filepath.Join(d.root, "spares")); err == nil && len(ents) != 0 {
		t.Errorf("the next arrowd left %d spare directories", len(ents))
	}
}

// A socket directory that someone else owns, or that others can write,
// is refused by the CLI and by arrowd: whoever controls it could answer
// in arrowd's place (as with a /tmp/arrow-UID made by another user first).
func TestSocketDirRefused(t *testing.T) {
	base := t.TempDir()
	for _, tc := range []struct {
		name string
		mode os.FileMode
		uid  int
		want string
	}{
		{"another user's", 0o700, 65533, "owned by uid 65533"},
		{"writable by all", 0o777, 0, "writable by others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, strconv.Itoa(tc.uid)+tc.mode.String())
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tc.uid, -1); err != nil {
				t.Fatal(err)
			}
			d := &testDaemon{t: t, env: []string{"ARROW_ROOT=" + t.TempDir(), "ARROW_SOCKET=" + filepath.Join(dir, "arrow.sock")}}
			for _, args := range [][]string{{"ps"}, {"daemon"}} {
				r := d.arrow(args...)
				if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("arrow %s with the socket in %s: exit %d, %q; want 125 and %q", args[0], dir, r.code, r.stderr, tc.want)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("something was created in the refused directory: %v", ents)
			}
		})
	}
}
