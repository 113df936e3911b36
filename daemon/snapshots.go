package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/shim"
	"github.com/arrowsys/arrow/template"
)

// Application snapshots (`arrow snapshot`). The arrow's shim takes the
// snapshot (it holds the VM); the daemon waits for the arrow to be ready
// first, so that what is saved is an application that serves, and lists
// and removes what is under the data root (template.ListApps).

// snapshotTimeout bounds the save: the arrow is paused for part of it.
const snapshotTimeout = 5 * time.Minute

// SnapshotCreate saves the running arrow req.Arrow, once ready (its
// ready port answered, or its service is ready; at once without either),
// as the application snapshot req.Name.
func (d *Daemon) SnapshotCreate(ctx context.Context, req *api.SnapshotCreateRequest) (api.Snapshot, error) {
	if err := req.Validate(); err != nil {
		return api.Snapshot{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	a, err := d.resolve(req.Arrow)
	if err != nil {
		return api.Snapshot{}, err
	}
	if _, err := template.LookupApp(d.cfg.Root, req.Name); err == nil || !errors.Is(err, template.ErrAppNotFound) {
		return api.Snapshot{}, fmt.Errorf("%w: snapshot %s exists", ErrConflict, req.Name)
	}
	d.mu.Lock()
	rs, name, state := a.run, a.rec.Name, a.rec.State
	waits := a.rec.Config.WaitsReady()
	d.mu.Unlock()
	if rs == nil || state != api.Running {
		return api.Snapshot{}, fmt.Errorf("%w: %s is not running: only a running arrow can be snapshotted", ErrConflict, name)
	}
	if waits {
		d.waitHealthy(ctx, rs)
		d.mu.Lock()
		health := a.rec.Health
		d.mu.Unlock()
		if health != healthHealthy {
			return api.Snapshot{}, fmt.Errorf("%w: %s is not ready (%s): a snapshot is of a ready application", ErrConflict, name, health)
		}
	}
	// Serialised with start, stop, kill, remove and pause: the run
	// saved is the run this saw.
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	same := a.run == rs
	d.mu.Unlock()
	if !same {
		return api.Snapshot{}, fmt.Errorf("%w: %s is not running (its run ended)", ErrConflict, name)
	}
	sctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	s, err := rs.client.Snapshot(sctx, req.Name, req.Signal)
	if err != nil {
		var refused *shim.StatusError
		if errors.As(err, &refused) && refused.Code == http.StatusBadRequest {
			return api.Snapshot{}, fmt.Errorf("%w: %s", ErrInvalid, refused.Message)
		}
		return api.Snapshot{}, shimRefused(name, "snapshot", err)
	}
	d.emit(a, "snapshot", nil, req.Name)
	return *s, nil
}

// SnapshotList lists the application snapshots.
func (d *Daemon) SnapshotList() ([]api.Snapshot, error) {
	apps, err := template.ListApps(d.cfg.Root)
	if err != nil {
		return nil, err
	}
	out := make([]api.Snapshot, 0, len(apps))
	for _, app := range apps {
		out = append(out, run.SnapshotInfo(app))
	}
	return out, nil
}

// SnapshotInspect describes the application snapshot name, checked.
func (d *Daemon) SnapshotInspect(name string) (api.Snapshot, error) {
	app, err := template.LookupApp(d.cfg.Root, name)
	if err != nil {
		return api.Snapshot{}, snapshotError(err)
	}
	return run.SnapshotInfo(app), nil
}

// SnapshotRemove deletes the application snapshot name.
func (d *Daemon) SnapshotRemove(name string) error {
	return snapshotError(template.RemoveApp(d.cfg.Root, name))
}

// snapshotError maps the template package's errors to the API's.
func snapshotError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, template.ErrAppNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, template.ErrUnusable):
		return err
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

func (d *Daemon) handleSnapshotCreate(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s, err := d.SnapshotCreate(r.Context(), &req)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

func (d *Daemon) handleSnapshotList(w http.ResponseWriter, r *http.Request) {
	out, err := d.SnapshotList()
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleSnapshotInspect(w http.ResponseWriter, r *http.Request) {
	s, err := d.SnapshotInspect(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (d *Daemon) handleSnapshotRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.SnapshotRemove(r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
