//go:build linux

package agent

import (
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
)

// execHarness is an agent whose exec frames a test sends and whose
// answers it reads, with a reaper running for a stand-in application.
type execHarness struct {
	t    *testing.T
	a    *agent
	host *guest.Conn // the host's end

	mu     sync.Mutex
	out    map[uint32]*execResult
	change chan struct{}
}

type execResult struct {
	stdout, stderr string
	exit           *guest.ExitStatus
}

func newExecHarness(t *testing.T) *execHarness {
	// The reaper reaps every child of this process: its execs and the
	// stand-in application, whose end ends the reaper.
	hr, gw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	gr, hw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{log: log.New(io.Discard, "", 0), conn: guest.NewConn(gr, gw)}
	h := &execHarness{t: t, a: a, host: guest.NewConn(hr, hw), out: map[uint32]*execResult{}, change: make(chan struct{})}
	app := exec.Command("sleep", "60")
	a.reap = newReaper()
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() {
		<-a.reap.wait(app.Process.Pid)
		close(reaped)
	}()
	go h.read()
	t.Cleanup(func() {
		_ = app.Process.Kill()
		<-reaped
		a.reap.close()
		hw.Close()
		gw.Close()
	})
	return h
}

// read records the guest's exec frames.
func (h *execHarness) read() {
	for {
		f, err := h.host.Recv()
		if err != nil {
			return
		}
		h.mu.Lock()
		switch f.Type {
		case guest.FrameExecStdout, guest.FrameExecStderr:
			id, data, err := guest.SplitExecData(f.Payload)
			if err != nil {
				h.t.Errorf("guest sent %v", err)
				break
			}
			r := h.result(id)
			if r.exit != nil {
				h.t.Errorf("exec %d: output after its exit", id)
			}
			if f.Type == guest.FrameExecStdout {
				r.stdout += string(data)
			} else {
				r.stderr += string(data)
			}
		case guest.FrameExecExit:
			x, err := guest.DecodeExecExit(f.Payload)
			if err != nil {
				h.t.Errorf("guest sent %v", err)
				break
			}
			h.result(x.ID).exit = &x.Status
		default:
			h.t.Errorf("guest sent a %s frame", f.Type)
		}
		close(h.change)
		h.change = make(chan struct{})
		h.mu.Unlock()
	}
}

func (h *execHarness) result(id uint32) *execResult {
	r := h.out[id]
	if r == nil {
		r = &execResult{}
		h.out[id] = r
	}
	return r
}

func (h *execHarness) frame(t guest.FrameType, payload []byte) {
	h.t.Helper()
	if err := h.a.execs.handle(h.a, guest.Frame{Type: t, Payload: payload}); err != nil {
		h.t.Fatalf("%s: %v", t, err)
	}
}

func (h *execHarness) start(spec guest.ExecSpec) {
	h.t.Helper()
	var b strings.Builder
	if err := guest.NewConn(nil, &b).SendJSON(guest.FrameExec, spec); err != nil {
		h.t.Fatal(err)
	}
	h.frame(guest.FrameExec, []byte(b.String()[8:]))
}

// wait returns exec id's output and exit once it exited.
func (h *execHarness) wait(id uint32) execResult {
	h.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		h.mu.Lock()
		r, ch := h.out[id], h.change
		h.mu.Unlock()
		if r != nil && r.exit != nil {
			return *r
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("exec %d did not end", id)
		}
	}
}

func idData(id uint32, s string) []byte {
	var b strings.Builder
	_ = guest.NewConn(nil, &b).SendExecData(guest.FrameExecStdin, id, []byte(s))
	return []byte(b.String()[8:])
}

func TestExecTable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root: execs set credentials")
	}
	h := newExecHarness(t)
	dir := "/usr" // one the exec's user may enter
	tests := []struct {
		spec         guest.ExecSpec
		stdin        string
		stdout, errs string
		want         guest.ExitStatus
	}{
		{guest.ExecSpec{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, "", "out\n", "err\n", guest.ExitStatus{Reason: guest.Exited, Code: 3}},
		{guest.ExecSpec{Args: []string{"sh", "-c", "kill -TERM $$"}}, "", "", "", guest.ExitStatus{Reason: guest.Signaled, Signal: 15}},
		{guest.ExecSpec{Args: []string{"sh", "-c", "echo $A $HOME; pwd; id -u; id -g; id -G"}, Env: []string{"A=b", "HOME=/h"}, Dir: dir, UID: 1234, GID: 5678, Groups: []uint32{91}},
			"", "b /h\n" + dir + "\n1234\n5678\n5678 91\n", "", guest.ExitStatus{Reason: guest.Exited}},
		{guest.ExecSpec{Args: []string{"cat"}, Stdin: true}, "hello", "hello", "", guest.ExitStatus{Reason: guest.Exited}},
		{guest.ExecSpec{Args: []string{"sh", "-c", "test -t 0 && tty >/dev/null && echo tty"}, TTY: true, Size: guest.WindowSize{Rows: 5, Cols: 7}}, "", "tty\r\n", "", guest.ExitStatus{Reason: guest.Exited}},
		{guest.ExecSpec{Args: []string{"stty", "size"}, TTY: true, Size: guest.WindowSize{Rows: 5, Cols: 7}}, "", "5 7\r\n", "", guest.ExitStatus{Reason: guest.Exited}},
		{guest.ExecSpec{Args: []string{"/no/such/program"}}, "", "", "", guest.ExitStatus{Reason: guest.NotFound, Message: "/no/such/program: not found in the guest"}},
		{guest.ExecSpec{Args: []string{"no-such-program"}}, "", "", "", guest.ExitStatus{Reason: guest.NotFound, Message: "no-such-program: not found in the guest"}},
		{guest.ExecSpec{Args: []string{"true"}, Dir: "/no/such/dir"}, "", "", "", guest.ExitStatus{Reason: guest.InitFailed, Message: "working directory /no/such/dir: stat /no/such/dir: no such file or directory"}},
	}
	for i, tt := range tests {
		id := uint32(i + 1)
		tt.spec.ID = id
		h.start(tt.spec)
		if tt.spec.Stdin {
			h.frame(guest.FrameExecStdin, idData(id, tt.stdin))
			h.frame(guest.FrameExecStdinClose, idData(id, ""))
		}
		r := h.wait(id)
		if r.stdout != tt.stdout || r.stderr != tt.errs || *r.exit != tt.want {
			t.Errorf("exec %q: stdout %q stderr %q exit %+v; want %q %q %+v", tt.spec.Args, r.stdout, r.stderr, *r.exit, tt.stdout, tt.errs, tt.want)
		}
	}
}

func TestExecTableControl(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root: execs set credentials")
	}
	h := newExecHarness(t)
	// Signals and resizes reach their exec.
	h.start(guest.ExecSpec{ID: 40, Args: []string{"sh", "-c", "trap 'stty size; exit 4' USR1; echo ready; while :; do sleep 0.05; done"}, TTY: true})
	for deadline := time.Now().Add(20 * time.Second); ; {
		h.mu.Lock()
		ready := h.out[40] != nil && strings.Contains(h.out[40].stdout, "ready")
		h.mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.frame(guest.FrameExecResize, []byte(`{"id":40,"size":{"rows":11,"cols":13}}`))
	h.frame(guest.FrameExecSignal, []byte(`{"id":40,"signal":10}`))
	if r := h.wait(40); !strings.HasSuffix(r.stdout, "11 13\r\n") || r.exit.Code != 4 {
		t.Errorf("after resize and USR1: %q %+v", r.stdout, *r.exit)
	}
	// Frames for no running exec are errors, never panics.
	for _, f := range []guest.Frame{
		{Type: guest.FrameExecStdin, Payload: idData(99, "x")},
		{Type: guest.FrameExecStdinClose, Payload: []byte{0, 0}},
		{Type: guest.FrameExecSignal, Payload: []byte(`{"id":99,"signal":9}`)},
		{Type: guest.FrameExecSignal, Payload: []byte(`{"id":40,"signal":0}`)},
		{Type: guest.FrameExecResize, Payload: []byte(`{"id":0,"size":{"rows":1,"cols":1}}`)},
		{Type: guest.FrameExec, Payload: []byte(`{"id":70000,"args":["true"]}`)},
	} {
		if err := h.a.execs.handle(h.a, f); err == nil {
			t.Errorf("%s %q: no error", f.Type, f.Payload)
		}
	}
	// At most MaxExecs at once: one more is refused with its own exit.
	for i := 1; i <= guest.MaxExecs; i++ {
		h.start(guest.ExecSpec{ID: uint32(100 + i), Args: []string{"sleep", "30"}})
	}
	h.start(guest.ExecSpec{ID: 200, Args: []string{"true"}})
	if r := h.wait(200); r.exit.Reason != guest.InitFailed || !strings.Contains(r.exit.Message, "16") {
		t.Errorf("exec beyond the limit: %+v", *r.exit)
	}
	for i := 1; i <= guest.MaxExecs; i++ {
		h.frame(guest.FrameExecSignal, []byte(`{"id":`+strconv.Itoa(100+i)+`,"signal":9}`))
	}
	for i := 1; i <= guest.MaxExecs; i++ {
		if r := h.wait(uint32(100 + i)); r.exit.Reason != guest.Signaled || r.exit.Signal != 9 {
			t.Errorf("exec %d: %+v", 100+i, *r.exit)
		}
	}
}
