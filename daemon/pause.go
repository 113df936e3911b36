package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/network"
	"github.com/arrowsys/arrow/shim"
)

// Pause, unpause and rename (docker pause, unpause, rename).
//
// A pause stops the arrow's VM in its shim (QMP stop); the record's Paused
// says so, its State stays Running, as docker's container stays running
// while paused. The shim is the authority on it: a daemon that starts
// again asks each shim it adopts (syncPaused). A signal continues a
// paused VM first (unpauseForSignal), so that stop and kill work.

// pause stops the running arrow ref's VM until unpause.
func (d *Daemon) pause(ctx context.Context, ref string) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	// Serialised with start, stop, kill and remove: the run paused is
	// the run this saw.
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	rs, name, state, paused := a.run, a.rec.Name, a.rec.State, a.rec.Paused
	d.mu.Unlock()
	switch {
	case rs == nil || state != api.Running:
		return fmt.Errorf("%w: %s is not running: only a running arrow can be paused", ErrConflict, name)
	case paused:
		return fmt.Errorf("%w: %s is paused already", ErrConflict, name)
	}
	if err := rs.client.Pause(ctx); err != nil {
		return shimRefused(name, "pause", err)
	}
	// The run may have ended meanwhile (its monitor does not take the
	// op lock): an arrow whose run ended is not paused.
	d.mu.Lock()
	if a.run != rs {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s is not running (its run ended)", ErrConflict, name)
	}
	err = d.updateLocked(a, func(r *record) { r.Paused = true })
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.emit(a, "pause", nil, "")
	return nil
}

// unpause continues the paused arrow ref's VM.
func (d *Daemon) unpause(ctx context.Context, ref string) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	rs, name, paused := a.run, a.rec.Name, a.rec.Paused
	d.mu.Unlock()
	if rs == nil || !paused {
		return fmt.Errorf("%w: %s is not paused", ErrConflict, name)
	}
	err = rs.client.Unpause(ctx)
	var refused *shim.StatusError
	// The shim says it is not paused: the record was behind (a pause
	// lost in a crash of the daemon, say). The VM runs, as asked.
	if err != nil && !(errors.As(err, &refused) && refused.Code == http.StatusConflict) {
		return shimRefused(name, "unpause", err)
	}
	if err := d.update(a, func(r *record) { r.Paused = false }); err != nil {
		return err
	}
	d.emit(a, "unpause", nil, "")
	return nil
}

// shimRefused words a shim's answer to a pause or unpause for the API.
func shimRefused(name, what string, err error) error {
	var refused *shim.StatusError
	switch {
	case errors.As(err, &refused) && refused.Code == http.StatusConflict:
		return fmt.Errorf("%w: %s: %s", ErrConflict, name, refused.Message)
	case shim.IsGone(err):
		return fmt.Errorf("%w: %s is not running (its run ended)", ErrConflict, name)
	}
	return fmt.Errorf("%s: %s: %w", what, name, err)
}

// unpauseForSignal continues the paused VM of a's run rs before a signal
// goes to it (stop, kill), whose op lock the caller holds: a paused
// application could not act on the signal. The shim would continue it
// anyway; this keeps the record and the events right.
func (d *Daemon) unpauseForSignal(ctx context.Context, a *arrow, rs *runState) {
	d.mu.Lock()
	paused, name := a.rec.Paused, a.rec.Name
	d.mu.Unlock()
	if !paused {
		return
	}
	var refused *shim.StatusError
	if err := rs.client.Unpause(ctx); err != nil && !shim.IsGone(err) && !errors.As(err, &refused) {
		fmt.Fprintf(d.cfg.Log, "arrowd: %s: continue the paused VM before a signal: %v (the shim does it with the signal)\n", name, err)
	}
	_ = d.update(a, func(r *record) { r.Paused = false })
	d.emit(a, "unpause", nil, "")
}

// syncPausedTimeout bounds the question syncPaused asks a shim.
const syncPausedTimeout = 10 * time.Second

// goSyncPaused makes a's record say what the shim of its run rs, adopted
// from an earlier daemon, says of its pause: the record may be behind
// when that daemon ended between the shim's pause and its commit.
func (d *Daemon) goSyncPaused(a *arrow, rs *runState) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		a.op.Lock()
		defer a.op.Unlock()
		ctx, cancel := context.WithTimeout(d.ctx, syncPausedTimeout)
		defer cancel()
		st, err := rs.client.Status(ctx)
		if err != nil || st.State != api.Running {
			return // it ends, or it does not answer: the monitor sees to it
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if a.run == rs && !a.removed && a.rec.Paused != st.Paused {
			_ = d.updateLocked(a, func(r *record) { r.Paused = st.Paused })
		}
	}()
}

// rename gives the arrow ref the name name, running or not. On a bridge
// network its DNS name follows (its aliases stay).
func (d *Daemon) rename(ctx context.Context, ref, name string) error {
	if err := api.ValidateNewName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	// Under d.mu throughout, so that no other rename or create takes the
	// name in between, and a removal either comes first (then the arrow
	// is gone) or after (then it detaches the renamed endpoint).
	d.mu.Lock()
	old := a.rec.Name
	err = d.renameLocked(ctx, a, name)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.emit(a, "rename", nil, old)
	return nil
}

func (d *Daemon) renameLocked(ctx context.Context, a *arrow, name string) error {
	if a.removed {
		return fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, a.rec.Name)
	}
	old, id, netName := a.rec.Name, a.rec.ID, a.rec.Config.Network
	if name == old {
		return fmt.Errorf("%w: rename: %s is named %s already", ErrInvalid, old, name)
	}
	if other := d.byNameLocked(name); other != nil {
		return fmt.Errorf("%w: the name %q is in use by another arrow (%.12s)", ErrConflict, name, other.rec.ID)
	}
	onBridge := d.nets != nil && isBridge(netName) && a.rec.Endpoint != nil
	if onBridge {
		// First the network, which may refuse (a name there differs
		// from another's only in case, which DNS does not tell apart).
		if err := d.nets.SetName(ctx, netName, id, name); errors.Is(err, network.ErrNotFound) {
			fmt.Fprintf(d.cfg.Log, "arrowd: rename %s: not on network %s any more: %v\n", old, netName, err)
			onBridge = false
		} else if err != nil {
			return fmt.Errorf("rename %s on network %s: %w", old, netName, networkError(err))
		}
	}
	err := d.updateLocked(a, func(r *record) {
		r.Name = name
		if r.Endpoint != nil {
			// A copy: snapshots taken before share the old one.
			ep := *r.Endpoint
			ep.Name = name
			r.Endpoint = &ep
		}
	})
	if err != nil {
		// Not committed: back to the old name everywhere.
		a.rec.Name = old
		if a.rec.Endpoint != nil {
			ep := *a.rec.Endpoint
			ep.Name = old
			a.rec.Endpoint = &ep
		}
		if onBridge {
			if nerr := d.nets.SetName(context.Background(), netName, id, old); nerr != nil {
				fmt.Fprintf(d.cfg.Log, "arrowd: rename %s: restore its DNS name: %v\n", old, nerr)
			}
		}
		return err
	}
	return nil
}

func (d *Daemon) handlePause(w http.ResponseWriter, r *http.Request) {
	if err := d.Pause(r.Context(), r.PathValue("ref")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleUnpause(w http.ResponseWriter, r *http.Request) {
	if err := d.Unpause(r.Context(), r.PathValue("ref")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleRename(w http.ResponseWriter, r *http.Request) {
	if err := d.Rename(r.Context(), r.PathValue("ref"), r.URL.Query().Get("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
