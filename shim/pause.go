package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/logs"
	"github.com/arrowsys/arrow/run"
)

// Pausing (docker pause): the shim stops its VM's virtual CPUs (QMP stop)
// and runs them again (QMP cont). The shim, not the daemon, knows whether
// the VM is paused (Status.Paused), so a daemon that restarts learns it
// from the shim. A signal to a paused arrow continues the VM first (see
// resumeForSignal): stop and kill work on a paused arrow as docker's do.

// resumeTimeout bounds the QMP cont that comes before a signal.
const resumeTimeout = 5 * time.Second

func (s *server) pauseRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /pause", s.handlePause)
	mux.HandleFunc("POST /unpause", s.handleUnpause)
	mux.HandleFunc("POST /snapshot", s.handleSnapshot)
}

// handlePause pauses the running VM: 204; 409 when the application is not
// running (not yet, or no longer), is stopping, or is paused already.
func (s *server) handlePause(w http.ResponseWriter, r *http.Request) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	h := s.runningHandle(w, "the arrow is paused already")
	if h == nil {
		return
	}
	if err := h.Pause(r.Context()); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, run.ErrNotRunning) {
			code = http.StatusConflict
		}
		writeReply(w, code, api.Error{Message: err.Error()})
		return
	}
	s.setPaused(true)
	w.WriteHeader(http.StatusNoContent)
}

// handleUnpause continues the paused VM: 204; 409 when it is not paused.
func (s *server) handleUnpause(w http.ResponseWriter, r *http.Request) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	s.mu.Lock()
	h, paused := s.handle, s.paused
	s.mu.Unlock()
	if !paused || h == nil {
		writeReply(w, http.StatusConflict, api.Error{Message: "the arrow is not paused"})
		return
	}
	if err := h.Resume(r.Context()); err != nil {
		writeReply(w, http.StatusInternalServerError, api.Error{Message: err.Error()})
		return
	}
	s.setPaused(false)
	w.WriteHeader(http.StatusNoContent)
}

// runningHandle returns the run whose application runs, neither stopping
// nor paused, for an operation that pauses the VM (pause, snapshot); or
// answers 409, saying paused for a paused one, and returns nil. The
// caller holds pauseMu.
func (s *server) runningHandle(w http.ResponseWriter, paused string) *run.Handle {
	s.mu.Lock()
	h, isPaused, stopping := s.handle, s.paused, s.stopping
	s.mu.Unlock()
	msg := ""
	switch {
	case h == nil:
		msg = "the arrow is not running"
	case stopping:
		msg = "the arrow is stopping"
	case isPaused:
		msg = paused
	default:
		return h
	}
	writeReply(w, http.StatusConflict, api.Error{Message: msg})
	return nil
}

func (s *server) setPaused(p bool) {
	s.mu.Lock()
	s.paused, s.status.Paused = p, p
	s.mu.Unlock()
}

func (s *server) isPaused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// resumeForSignal continues a paused VM before a signal is relayed to
// its application, which could not act on it otherwise: a stop of a
// paused arrow would wait out its timeout and kill the VM. Should QMP
// fail, the signal goes all the same (a repeated SIGKILL kills the VM).
func (s *server) resumeForSignal() {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	s.mu.Lock()
	h, paused := s.handle, s.paused
	s.mu.Unlock()
	if !paused {
		return
	}
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
		err := h.Resume(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(s.log.Stream(logs.Stderr), "arrow: continue the paused VM before a signal: %v\n", err)
		}
	}
	s.setPaused(false)
}

// Pause pauses the arrow's VM. A refusal is a [*StatusError] (409: not
// running, stopping, or paused already).
func (c *Client) Pause(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/pause", nil)
}

// Unpause continues the arrow's paused VM. A refusal is a [*StatusError]
// (409: not paused).
func (c *Client) Unpause(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/unpause", nil)
}

// Status returns the shim's status now.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.call(ctx, http.MethodGet, "/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// call is do with the shim's refusals as [*StatusError]s, so that callers
// can tell a 409 from a shim that is gone ([IsGone]).
func (c *Client) call(ctx context.Context, method, path string, out any) error {
	return c.callBody(ctx, method, path, nil, out)
}

// callBody is call with a request body.
func (c *Client) callBody(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotRunning, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		if e.Message == "" {
			e.Message = resp.Status
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, api.MaxRequestBytes)).Decode(out); err != nil {
		return fmt.Errorf("%w: %w", errNotRunning, err)
	}
	return nil
}
