package daemon

import (
	"fmt"
	"time"

	"github.com/arrowsys/arrow/api"
)

// Every change of State goes through record.transition, which refuses a
// move the daemon never makes (that would be a bug: it is logged, the
// record stays as it was) and clears what described the run that ended or
// is about to begin. Daemon.moveLocked wraps it: it commits the record and
// wakes whoever waits for the move.

// legalMove reports whether an arrow may go from state from to state to.
// The table is what the daemon does, no more:
//
//   - created, exited or restarting → starting: a run is launched (create,
//     `arrow start`, restart, a restart by policy);
//   - created, exited, restarting or starting → exited: a start failed
//     (before its shim was recorded, so nothing of the run exists);
//   - starting → running: the shim reports the application started;
//   - starting or running → exited or restarting: the run ended (or a
//     daemon found it ended, or abandoned it while launching), and the
//     restart policy decided;
//   - restarting → exited: a stop, kill or remove cancels the restart.
func legalMove(from, to api.State) bool {
	switch to {
	case api.Starting:
		return from == api.Created || from == api.Exited || from == api.Restarting
	case api.Running:
		return from == api.Starting
	case api.Exited:
		return from == api.Created || from == api.Starting || from == api.Running ||
			from == api.Restarting || from == api.Exited
	case api.Restarting:
		return from == api.Starting || from == api.Running
	}
	return false // nothing moves to created, nor to a state not known
}

// transition moves r to state to, if that is a legal move, and resets the
// per-run fields the move makes stale:
//
//   - to starting (a new run): everything the last run left (its
//     processes, exit status, health, how it started, when it ran, a
//     user's stop); Launching is set until the shim is recorded;
//   - to exited or restarting (the run ended): its processes and health,
//     which no longer exist; its exit status, how it started and when it
//     ran stay for `arrow inspect`;
//   - to running: nothing (the caller records what the shim reported).
//
// The caller fills in the facts of the new state (the exit status, the
// shim's pid, ...) after it. An illegal move leaves r unchanged.
func (r *record) transition(to api.State) error {
	if !legalMove(r.State, to) {
		return fmt.Errorf("arrow %s: illegal state change %s → %s", r.Name, r.State, to)
	}
	switch to {
	case api.Starting:
		r.Launching = true
		r.Pid, r.ShimPid, r.ShimStart = 0, 0, 0
		r.ExitCode, r.Error, r.OOMKilled = 0, "", false
		r.Health = ""
		r.Template, r.Spare, r.StartPhases = "", false, nil
		r.StoppedByUser = false
		r.StartedAt, r.FinishedAt = time.Time{}, time.Time{}
		r.Paused = false
	case api.Exited, api.Restarting:
		r.Launching = false
		r.Pid, r.ShimPid, r.ShimStart = 0, 0, 0
		r.Health = ""
		r.Paused = false // a VM that ended is not paused
	}
	r.State = to
	return nil
}

// moveLocked moves a's record to state to (see record.transition), lets
// fill record the facts of the new state, commits the record, and wakes
// the waiters of the move: those of a's current run (a.run) when it
// leaves starting or ends, and those of the arrow's next change. The
// caller holds d.mu.
//
// An illegal move is a bug in the daemon: it is logged and returned, and
// changes nothing. As with updateLocked, a record that could not be saved
// has changed in memory all the same.
func (d *Daemon) moveLocked(a *arrow, to api.State, fill func(r *record)) error {
	if a.removed {
		return fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name)
	}
	from := a.rec.State
	if err := a.rec.transition(to); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: bug: %v\n", err)
		return err
	}
	if fill != nil {
		fill(a.rec)
	}
	if rs := a.run; rs != nil {
		if from == api.Starting {
			closeOnce(rs.started)
		}
		if to == api.Exited || to == api.Restarting {
			closeOnce(rs.started)
			closeOnce(rs.ended)
		}
	}
	a.changedLocked()
	if err := d.st.put(a.rec); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: save %s: %v\n", a.rec.ID, err)
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// changedLocked wakes those waiting for a's next change (see
// arrow.changed); the caller holds d.mu.
func (a *arrow) changedLocked() {
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

// nextChangeLocked returns a channel closed at a's next change of state
// or its removal; the caller holds d.mu.
func (a *arrow) nextChangeLocked() <-chan struct{} {
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return a.changed
}

// closeOnce closes c unless it is closed already. The channels it is
// used on are closed only under d.mu, so the check cannot race.
func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}
