package shim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// serveTest serves s's handler on a socket of its own and returns a client
// for it.
func serveTest(t *testing.T, s *server) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock)
}

// TestPauseRefusals: what the shim refuses, with which status, without a
// VM (the e2e test pauses a real one). A handle whose application is not
// running (a zero one) stands for a run that is ending.
func TestPauseRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		handle   *run.Handle
		paused   bool
		stopping bool
		call     func(c *Client, ctx context.Context) error
		code     int
		msg      string
	}{
		{"pause, not running", nil, false, false, (*Client).Pause, http.StatusConflict, "not running"},
		{"pause, ending", &run.Handle{}, false, false, (*Client).Pause, http.StatusConflict, "not running"},
		{"pause, stopping", &run.Handle{}, false, true, (*Client).Pause, http.StatusConflict, "stopping"},
		{"pause, paused", &run.Handle{}, true, false, (*Client).Pause, http.StatusConflict, "paused already"},
		{"unpause, not paused", &run.Handle{}, false, false, (*Client).Unpause, http.StatusConflict, "not paused"},
		{"unpause, not running", nil, true, false, (*Client).Unpause, http.StatusConflict, "not paused"},
		{"exec, paused", &run.Handle{}, true, false, func(c *Client, ctx context.Context) error {
			_, _, err := c.Exec(ctx, &api.ExecConfig{Cmd: []string{"/bin/true"}})
			return err
		}, http.StatusConflict, "paused: unpause it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &server{handle: tt.handle, paused: tt.paused, stopping: tt.stopping, status: Status{State: api.Running, Paused: tt.paused}}
			err := tt.call(serveTest(t, s), ctx)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(se.Message, tt.msg) {
				t.Fatalf("err = %v, want %d %q", err, tt.code, tt.msg)
			}
			if s.isPaused() != tt.paused {
				t.Errorf("paused changed to %v by a refused request", s.isPaused())
			}
		})
	}
}

// TestStatusPaused: the shim's status says whether it is paused, as a
// daemon that restarts reads it; a signal to a run that ended paused
// clears it.
func TestStatusPaused(t *testing.T) {
	s := &server{paused: true, status: Status{State: api.Running, Paused: true}}
	c := serveTest(t, s)
	st, err := c.Status(context.Background())
	if err != nil || !st.Paused || st.State != api.Running {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	s.resumeForSignal()
	if st, err := c.Status(context.Background()); err != nil || st.Paused {
		t.Fatalf("Status after a signal = %+v, %v", st, err)
	}
	// A shim that is gone is told apart from a refusal.
	gone := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	if err := gone.Pause(context.Background()); !IsGone(err) {
		t.Errorf("Pause of no shim = %v, want IsGone", err)
	}
}
