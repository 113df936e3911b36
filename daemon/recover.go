package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/shim"
)

// Crash windows. Starting a run is three steps that cannot be one
// transaction: record that the arrow is launching, start its shim, record
// the shim. A daemon may be killed between any two of them. So:
//
//   - The launching state (record.Launching) is committed before the shim
//     starts: a later daemon knows a shim may exist that no record names.
//   - A shim starts its VM only when its daemon confirms, after recording
//     the shim, with shim.Process.Commit; a shim whose daemon died before
//     that ends by itself (its control connection reads end of file).
//   - A shim holds its arrow's shim.LockFile for its whole life, so a
//     later daemon knows for certain whether any shim of an arrow lives,
//     and no second shim can ever start over a live one.
//
// At start a daemon therefore ends the shim of an arrow left launching
// (which is ending by itself anyway) and records the run as exited, with a
// reason; it ends any shim holding the lock of an arrow whose record does
// not name that shim, and of a spare (spares are never adopted: they are
// cheap, and a spare's VM is of the daemon that started it).

// Failpoints for tests: a daemon configured with Config.CrashAt set to one
// of these kills itself with SIGKILL there, as a crash would.
const (
	crashLaunching   = "launching"    // the launching state is committed, no shim started
	crashShimStarted = "shim-started" // the shim listens (or a spare was claimed), not yet recorded
	crashRecorded    = "recorded"     // the shim is recorded, not yet confirmed to it
)

// crashPoint kills the daemon at failpoint name when asked to.
func (d *Daemon) crashPoint(name string) {
	if d.cfg.CrashAt != "" && d.cfg.CrashAt == name {
		fmt.Fprintf(d.cfg.Log, "arrowd: failpoint %s: SIGKILL\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// How long an ending shim gets, after SIGTERM and after SIGKILL.
const (
	holderTermGrace = 5 * time.Second
	holderKillGrace = 5 * time.Second
)

// endHolder ends the shim holding dir's lock, if one does, and returns
// once none holds it. A shim that ends by itself (one whose daemon went)
// is given termGrace to do so; then it gets SIGTERM (a shim stops its
// arrow's VM on it, a spare kills its VM), and SIGKILL after
// holderTermGrace. An error means a shim still holds the lock.
func endHolder(dir string, termGrace time.Duration) error {
	if pid, err := waitHolder(dir, termGrace); err != nil || pid == 0 {
		return err
	}
	for _, step := range []struct {
		sig   syscall.Signal
		grace time.Duration
	}{{syscall.SIGTERM, holderTermGrace}, {syscall.SIGKILL, holderKillGrace}} {
		pid, err := shim.Holder(dir)
		if err != nil || pid == 0 {
			return err
		}
		if pid > 0 {
			_ = syscall.Kill(pid, step.sig)
		}
		if pid, err = waitHolder(dir, step.grace); err != nil || pid == 0 {
			return err
		}
	}
	pid, _ := shim.Holder(dir)
	return fmt.Errorf("%s: its shim (pid %d) survived SIGKILL", dir, pid)
}

// waitHolder waits up to grace for dir's lock to be free, and returns its
// holder then (0: none). The holder is a shim this daemon did not start
// (an earlier daemon's, or an orphan): no event of the daemon's own says
// when it lets go, so the lock is polled.
func waitHolder(dir string, grace time.Duration) (int, error) {
	deadline := time.Now().Add(grace)
	for {
		pid, err := shim.Holder(dir)
		if err != nil || pid == 0 || !time.Now().Before(deadline) {
			return pid, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launchAbandoned is how a run is recorded whose daemon was killed while
// it started.
const launchAbandoned = "arrowd ended while starting this run, before it recorded the arrow's supervisor: the run was abandoned"

// recoverLaunch settles an arrow a previous daemon left launching: its
// shim, if one started, was never confirmed and is ending by itself; the
// daemon makes sure it is gone, then records the run as exited (and
// applies the restart policy, as for any run that ended).
func (d *Daemon) recoverLaunch(a *arrow) {
	r := a.rec
	e := &shim.Exit{ExitCode: run.ExitArrowFailed, FinishedAt: time.Now(), Error: launchAbandoned}
	if err := endHolder(d.arrowDir(r.ID), holderTermGrace); err != nil {
		// Fail closed: the arrow stays exited, and start refuses to
		// launch a second shim while this one holds the lock.
		e.Error += fmt.Sprintf("; its supervisor could not be ended: %v", err)
		fmt.Fprintf(d.cfg.Log, "arrowd: %s: %v\n", r.ID[:12], err)
	}
	rs := newRunState(nil, nil)
	a.run = rs
	d.finished(a, rs, e)
}

// endOrphans scans the arrows' directories for shims no record names (a
// record that is not running, or names another shim, or no record at
// all), ends them, and removes the directories that have no record. It
// runs at start, before any new shim is started.
func (d *Daemon) endOrphans() {
	base := dataroot.Root(d.cfg.Root).Arrows()
	ents, err := os.ReadDir(base)
	if err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: scan %s: %v\n", base, err)
		return
	}
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		id, dir := ent.Name(), filepath.Join(base, ent.Name())
		a := d.arrows[id]
		pid, err := shim.Holder(dir)
		if err != nil {
			fmt.Fprintf(d.cfg.Log, "arrowd: %v\n", err)
			continue
		}
		if a != nil && pid != 0 && !a.rec.Launching &&
			(a.rec.State == api.Starting || a.rec.State == api.Running) &&
			a.rec.ShimPid == pid && processAlive(pid, a.rec.ShimStart) {
			continue // the arrow's own shim, adopted by recover
		}
		if pid != 0 {
			fmt.Fprintf(d.cfg.Log, "arrowd: %s: ending shim pid %d, which no record names\n", id, pid)
			if err := endHolder(dir, 0); err != nil {
				fmt.Fprintf(d.cfg.Log, "arrowd: %v\n", err)
				continue
			}
		}
		if a == nil {
			// Left by a create or a remove that did not finish.
			os.Remove(d.socketPath(id))
			if err := os.RemoveAll(dir); err != nil {
				fmt.Fprintf(d.cfg.Log, "arrowd: remove %s: %v\n", dir, err)
			}
		}
	}
}

// endSpares ends the spare shims an earlier daemon left under dir (a
// spare ends with its daemon, but one may still be ending, or be of a
// version that did not) and removes their directories. A spare whose shim
// cannot be ended keeps its directory, so that the next daemon tries
// again.
func endSpares(dir string, log func(format string, args ...any)) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		log("arrowd: scan %s: %v\n", dir, err)
		return
	}
	for _, ent := range ents {
		sd := filepath.Join(dir, ent.Name())
		if pid, err := shim.Holder(sd); err == nil && pid != 0 {
			log("arrowd: ending spare shim pid %d left by an earlier arrowd\n", pid)
		}
		if err := endHolder(sd, 0); err != nil {
			log("arrowd: spare %s: %v\n", sd, err)
			continue
		}
		if err := os.RemoveAll(sd); err != nil {
			log("arrowd: remove %s: %v\n", sd, err)
		}
	}
}

// CheckRuntimeDir refuses a directory for sockets that another user
// could have prepared: dir must be a directory (not a symbolic link),
// owned by the caller or root, and not writable by group or others.
// Otherwise whoever owns or can write it could put a socket of their own
// where the CLI looks for arrowd's, and read every request (and the files
// it includes), or remove arrowd's.
func CheckRuntimeDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s: not a directory (a symbolic link?): refusing it", dir)
	case !ok:
		return fmt.Errorf("socket directory %s: no owner information", dir)
	case st.Uid != uint32(os.Geteuid()) && st.Uid != 0:
		return fmt.Errorf("socket directory %s: owned by uid %d, not by you (uid %d) or root: refusing it; remove it, or choose another with --socket or ARROW_SOCKET", dir, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("socket directory %s: mode %04o is writable by others: refusing it; chmod go-w it, or choose another with --socket or ARROW_SOCKET", dir, fi.Mode().Perm())
	}
	return nil
}
