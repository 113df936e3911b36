package api

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ExecConfig is a further process to run in a running arrow, next to its
// application (`POST /v1/arrows/{ref}/exec`, `arrow exec`): docker exec's
// options.
type ExecConfig struct {
	// Cmd is the program and its arguments, looked up in the guest's
	// PATH as the application's are.
	Cmd []string `json:"cmd"`
	// Env are KEY=value entries added to the application's environment.
	Env []string `json:"env,omitempty"`
	// User is NAME or UID[:GROUP|GID], as --user takes it; empty runs as
	// the application's user.
	User string `json:"user,omitempty"`
	// WorkingDir is an absolute directory that exists in the guest;
	// empty is the application's.
	WorkingDir string `json:"workdir,omitempty"`
	// TTY runs the process on a terminal of its own in the guest, of
	// initial size Rows x Cols; its output is then one stream.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Stdin forwards the client's input frames to the process; without
	// it the process reads from /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// Limits of an ExecConfig, within the guest protocol's.
const (
	maxExecArgs  = 4096
	maxExecBytes = 256 << 10
)

// Validate checks what an exec can be checked for without the guest.
func (e *ExecConfig) Validate() error {
	switch {
	case len(e.Cmd) == 0 || e.Cmd[0] == "":
		return errors.New("exec: no command given")
	case len(e.Cmd)+len(e.Env) > maxExecArgs:
		return fmt.Errorf("exec: at most %d command words and env entries together", maxExecArgs)
	case len(e.WorkingDir) > 4096 || len(e.User) > 256:
		return errors.New("exec: workdir or user too long")
	case e.WorkingDir != "" && (!path.IsAbs(e.WorkingDir) || strings.IndexByte(e.WorkingDir, 0) >= 0):
		return fmt.Errorf("exec: workdir %.80q: want an absolute path", e.WorkingDir)
	case strings.ContainsAny(e.User, " \t\n/\x00"):
		return fmt.Errorf("exec: user %.80q: want NAME|UID[:GROUP|GID]", e.User)
	case !e.TTY && (e.Rows != 0 || e.Cols != 0):
		return errors.New("exec: rows and cols are the size of a terminal: want tty")
	}
	size := 0
	for _, s := range append(append([]string(nil), e.Cmd...), e.Env...) {
		size += len(s)
		if strings.IndexByte(s, 0) >= 0 {
			return errors.New("exec: a NUL byte in a command word or env entry")
		}
	}
	if size > maxExecBytes {
		return fmt.Errorf("exec: command and env exceed %d bytes", maxExecBytes)
	}
	for _, v := range e.Env {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("exec: env %.80q: want KEY=value", v)
		}
	}
	return nil
}

// Exec streams (`POST /v1/arrows/{ref}/exec`, after the connection is
// upgraded) carry frames both ways with the attach stream's header (see
// [WriteFrame]): the stream in the first byte, the length big-endian in
// the last four. From the server: [StreamStdout] and [StreamStderr], and
// last [StreamExit]. From the client: ExecStdin data, and ExecStdinClose,
// ExecResize and ExecSignal.
const (
	// StreamExit carries a JSON [ExecExit]: the last frame the server
	// sends.
	StreamExit = 3
	// ExecStdin carries input for the process.
	ExecStdin = 0
	// ExecStdinClose (no payload) ends the process's input.
	ExecStdinClose = 4
	// ExecResize carries a JSON [ExecSize]: its terminal's new size.
	ExecResize = 5
	// ExecSignal carries a JSON [ExecSignalRequest]: a signal for it.
	ExecSignal = 6
)

// ExecExit is how an exec'd process ended: ExitCode as docker exec gives
// it (the process's code, 128+N for signal N, 126 not executable, 127 not
// found, 125 when Arrow failed), and Error what went wrong, if anything.
type ExecExit struct {
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

// ExecSize is an exec's terminal size.
type ExecSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// ExecSignalRequest asks for a signal (1 to 64) to the exec'd process.
type ExecSignalRequest struct {
	Signal int `json:"signal"`
}

// ReadExecFrame reads one exec stream frame whose stream is among
// allowed. It returns io.EOF at a clean end between frames. Payloads are
// bounded as attach's are; control frames (exit, resize, signal) to 4 KiB.
func ReadExecFrame(r io.Reader, allowed ...byte) (stream byte, p []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[4:])
	ok := false
	for _, a := range allowed {
		ok = ok || h[0] == a
	}
	if !ok {
		return 0, nil, fmt.Errorf("exec stream: unexpected stream %d", h[0])
	}
	max := uint32(maxFrame)
	switch h[0] {
	case StreamExit, ExecResize, ExecSignal, ExecStdinClose:
		max = 4096
	}
	if n > max {
		return 0, nil, fmt.Errorf("exec stream: frame of %d bytes exceeds %d", n, max)
	}
	p = make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("exec stream: %w", io.ErrUnexpectedEOF)
	}
	return h[0], p, nil
}

// WriteExecControl writes v as one JSON control frame of stream.
func WriteExecControl(w io.Writer, stream byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var h [8]byte
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(b)))
	_, err = w.Write(append(h[:], b...))
	return err
}

// WriteExecStdinClose writes the frame that ends the process's input.
func WriteExecStdinClose(w io.Writer) error {
	var h [8]byte
	h[0] = ExecStdinClose
	_, err := w.Write(h[:])
	return err
}

// DecodeExecControl decodes a control frame's JSON payload strictly.
func DecodeExecControl(p []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(p)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("exec stream: %w", err)
	}
	if d.More() {
		return errors.New("exec stream: trailing data")
	}
	return nil
}
