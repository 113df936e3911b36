package shim

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
)

// fakeExec is a process whose events a test scripts and whose input it
// records.
type fakeExec struct {
	events chan guest.Event

	mu      sync.Mutex
	stdin   []byte
	closed  bool
	signals []int
	resizes []guest.WindowSize
	gaveUp  chan struct{}
	once    sync.Once
}

func newFakeExec() *fakeExec {
	return &fakeExec{events: make(chan guest.Event, 16), gaveUp: make(chan struct{})}
}

func (f *fakeExec) Events() <-chan guest.Event { return f.events }
func (f *fakeExec) Stdin(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stdin = append(f.stdin, b...)
	return nil
}
func (f *fakeExec) CloseStdin() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }
func (f *fakeExec) Signal(n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, n)
	return nil
}
func (f *fakeExec) Resize(ws guest.WindowSize) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resizes = append(f.resizes, ws)
	return nil
}
func (f *fakeExec) Close() { f.once.Do(func() { close(f.gaveUp) }) }

type frameOut struct {
	stream byte
	data   string
}

func readAll(t *testing.T, r io.Reader) []frameOut {
	t.Helper()
	var out []frameOut
	for {
		st, p, err := api.ReadExecFrame(r, api.StreamStdout, api.StreamStderr, api.StreamExit)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, frameOut{st, string(p)})
	}
}

func TestRelayExec(t *testing.T) {
	tests := []struct {
		name string
		evs  []guest.Event
		want []frameOut
	}{
		{"exit code", []guest.Event{
			{Kind: guest.EventStdout, Data: []byte("out")},
			{Kind: guest.EventStderr, Data: []byte("err")},
			{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.Exited, Code: 3}},
		}, []frameOut{{1, "out"}, {2, "err"}, {3, `{"exit_code":3}`}}},
		{"signaled", []guest.Event{{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.Signaled, Signal: 15}}},
			[]frameOut{{3, `{"exit_code":143}`}}},
		{"not found", []guest.Event{{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.NotFound, Message: "x: not found in the guest"}}},
			[]frameOut{{3, `{"exit_code":127,"error":"x: not found in the guest"}`}}},
		{"not executable", []guest.Event{{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.NotExecutable, Message: "m"}}},
			[]frameOut{{3, `{"exit_code":126,"error":"m"}`}}},
		{"init failed", []guest.Event{{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.InitFailed, Message: "working directory /x"}}},
			[]frameOut{{3, `{"exit_code":125,"error":"working directory /x"}`}}},
		{"application ended", []guest.Event{{Kind: guest.EventEnd, Err: guest.ErrAppEnded}},
			[]frameOut{{3, `{"exit_code":137,"error":"` + guest.ErrAppEnded.Error() + `"}`}}},
		{"guest died", []guest.Event{{Kind: guest.EventEnd}},
			[]frameOut{{3, `{"exit_code":125,"error":"the guest ended before the process did"}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeExec()
			for _, ev := range tt.evs {
				f.events <- ev
			}
			close(f.events)
			var out bytes.Buffer
			// The client keeps its end open: nothing is given up.
			in, w := io.Pipe()
			defer w.Close()
			relayExec(f, &out, in)
			if got := readAll(t, &out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("frames %q, want %q", got, tt.want)
			}
			select {
			case <-f.gaveUp:
				t.Error("the process was given up while its client stayed")
			default:
			}
		})
	}
}

func TestExecInput(t *testing.T) {
	f := newFakeExec()
	var in bytes.Buffer
	_ = api.WriteFrame(&in, api.ExecStdin, []byte("hello "))
	_ = api.WriteFrame(&in, api.ExecStdin, []byte("world"))
	_ = api.WriteExecControl(&in, api.ExecResize, api.ExecSize{Rows: 30, Cols: 100})
	_ = api.WriteExecControl(&in, api.ExecSignal, api.ExecSignalRequest{Signal: 2})
	_ = api.WriteExecStdinClose(&in)
	if err := execInput(f, &in); !errors.Is(err, errClientGone) {
		t.Fatalf("execInput: %v", err)
	}
	if string(f.stdin) != "hello world" || !f.closed || !reflect.DeepEqual(f.signals, []int{2}) ||
		!reflect.DeepEqual(f.resizes, []guest.WindowSize{{Rows: 30, Cols: 100}}) {
		t.Errorf("stdin %q closed %v signals %v resizes %v", f.stdin, f.closed, f.signals, f.resizes)
	}
}

func TestExecInputRejects(t *testing.T) {
	tests := []struct {
		name  string
		write func(io.Writer)
	}{
		{"output stream from the client", func(w io.Writer) { _ = api.WriteFrame(w, api.StreamStdout, []byte("x")) }},
		{"unknown stream", func(w io.Writer) { _ = api.WriteFrame(w, 9, []byte("x")) }},
		{"signal out of range", func(w io.Writer) { _ = api.WriteExecControl(w, api.ExecSignal, api.ExecSignalRequest{Signal: 65}) }},
		{"signal with extra fields", func(w io.Writer) { _ = api.WriteExecControl(w, api.ExecSignal, map[string]int{"signal": 2, "x": 1}) }},
		{"resize not JSON", func(w io.Writer) { _ = api.WriteFrame(w, api.ExecResize, []byte("{")) }},
		{"oversized control", func(w io.Writer) { _ = api.WriteFrame(w, api.ExecResize, make([]byte, 5000)) }},
		{"truncated", func(w io.Writer) { _, _ = w.Write([]byte{0, 0, 0, 0, 0, 0, 0, 9, 'a'}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in bytes.Buffer
			tt.write(&in)
			f := newFakeExec()
			if err := execInput(f, &in); err == nil || errors.Is(err, errClientGone) {
				t.Errorf("execInput: %v, want an error", err)
			}
			if len(f.signals) != 0 {
				t.Errorf("signals %v delivered", f.signals)
			}
		})
	}
}

// A client that goes gives the process up, and the relay drains its
// events to the end so that the guest client's pump never waits.
func TestRelayExecClientGone(t *testing.T) {
	f := newFakeExec()
	server, client := net.Pipe()
	client.Close() // gone before anything was written
	done := make(chan struct{})
	go func() {
		relayExec(f, server, server)
		close(done)
	}()
	select {
	case <-f.gaveUp:
	case <-time.After(5 * time.Second):
		t.Fatal("the process was not given up")
	}
	for i := 0; i < 40; i++ {
		f.events <- guest.Event{Kind: guest.EventStdout, Data: []byte("x")}
	}
	f.events <- guest.Event{Kind: guest.EventExit, Status: guest.ExitStatus{Reason: guest.Signaled, Signal: 9}}
	close(f.events)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not drain the events")
	}
}
