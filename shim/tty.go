package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
)

// DefaultRows and DefaultCols are the terminal size of a TTY arrow whose
// size nobody set before its application started: a VT100's, as a
// terminal emulator opens. Clients set the real one with a resize once
// attached (docker run -t does so right after its start).
const (
	DefaultRows = 24
	DefaultCols = 80
)

// handleResize sets the size of the application's terminal (`POST
// /resize?h=ROWS&w=COLS`). Only an arrow with a TTY has one (409
// otherwise). A size set before the VM starts is the terminal's initial
// size; a later one is relayed once the application runs.
func (s *server) handleResize(w http.ResponseWriter, r *http.Request) {
	ws, err := ParseSize(r.URL.Query())
	if err != nil {
		writeReply(w, http.StatusBadRequest, api.Error{Message: err.Error()})
		return
	}
	if !s.launch.Config.TTY {
		writeReply(w, http.StatusConflict, api.Error{Message: "the arrow has no terminal (it was created without tty)"})
		return
	}
	s.setSize(ws)
	w.WriteHeader(http.StatusNoContent)
}

// ParseSize reads a terminal size from ?h= (rows) and ?w= (columns), each
// from 1 to 65535.
func ParseSize(q url.Values) (guest.WindowSize, error) {
	var ws guest.WindowSize
	for _, p := range []struct {
		name string
		to   *uint16
	}{{"h", &ws.Rows}, {"w", &ws.Cols}} {
		v := q.Get(p.name)
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return ws, fmt.Errorf("%s=%q: want a size in cells from 1 to 65535", p.name, v)
		}
		*p.to = uint16(n)
	}
	return ws, nil
}

// setSize makes ws the latest size asked for; an older one not yet taken
// is dropped (only the latest matters to a terminal).
func (s *server) setSize(ws guest.WindowSize) {
	for {
		select {
		case s.resize <- ws:
			return
		default:
		}
		select {
		case <-s.resize:
		default:
		}
	}
}

// initialSize is the size the terminal starts with: the latest asked for
// so far, else the launch's, else DefaultRows by DefaultCols.
func (s *server) initialSize() guest.WindowSize {
	select {
	case ws := <-s.resize:
		return ws
	default:
	}
	if ws := s.launch.Size; ws != nil && ws.Rows > 0 && ws.Cols > 0 {
		return *ws
	}
	return guest.WindowSize{Rows: DefaultRows, Cols: DefaultCols}
}

// Resize sets the size of the arrow's terminal, rows by cols. A shim whose
// arrow has no terminal refuses it with a [*StatusError] of 409.
func (c *Client) Resize(ctx context.Context, rows, cols uint16) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://shim/resize?h=%d&w=%d", rows, cols), nil)
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
	return nil
}
