package guest_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/guest/guesttest"
)

// procEvents collects a process's events until its channel closes.
func procEvents(t *testing.T, p *guest.Process) []guest.Event {
	t.Helper()
	ctx := testCtx(t)
	var evs []guest.Event
	for {
		select {
		case ev, ok := <-p.Events():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-ctx.Done():
			t.Fatalf("exec events did not end; got %v", kinds(evs))
		}
	}
}

func startedPair(t *testing.T) (*guesttest.Guest, *guest.Client) {
	t.Helper()
	g, c := newPair(t)
	if err := c.Start(&guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/app"}}); err != nil {
		t.Fatal(err)
	}
	return g, c
}

func TestExecEvents(t *testing.T) {
	g, c := startedPair(t)
	appEvents := make(chan guest.Event, 8)
	go func() {
		for ev := range c.Events() {
			appEvents <- ev
		}
	}()
	spec := &guest.ExecSpec{Args: []string{"/bin/sh", "-c", "x"}, Env: []string{"A=b"}, Dir: "/tmp", UID: 5, GID: 6, Groups: []uint32{7}, TTY: true, Size: guest.WindowSize{Rows: 24, Cols: 80}}
	p, err := c.Exec(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != 1 {
		t.Errorf("first exec ID %d, want 1", p.ID())
	}
	got, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.Execs) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	want := *spec
	want.ID = 1
	if !reflect.DeepEqual(got.Execs[0], want) {
		t.Errorf("guest got %+v, want %+v", got.Execs[0], want)
	}
	// Exec and application frames interleaved: each goes to its own.
	g.ExecStdout(1, "one")
	g.Stdout("app")
	g.ExecStderr(1, "two")
	g.ExecExit(1, guest.ExitStatus{Reason: guest.Exited, Code: 3})
	evs := procEvents(t, p)
	if len(evs) != 3 || evs[0].Kind != guest.EventStdout || string(evs[0].Data) != "one" ||
		evs[1].Kind != guest.EventStderr || string(evs[1].Data) != "two" ||
		evs[2].Kind != guest.EventExit || evs[2].Status.ExitCode() != 3 {
		t.Errorf("exec events %+v", evs)
	}
	if ev := <-appEvents; ev.Kind != guest.EventStdout || string(ev.Data) != "app" {
		t.Errorf("application event %+v", ev)
	}
	// The ID is free again, but the next is another.
	p2, err := c.Exec(spec)
	if err != nil || p2.ID() != 2 {
		t.Fatalf("second exec: ID %v, %v", p2, err)
	}
}

func TestExecInput(t *testing.T) {
	g, c := startedPair(t)
	c.Events()
	p, err := c.Exec(&guest.ExecSpec{Args: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), guest.MaxPayload+10) // split over frames, each with the ID
	for _, err := range []error{p.Stdin([]byte("hi")), p.Stdin(big), p.Stdin(nil), p.CloseStdin(), p.Signal(15), p.Resize(guest.WindowSize{Rows: 2, Cols: 3})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.ExecResizes) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if r.Err != nil {
		t.Fatalf("guest: %v", r.Err)
	}
	if !bytes.Equal(r.ExecStdin[1], append([]byte("hi"), big...)) || !r.ExecStdinClosed[1] {
		t.Errorf("stdin %d bytes, closed %v", len(r.ExecStdin[1]), r.ExecStdinClosed[1])
	}
	if !reflect.DeepEqual(r.ExecSignals, []guest.ExecSignal{{ID: 1, Number: 15}}) ||
		!reflect.DeepEqual(r.ExecResizes, []guest.ExecResize{{ID: 1, Size: guest.WindowSize{Rows: 2, Cols: 3}}}) {
		t.Errorf("signals %+v resizes %+v", r.ExecSignals, r.ExecResizes)
	}
	if len(r.Stdin) != 0 || len(r.Signals) != 0 {
		t.Errorf("the application got the exec's input: %q %v", r.Stdin, r.Signals)
	}
}

// Frames for IDs the host does not know, or that do not decode, are
// dropped; the application's events go on.
func TestExecUnknownFrames(t *testing.T) {
	g, c := startedPair(t)
	events := c.Events()
	g.ExecStdout(7, "nobody's")
	g.Send(guest.FrameExecStdout, []byte{0, 1})       // no room for an ID
	g.Send(guest.FrameExecStderr, []byte{0, 0, 0, 0}) // ID 0
	g.Send(guest.FrameExecExit, []byte(`{"id":70000,"status":{"reason":"exited"}}`))
	g.Send(guest.FrameExecExit, []byte(`{"id":`))
	g.Stdout("app")
	g.Exit(guest.ExitStatus{Reason: guest.Exited})
	var got []guest.EventKind
	for ev := range events {
		got = append(got, ev.Kind)
	}
	if !reflect.DeepEqual(got, []guest.EventKind{guest.EventStdout, guest.EventExit}) {
		t.Errorf("application events %v", got)
	}
}

// The application's exit ends the execs: the VM goes with it.
func TestExecEndsWithApplication(t *testing.T) {
	g, c := startedPair(t)
	events := c.Events()
	p, err := c.Exec(&guest.ExecSpec{Args: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	g.Exit(guest.ExitStatus{Reason: guest.Exited})
	for range events {
	}
	evs := procEvents(t, p)
	if len(evs) != 1 || evs[0].Kind != guest.EventEnd || !errors.Is(evs[0].Err, guest.ErrAppEnded) {
		t.Errorf("exec events %+v", evs)
	}
	if _, err := c.Exec(&guest.ExecSpec{Args: []string{"x"}}); !errors.Is(err, guest.ErrAppEnded) {
		t.Errorf("exec after the application: %v", err)
	}
}

func TestExecGuestDies(t *testing.T) {
	g, c := startedPair(t)
	c.Events()
	p, err := c.Exec(&guest.ExecSpec{Args: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	g.ExecStdout(p.ID(), "a")
	g.Die()
	evs := procEvents(t, p)
	if len(evs) != 2 || evs[1].Kind != guest.EventEnd || evs[1].Err == nil {
		t.Errorf("exec events %+v", evs)
	}
}

func TestExecLimit(t *testing.T) {
	g, c := startedPair(t)
	c.Events()
	seen := map[uint32]bool{}
	var first *guest.Process
	for i := 0; i < guest.MaxExecs; i++ {
		p, err := c.Exec(&guest.ExecSpec{Args: []string{"x"}})
		if err != nil {
			t.Fatalf("exec %d: %v", i, err)
		}
		if seen[p.ID()] {
			t.Fatalf("ID %d given twice", p.ID())
		}
		seen[p.ID()] = true
		if first == nil {
			first = p
		}
	}
	if _, err := c.Exec(&guest.ExecSpec{Args: []string{"x"}}); !errors.Is(err, guest.ErrTooManyExecs) {
		t.Fatalf("exec %d: %v, want ErrTooManyExecs", guest.MaxExecs+1, err)
	}
	g.ExecExit(first.ID(), guest.ExitStatus{Reason: guest.Exited})
	procEvents(t, first)
	if _, err := c.Exec(&guest.ExecSpec{Args: []string{"x"}}); err != nil {
		t.Fatalf("exec after one ended: %v", err)
	}
	// A spec the guest would refuse is refused here, and takes no slot.
	if _, err := c.Exec(&guest.ExecSpec{Args: []string{""}}); err == nil {
		t.Fatal("an exec without a program was sent")
	}
}

// Close kills a running process and drops what it still says, without
// blocking the application's events.
func TestExecClose(t *testing.T) {
	g, c := startedPair(t)
	events := c.Events()
	p, err := c.Exec(&guest.ExecSpec{Args: []string{"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close()
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.ExecSignals) > 0 })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.ExecSignals, []guest.ExecSignal{{ID: p.ID(), Number: 9}}) {
		t.Errorf("signals %+v", r.ExecSignals)
	}
	// More than the process's buffer, unread: the pump must not wait.
	for i := 0; i < 200; i++ {
		g.ExecStdout(p.ID(), "y\n")
	}
	g.ExecExit(p.ID(), guest.ExitStatus{Reason: guest.Signaled, Signal: 9})
	g.Stdout("app")
	select {
	case ev := <-events:
		if string(ev.Data) != "app" {
			t.Errorf("application event %+v", ev)
		}
	case <-testCtx(t).Done():
		t.Fatal("a closed exec held up the application's events")
	}
	for range p.Events() {
	}
}

func TestExecSpecValidate(t *testing.T) {
	ok := guest.ExecSpec{ID: 1, Args: []string{"/bin/true"}}
	tests := []struct {
		name string
		mod  func(*guest.ExecSpec)
		ok   bool
	}{
		{"valid", func(*guest.ExecSpec) {}, true},
		{"max ID", func(e *guest.ExecSpec) { e.ID = guest.MaxExecID }, true},
		{"ID 0", func(e *guest.ExecSpec) { e.ID = 0 }, false},
		{"ID too large", func(e *guest.ExecSpec) { e.ID = guest.MaxExecID + 1 }, false},
		{"no args", func(e *guest.ExecSpec) { e.Args = nil }, false},
		{"empty program", func(e *guest.ExecSpec) { e.Args = []string{""} }, false},
		{"relative dir", func(e *guest.ExecSpec) { e.Dir = "tmp" }, false},
		{"NUL", func(e *guest.ExecSpec) { e.Args = []string{"a\x00b"} }, false},
		{"NUL in env", func(e *guest.ExecSpec) { e.Env = []string{"A=\x00"} }, false},
		{"NUL in dir", func(e *guest.ExecSpec) { e.Dir = "/a\x00" }, false},
		{"long env", func(e *guest.ExecSpec) { e.Env = []string{"A=" + string(make([]byte, 128<<10))} }, false},
		{"env without =", func(e *guest.ExecSpec) { e.Env = []string{"A"} }, false},
		{"env empty key", func(e *guest.ExecSpec) { e.Env = []string{"=a"} }, false},
		{"too many groups", func(e *guest.ExecSpec) { e.Groups = make([]uint32, 65) }, false},
		{"long string", func(e *guest.ExecSpec) { e.Args = []string{string(make([]byte, 129<<10))} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok
			tt.mod(&e)
			if err := e.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// FuzzExecDecode plays a hostile host to arrow-init's exec decoding (and a
// hostile guest to the host's exit decoding): no panic, and what decodes
// is within the limits.
func FuzzExecDecode(f *testing.F) {
	f.Add(uint8(guest.FrameExec), []byte(`{"id":1,"args":["/bin/sh"],"env":["A=b"],"dir":"/","uid":0,"gid":0,"tty":true,"size":{"rows":2,"cols":3}}`))
	f.Add(uint8(guest.FrameExecSignal), []byte(`{"id":3,"signal":15}`))
	f.Add(uint8(guest.FrameExecResize), []byte(`{"id":65535,"size":{"rows":1,"cols":1}}`))
	f.Add(uint8(guest.FrameExecExit), []byte(`{"id":2,"status":{"reason":"not-found","message":"x"}}`))
	f.Add(uint8(guest.FrameExecStdin), []byte{0, 0, 0, 1, 'h', 'i'})
	f.Add(uint8(guest.FrameExecStdinClose), []byte{0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, typ uint8, payload []byte) {
		switch guest.FrameType(typ % 8) {
		case 0:
			if e, err := guest.DecodeExecSpec(payload); err == nil {
				if e.ID == 0 || e.ID > guest.MaxExecID || len(e.Args) == 0 || len(e.Args) > 4096 {
					t.Fatalf("accepted %+v", e)
				}
			}
		case 1:
			if s, err := guest.DecodeExecSignal(payload); err == nil && (s.Number < 1 || s.Number > 64 || s.ID == 0 || s.ID > guest.MaxExecID) {
				t.Fatalf("accepted %+v", s)
			}
		case 2:
			if r, err := guest.DecodeExecResize(payload); err == nil && (r.ID == 0 || r.ID > guest.MaxExecID) {
				t.Fatalf("accepted %+v", r)
			}
		case 3:
			if x, err := guest.DecodeExecExit(payload); err == nil {
				if x.ID == 0 || x.ID > guest.MaxExecID || len(x.Status.Message) > 1024+3 {
					t.Fatalf("accepted %+v", x)
				}
				if c := x.Status.ExitCode(); c < 0 || c > 255 {
					t.Fatalf("exit code %d", c)
				}
			}
		default:
			if id, data, err := guest.SplitExecData(payload); err == nil && (id == 0 || id > guest.MaxExecID || len(data) != len(payload)-4) {
				t.Fatalf("split %d %d", id, len(data))
			}
		}
	})
}
