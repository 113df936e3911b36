package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/template"
)

// Application snapshots: the shim holds the run, so the shim saves it
// (run.Handle.Snapshot). It is serialised with pause and unpause: a
// snapshot pauses the VM and resumes it.

// snapshotRequest is the body of the shim's POST /snapshot.
type snapshotRequest struct {
	Name   string `json:"name"`
	Signal int    `json:"signal,omitempty"`
}

// handleSnapshot saves the running arrow as an application snapshot:
// 201 with its description; 409 when the arrow is not running, paused or
// stopping, or the name is taken; 400 when the arrow cannot be
// snapshotted.
func (s *server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	var req snapshotRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeReply(w, http.StatusBadRequest, api.Error{Message: "snapshot: " + err.Error()})
		return
	}
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	h := s.runningHandle(w, "the arrow is paused: unpause it first")
	if h == nil {
		return
	}
	app, err := h.Snapshot(r.Context(), run.SnapshotOptions{Name: req.Name, Arrow: s.launch.ID, Config: s.launch.Config, Signal: req.Signal})
	switch {
	case errors.Is(err, template.ErrAppExists), errors.Is(err, run.ErrNotRunning):
		writeReply(w, http.StatusConflict, api.Error{Message: err.Error()})
		return
	case err != nil && app == nil:
		writeReply(w, http.StatusBadRequest, api.Error{Message: err.Error()})
		return
	case err != nil:
		// Saved, but the arrow did not take up again as it was.
		writeReply(w, http.StatusInternalServerError, api.Error{Message: err.Error()})
		return
	}
	writeReply(w, http.StatusCreated, run.SnapshotInfo(app))
}

// Snapshot saves the running arrow as the application snapshot name. A
// refusal is a [*StatusError] (409: not running, paused, stopping, or
// the name taken; 400: the arrow cannot be snapshotted).
func (c *Client) Snapshot(ctx context.Context, name string, signal int) (*api.Snapshot, error) {
	b, _ := json.Marshal(snapshotRequest{Name: name, Signal: signal})
	var out api.Snapshot
	if err := c.callBody(ctx, http.MethodPost, "/snapshot", bytes.NewReader(b), &out); err != nil {
		return nil, err
	}
	return &out, nil
}
