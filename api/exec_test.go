package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestExecConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    ExecConfig
		ok   bool
	}{
		{"minimal", ExecConfig{Cmd: []string{"sh"}}, true},
		{"everything", ExecConfig{Cmd: []string{"/bin/sh", "-c", "x"}, Env: []string{"A=b", "C="}, User: "www-data:1000", WorkingDir: "/srv", TTY: true, Rows: 24, Cols: 80, Stdin: true}, true},
		{"no command", ExecConfig{}, false},
		{"empty program", ExecConfig{Cmd: []string{""}}, false},
		{"relative workdir", ExecConfig{Cmd: []string{"sh"}, WorkingDir: "srv"}, false},
		{"NUL in workdir", ExecConfig{Cmd: []string{"sh"}, WorkingDir: "/a\x00"}, false},
		{"NUL in command", ExecConfig{Cmd: []string{"sh", "a\x00"}}, false},
		{"env without =", ExecConfig{Cmd: []string{"sh"}, Env: []string{"A"}}, false},
		{"env without key", ExecConfig{Cmd: []string{"sh"}, Env: []string{"=b"}}, false},
		{"user with a slash", ExecConfig{Cmd: []string{"sh"}, User: "../x"}, false},
		{"size without tty", ExecConfig{Cmd: []string{"sh"}, Rows: 3}, false},
		{"too many words", ExecConfig{Cmd: make([]string, 5000)}, false},
		{"too many bytes", ExecConfig{Cmd: []string{"sh", strings.Repeat("x", 300<<10)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestExecFrames(t *testing.T) {
	var b bytes.Buffer
	_ = WriteFrame(&b, StreamStdout, []byte("out"))
	_ = WriteExecControl(&b, StreamExit, ExecExit{ExitCode: 3, Error: "e"})
	_ = WriteExecStdinClose(&b)
	st, p, err := ReadExecFrame(&b, StreamStdout)
	if err != nil || st != StreamStdout || string(p) != "out" {
		t.Fatalf("stdout frame: %d %q %v", st, p, err)
	}
	st, p, err = ReadExecFrame(&b, StreamExit)
	var x ExecExit
	if err != nil || st != StreamExit || DecodeExecControl(p, &x) != nil || x != (ExecExit{ExitCode: 3, Error: "e"}) {
		t.Fatalf("exit frame: %d %q %v", st, p, err)
	}
	if _, _, err := ReadExecFrame(&b, StreamStdout); err == nil {
		t.Fatal("a stream not allowed was read")
	}
	if _, _, err := ReadExecFrame(&b); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v", err)
	}
}

// FuzzExecRequest feeds a hostile client's exec request body and stream
// frames to the decoding the daemon and the shim do: no panic, and what
// is accepted is within the limits.
func FuzzExecRequest(f *testing.F) {
	f.Add([]byte(`{"cmd":["/bin/sh","-c","echo hi"],"env":["A=b"],"user":"1000:1000","workdir":"/tmp","tty":true,"rows":24,"cols":80,"stdin":true}`),
		[]byte{0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i', 4, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte(`{"cmd":[""]}`), []byte{6, 0, 0, 0, 0, 0, 0, 13, '{', '"', 's', 'i', 'g', 'n', 'a', 'l', '"', ':', '9', '}', ' '})
	f.Add([]byte(`{"cmd":["x"],"rows":3}`), []byte{5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body, frames []byte) {
		var c ExecConfig
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if dec.Decode(&c) == nil && c.Validate() == nil {
			if len(c.Cmd) == 0 || c.Cmd[0] == "" || len(c.Cmd)+len(c.Env) > maxExecArgs {
				t.Fatalf("accepted %+v", c)
			}
			for _, e := range c.Env {
				if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
					t.Fatalf("accepted env %q", e)
				}
			}
		}
		r := bytes.NewReader(frames)
		for {
			st, p, err := ReadExecFrame(r, ExecStdin, ExecStdinClose, ExecResize, ExecSignal)
			if err != nil {
				return
			}
			switch st {
			case ExecResize:
				if len(p) > 4096 {
					t.Fatalf("control frame of %d bytes", len(p))
				}
				var s ExecSize
				_ = DecodeExecControl(p, &s)
			case ExecSignal:
				var s ExecSignalRequest
				_ = DecodeExecControl(p, &s)
			case ExecStdin:
				if len(p) > maxFrame {
					t.Fatalf("stdin frame of %d bytes", len(p))
				}
			}
		}
	})
}
