package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/volume"
)

// volumes opens the store of named volumes under the data root.
func (d *Daemon) volumes() (*volume.Store, error) {
	return volume.Open(dataroot.Root(d.cfg.Root).Volumes())
}

// refVolumes creates the named volumes among vols and records that the
// arrow id uses them; on error none stays recorded.
func (d *Daemon) refVolumes(ctx context.Context, id string, vols []api.Volume) error {
	var named []api.Volume
	for _, v := range vols {
		if v.Named() {
			named = append(named, v)
		}
	}
	if len(named) == 0 {
		return nil
	}
	vs, err := d.volumes()
	if err != nil {
		return err
	}
	for i, v := range named {
		if err := vs.AddRef(ctx, v.Source, id); err != nil {
			d.unrefVolumes(id, named[:i])
			if errors.Is(err, volume.ErrInvalidName) {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			return fmt.Errorf("volume %s: %w", v.Source, err)
		}
	}
	return nil
}

// unrefVolumes undoes refVolumes, logging what it cannot undo: a stale
// reference only makes volume rm refuse, with the arrow's ID in its
// message.
func (d *Daemon) unrefVolumes(id string, vols []api.Volume) {
	vs, err := d.volumes()
	if err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: volumes: %v\n", err)
		return
	}
	for _, v := range vols {
		if !v.Named() {
			continue
		}
		if err := vs.RemoveRef(v.Source, id); err != nil {
			fmt.Fprintf(d.cfg.Log, "arrowd: %v\n", err)
		}
	}
}

// volumeError maps the volume package's errors to the API's.
func volumeError(err error) error {
	switch {
	case errors.Is(err, volume.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, volume.ErrInvalidName), errors.Is(err, volume.ErrInvalidLabels):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, volume.ErrInUse):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

func (d *Daemon) handleVolumeCreate(w http.ResponseWriter, r *http.Request) {
	var req api.VolumeCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	v, created, err := d.VolumeCreate(r.Context(), &req)
	if err != nil {
		fail(w, err)
		return
	}
	code := http.StatusOK // docker's answer for a volume that exists
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, v)
}

func (d *Daemon) handleVolumeList(w http.ResponseWriter, r *http.Request) {
	out, err := d.VolumeList(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleVolumeInspect(w http.ResponseWriter, r *http.Request) {
	v, err := d.VolumeGet(r.Context(), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (d *Daemon) handleVolumeRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.VolumeRemove(r.Context(), r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleVolumePrune(w http.ResponseWriter, r *http.Request) {
	st, err := d.VolumePrune(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
