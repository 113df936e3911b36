package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/run"
)

// execer is what an exec relay drives: a *guest.Process.
type execer interface {
	Events() <-chan guest.Event
	Stdin([]byte) error
	CloseStdin() error
	Signal(int) error
	Resize(guest.WindowSize) error
	Close()
}

var _ execer = (*guest.Process)(nil)

// exec runs a further process in the arrow (`POST /exec`, a JSON
// api.ExecConfig) and, once it started, hijacks the connection for its
// exec stream (see api.ExecStdin): its output as frames, its exit status
// last. Not running is 409; a request the guest cannot run, 400.
func (s *server) exec(w http.ResponseWriter, r *http.Request) {
	var cfg api.ExecConfig
	dec := json.NewDecoder(io.LimitReader(r.Body, api.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		writeReply(w, http.StatusBadRequest, api.Error{Message: "exec: malformed JSON body: " + err.Error()})
		return
	}
	if err := cfg.Validate(); err != nil {
		writeReply(w, http.StatusBadRequest, api.Error{Message: err.Error()})
		return
	}
	s.mu.Lock()
	h := s.handle
	s.mu.Unlock()
	if h == nil {
		writeReply(w, http.StatusConflict, api.Error{Message: "the arrow is not running"})
		return
	}
	if s.isPaused() {
		// Its guest could not start the process: docker refuses too.
		writeReply(w, http.StatusConflict, api.Error{Message: "the arrow is paused: unpause it first"})
		return
	}
	p, err := h.Exec(r.Context(), ExecOptions(&cfg))
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, run.ErrNotRunning) {
			code = http.StatusConflict
		}
		writeReply(w, code, api.Error{Message: err.Error()})
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		p.Close()
		relayExec(p, io.Discard, bytes.NewReader(nil))
		return
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		p.Close()
		relayExec(p, io.Discard, bytes.NewReader(nil))
		return
	}
	defer conn.Close()
	relayExec(p, conn, brw)
}

// ExecOptions translates an exec request into run's terms.
func ExecOptions(c *api.ExecConfig) run.ExecOptions {
	return run.ExecOptions{
		Args: c.Cmd, Env: c.Env, User: c.User, Dir: c.WorkingDir,
		Stdin: c.Stdin, TTY: c.TTY,
		Size: guest.WindowSize{Rows: c.Rows, Cols: c.Cols},
	}
}

// relayExec relays p's events to out as exec stream frames, its exit
// last, and the client's frames from in to p, until p ends. A client
// that goes (in ends, or out fails) gives p up: it is killed, as nobody
// is left to see it, and its events are drained so that the
// application's keep flowing.
func relayExec(p execer, out io.Writer, in io.Reader) {
	go func() {
		if err := execInput(p, in); err != nil {
			p.Close()
		}
	}()
	broken := false
	write := func(f func() error) {
		if !broken && f() != nil {
			broken = true
			p.Close()
		}
	}
	for ev := range p.Events() {
		switch ev.Kind {
		case guest.EventStdout:
			write(func() error { return api.WriteFrame(out, api.StreamStdout, ev.Data) })
		case guest.EventStderr:
			write(func() error { return api.WriteFrame(out, api.StreamStderr, ev.Data) })
		case guest.EventExit, guest.EventEnd:
			x := execExit(ev)
			write(func() error { return api.WriteExecControl(out, api.StreamExit, x) })
		}
	}
}

// execExit is the exit report of an exec's last event.
func execExit(ev guest.Event) api.ExecExit {
	if ev.Kind == guest.EventEnd {
		if errors.Is(ev.Err, guest.ErrAppEnded) {
			// Killed with the VM, as docker's exec is with its container.
			return api.ExecExit{ExitCode: 137, Error: ev.Err.Error()}
		}
		msg := "the guest ended before the process did"
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		return api.ExecExit{ExitCode: run.ExitArrowFailed, Error: msg}
	}
	x := api.ExecExit{ExitCode: ev.Status.ExitCode()}
	if ev.Status.Reason != guest.Exited && ev.Status.Reason != guest.Signaled {
		x.Error = ev.Status.Message
	}
	return x
}

// errClientGone is why execInput ends when the client's stream ends.
var errClientGone = errors.New("exec client gone")

// execInput forwards the client's frames to p until the client's stream
// ends (errClientGone) or breaks.
func execInput(p execer, in io.Reader) error {
	for {
		st, b, err := api.ReadExecFrame(in, api.ExecStdin, api.ExecStdinClose, api.ExecResize, api.ExecSignal)
		if errors.Is(err, io.EOF) {
			return errClientGone
		}
		if err != nil {
			return err
		}
		switch st {
		case api.ExecStdin:
			err = p.Stdin(b)
		case api.ExecStdinClose:
			err = p.CloseStdin()
		case api.ExecResize:
			var sz api.ExecSize
			if err = api.DecodeExecControl(b, &sz); err == nil {
				err = p.Resize(guest.WindowSize{Rows: sz.Rows, Cols: sz.Cols})
			}
		case api.ExecSignal:
			var sig api.ExecSignalRequest
			if err = api.DecodeExecControl(b, &sig); err == nil {
				if sig.Signal < 1 || sig.Signal > 64 {
					err = fmt.Errorf("exec stream: signal %d: want 1 to 64", sig.Signal)
				} else {
					err = p.Signal(sig.Signal)
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// StatusError is a shim's refusal of a request: its HTTP status and
// message.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// Exec starts a process in the arrow and opens its exec stream (see
// api.ExecStdin): frames to read (api.ReadExecFrame) and to write. A
// refusal is a [*StatusError].
func (c *Client) Exec(ctx context.Context, cfg *api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	req := fmt.Sprintf("POST /exec HTTP/1.1\r\nHost: shim\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	conn, br, resp, err := c.openStream(ctx, "exec", append([]byte(req), body...))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer conn.Close()
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		if e.Message == "" {
			e.Message = resp.Status
		}
		return nil, nil, &StatusError{Code: resp.StatusCode, Message: e.Message}
	}
	return conn, br, nil
}
