package guest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/guest/guesttest"
)

// testCtx bounds a test's waits, so that a Client that blocks fails the
// test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPair(t *testing.T) (*guesttest.Guest, *guest.Client) {
	t.Helper()
	g := guesttest.New(t)
	c := guest.NewClient(g.Host())
	t.Cleanup(func() { c.Close() })
	return g, c
}

// drain collects events until the channel closes.
func drain(t *testing.T, c *guest.Client) []guest.Event {
	t.Helper()
	ctx := testCtx(t)
	var evs []guest.Event
	ch := c.Events()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-ctx.Done():
			t.Fatalf("events did not end; got %v", kinds(evs))
		}
	}
}

func kinds(evs []guest.Event) []guest.EventKind {
	var ks []guest.EventKind
	for _, ev := range evs {
		ks = append(ks, ev.Kind)
	}
	return ks
}

func TestHello(t *testing.T) {
	g, c := newPair(t)
	g.Hello(guest.ProtocolVersion)
	h, err := c.Hello(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != guest.ProtocolVersion || h.Kernel == "" {
		t.Errorf("Hello() = %+v", h)
	}
}

func TestHelloWrongVersion(t *testing.T) {
	g, c := newPair(t)
	g.Hello(guest.ProtocolVersion + 1)
	_, err := c.Hello(testCtx(t))
	var verr *guest.VersionError
	if !errors.As(err, &verr) || verr.Guest != guest.ProtocolVersion+1 {
		t.Fatalf("Hello() error = %v, want a VersionError for %d", err, guest.ProtocolVersion+1)
	}
	want := "arrow-init speaks protocol version 8, this arrow 7: rebuild both from the same source"
	if guest.ProtocolVersion == 7 && err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
}

func TestHelloMalformed(t *testing.T) {
	g, c := newPair(t)
	g.Send(guest.FrameReady, []byte(`{"version":6,"extra":1}`))
	_, err := c.Hello(testCtx(t))
	if err == nil || !strings.HasPrefix(err.Error(), "guest hello: ") {
		t.Fatalf("Hello() error = %v, want a guest hello decoding error", err)
	}
}

func TestFramesBeforeHelloDropped(t *testing.T) {
	g, c := newPair(t)
	g.Stdout("early")
	g.Healthy()
	g.SendJSON(guest.FrameWarmed, guest.Warmed{})
	g.Hello(guest.ProtocolVersion)
	g.Stdout("late")
	g.Exit(guest.ExitStatus{Reason: guest.Exited})
	if _, err := c.Hello(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	evs := drain(t, c)
	if got, want := kinds(evs), []guest.EventKind{guest.EventStdout, guest.EventExit}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if string(evs[0].Data) != "late" {
		t.Errorf("stdout %q, want %q", evs[0].Data, "late")
	}
}

func TestStartBeforeHello(t *testing.T) {
	g, c := newPair(t)
	spec := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/true"}, Env: []string{"A=b"}, Stdin: true}
	// The guest has not said hello: the start is sent anyway.
	if err := c.Start(spec); err != nil {
		t.Fatal(err)
	}
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.Starts) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Starts[0], *spec) {
		t.Errorf("guest got spec %+v, want %+v", r.Starts[0], *spec)
	}
	g.Hello(guest.ProtocolVersion)
	if _, err := c.Hello(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSignalTwice(t *testing.T) {
	g, c := newPair(t)
	for i := 0; i < 2; i++ {
		if err := c.Signal(15); err != nil {
			t.Fatal(err)
		}
	}
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.Signals) >= 2 })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Signals, []int{15, 15}) {
		t.Errorf("guest got signals %v, want [15 15]", r.Signals)
	}
}

func TestResize(t *testing.T) {
	g, c := newPair(t)
	want := []guest.WindowSize{{Rows: 24, Cols: 80}, {Rows: 50, Cols: 132}}
	for _, ws := range want {
		if err := c.Resize(ws); err != nil {
			t.Fatal(err)
		}
	}
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.Resizes) == len(want) })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Resizes, want) {
		t.Errorf("guest got sizes %v, want %v", r.Resizes, want)
	}
}

func TestStdinThenClose(t *testing.T) {
	g, c := newPair(t)
	for _, p := range []string{"ab", "", "c"} {
		if err := c.Stdin([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return r.StdinClosed })
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Stdin) != "abc" || r.StdinAfterClose != 0 {
		t.Errorf("guest got stdin %q (%d frames after its end)", r.Stdin, r.StdinAfterClose)
	}
	// An empty write sends no frame: the guest could not tell it from
	// nothing.
	want := []guest.FrameType{guest.FrameStdin, guest.FrameStdin, guest.FrameStdinClose}
	if !reflect.DeepEqual(r.Frames, want) {
		t.Errorf("guest got frames %v, want %v", r.Frames, want)
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name   string
		guest  func(g *guesttest.Guest)
		want   []guest.EventKind
		status guest.ExitStatus
		err    string // in the last event's Err; "" for none
		clErr  error  // what Client.Err wraps; nil for nil
	}{
		{
			name: "exit",
			guest: func(g *guesttest.Guest) {
				g.Stdout("out")
				g.Stderr("err")
				g.Healthy()
				g.Exit(guest.ExitStatus{Reason: guest.Exited, Code: 3})
				g.Stdout("after the exit")
			},
			want:   []guest.EventKind{guest.EventStdout, guest.EventStderr, guest.EventHealthy, guest.EventExit},
			status: guest.ExitStatus{Reason: guest.Exited, Code: 3},
		},
		{
			name: "signaled",
			guest: func(g *guesttest.Guest) {
				g.Exit(guest.ExitStatus{Reason: guest.Signaled, Signal: 9})
			},
			want:   []guest.EventKind{guest.EventExit},
			status: guest.ExitStatus{Reason: guest.Signaled, Signal: 9},
		},
		{
			name: "died mid-stream",
			guest: func(g *guesttest.Guest) {
				g.Stdout("partial")
				g.Die()
			},
			want: []guest.EventKind{guest.EventStdout, guest.EventEnd},
		},
		{
			name: "died inside a frame",
			guest: func(g *guesttest.Guest) {
				g.Write([]byte{byte(guest.FrameStdout), 0, 0, 0, 0, 0, 0, 9, 'a', 'b'})
				g.Die()
			},
			want:  []guest.EventKind{guest.EventEnd},
			err:   "unexpected EOF",
			clErr: io.ErrUnexpectedEOF,
		},
		{
			name: "unknown frame",
			guest: func(g *guesttest.Guest) {
				g.Stdout("x")
				g.Write([]byte{200, 0, 0, 0, 0, 0, 0, 0})
			},
			want:  []guest.EventKind{guest.EventStdout, guest.EventEnd},
			err:   "unknown frame type",
			clErr: guest.ErrUnknownFrame,
		},
		{
			name: "malformed exit",
			guest: func(g *guesttest.Guest) {
				g.Send(guest.FrameExit, []byte(`{"reason":"exited","code":"three"}`))
			},
			want: []guest.EventKind{guest.EventExit},
			err:  "guest exit status: decode *guest.ExitStatus",
		},
		{
			name: "exit with unknown field",
			guest: func(g *guesttest.Guest) {
				g.Send(guest.FrameExit, []byte(`{"reason":"exited","core":true}`))
			},
			want: []guest.EventKind{guest.EventExit},
			err:  "guest exit status: decode *guest.ExitStatus",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newPair(t)
			tt.guest(g)
			evs := drain(t, c)
			if got := kinds(evs); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("events %v, want %v", got, tt.want)
			}
			last := evs[len(evs)-1]
			switch {
			case tt.err == "" && last.Err != nil:
				t.Errorf("last event error %v, want none", last.Err)
			case tt.err != "" && (last.Err == nil || !strings.Contains(last.Err.Error(), tt.err)):
				t.Errorf("last event error %v, want one saying %q", last.Err, tt.err)
			}
			if last.Kind == guest.EventExit && last.Err == nil && last.Status != tt.status {
				t.Errorf("exit status %+v, want %+v", last.Status, tt.status)
			}
			if err := c.Err(); (tt.clErr == nil) != (err == nil) || tt.clErr != nil && !errors.Is(err, tt.clErr) {
				t.Errorf("Err() = %v, want %v", err, tt.clErr)
			}
			for _, ev := range evs {
				if ev.Kind == guest.EventStdout && len(ev.Data) == 0 {
					t.Errorf("empty stdout event")
				}
			}
		})
	}
}

func TestHelloFromDeadGuest(t *testing.T) {
	g, c := newPair(t)
	g.Stdout("kernel panic, say")
	g.Die()
	_, err := c.Hello(testCtx(t))
	var end *guest.EndError
	if !errors.As(err, &end) || !errors.Is(err, io.EOF) {
		t.Fatalf("Hello() error = %v, want an EndError of io.EOF", err)
	}
	// The end is remembered: a later call does not read again.
	if _, err := c.Hello(testCtx(t)); !errors.As(err, &end) {
		t.Fatalf("second Hello() error = %v, want an EndError", err)
	}
	if c.Err() != nil {
		t.Errorf("Err() = %v after a clean end, want nil", c.Err())
	}
}

func TestWarm(t *testing.T) {
	sample := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/init"}, Root: &guest.Root{Device: "root", FSType: "erofs"}}
	long := strings.Repeat("s", 40)
	tests := []struct {
		name   string
		answer guest.Warmed
		want   guest.Warmed
	}{
		{"plain", guest.Warmed{Steps: []string{"decode", "disk"}, Nanos: 5}, guest.Warmed{Steps: []string{"decode", "disk"}, Nanos: 5}},
		{"failed", guest.Warmed{Steps: []string{"decode"}, Error: "disk: no such device"}, guest.Warmed{Steps: []string{"decode"}, Error: "disk: no such device"}},
		{
			"bounded",
			guest.Warmed{Steps: []string{long, "b", "c", "d", "e", "f", "g", "h", "i", "j"}, Error: strings.Repeat("e", 300)},
			guest.Warmed{Steps: []string{long[:32], "b", "c", "d", "e", "f", "g", "h"}, Error: strings.Repeat("e", 256) + "..."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newPair(t)
			g.SetWarmed(tt.answer)
			g.Stdout("dropped")
			w, err := c.Warm(testCtx(t), sample)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(w, tt.want) {
				t.Errorf("Warm() = %+v, want %+v", w, tt.want)
			}
			if r := g.Received(); len(r.Warms) != 1 || !reflect.DeepEqual(r.Warms[0], *sample) {
				t.Errorf("guest got warm-ups %+v, want the sample", r.Warms)
			}
		})
	}
}

func TestWarmMalformed(t *testing.T) {
	g, c := newPair(t)
	// A guest that answers before it is asked, with garbage.
	g.Send(guest.FrameWarmed, []byte(`["decode"]`))
	_, err := c.Warm(testCtx(t), &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/init"}})
	if err == nil || !strings.Contains(err.Error(), "decode *guest.Warmed") {
		t.Fatalf("Warm() error = %v, want a decoding error", err)
	}
}

// A call given up on loses nothing: the frame its read brings goes to
// the next call.
func TestContextCancel(t *testing.T) {
	g, c := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Hello(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hello() on a silent guest: %v, want the deadline", err)
	}
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	if _, err := c.Warm(gone, &guest.Spec{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Warm() with an ended context: %v, want context.Canceled", err)
	}
	g.Hello(guest.ProtocolVersion)
	if _, err := c.Hello(testCtx(t)); err != nil {
		t.Fatalf("Hello() after a cancelled one: %v", err)
	}
}

// After Hello or Warm returned, the Client reads nothing more until a
// caller waits for a frame: another reader of the connection gets the
// guest's next frame.
func TestIdleClientReadsNothing(t *testing.T) {
	g, c := newPair(t)
	if _, err := c.Warm(testCtx(t), &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/init"}}); err != nil {
		t.Fatal(err)
	}
	g.Stdout("for the next reader")
	f, err := guest.NewConn(g.Host(), io.Discard).Recv()
	if err != nil || f.Type != guest.FrameStdout || string(f.Payload) != "for the next reader" {
		t.Fatalf("next reader got %s %q, %v", f.Type, f.Payload, err)
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	g := guesttest.New(t)
	c := guest.NewClient(g.Host())
	ch := c.Events()
	g.Stdout("unread")
	// Nobody reads the events: Close must still end the pump.
	time.Sleep(10 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := testCtx(t)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-ctx.Done():
			t.Fatal("Events not closed after Close")
		}
	}
	if _, err := c.Hello(ctx); !errors.Is(err, guest.ErrClosed) {
		t.Errorf("Hello() after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Warm(ctx, &guest.Spec{}); err == nil {
		t.Error("Warm() after Close succeeded")
	}
	if err := c.Signal(2); err == nil {
		t.Error("Signal() after Close succeeded")
	}
	if _, err := g.Wait(ctx, func(r guesttest.Received) bool { return r.Ended }); err != nil {
		t.Fatal(err)
	}
	g.Close()
	// Every goroutine of the Client and the fake has ended.
	for runtime.NumGoroutine() > before {
		select {
		case <-ctx.Done():
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close ends a call that waits for a frame.
func TestCloseEndsWait(t *testing.T) {
	_, c := newPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Hello(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, guest.ErrClosed) && !errors.As(err, new(*guest.EndError)) {
			t.Errorf("Hello() = %v, want ErrClosed or the stream's end", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("Hello did not return after Close")
	}
}

// hostile is a guest stream of fixed bytes; what the host writes is
// dropped.
type hostile struct {
	io.Reader
}

func (hostile) Write(p []byte) (int, error) { return len(p), nil }

// FuzzClient plays a hostile guest: whatever it sends, the Client must
// neither panic nor block, and its events must end with one last event.
func FuzzClient(f *testing.F) {
	frame := func(t guest.FrameType, payload string) []byte {
		var b bytes.Buffer
		_ = guest.NewConn(nil, &b).Send(t, []byte(payload))
		return b.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(cat(frame(guest.FrameReady, `{"version":6,"kernel":"6.1"}`), frame(guest.FrameStdout, "hi"), frame(guest.FrameExit, `{"reason":"exited"}`)))
	f.Add(cat(frame(guest.FrameStdout, "x"), frame(guest.FrameReady, `{"version":1}`)))
	f.Add(cat(frame(guest.FrameWarmed, `{"steps":["decode"],"ns":3}`), frame(guest.FrameHealthy, ""), frame(guest.FrameExit, `{"reason":`)))
	f.Add(cat(frame(guest.FrameReady, `{"version":6}`), frame(guest.FrameExit, `{"reason":"signaled","signal":9}`), frame(guest.FrameStdout, "late")))
	f.Add([]byte{byte(guest.FrameStdout), 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Add(cat(frame(guest.FrameReady, `{"version":7}`), frame(guest.FrameExecStdout, "\x00\x00\x00\x01out"), frame(guest.FrameStdout, "app"),
		frame(guest.FrameExecStderr, "\x00\x00\x00\x01err"), frame(guest.FrameExecExit, `{"id":1,"status":{"reason":"exited","code":2}}`), frame(guest.FrameExit, `{"reason":"exited"}`)))
	f.Add(cat(frame(guest.FrameExecExit, `{"id":1,"status":{"reason":"exited"}}`), frame(guest.FrameExecStdout, "\x00\x00\x00\x01late"), frame(guest.FrameExecExit, `{"id":1}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := guest.NewClient(hostile{bytes.NewReader(data)})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The first byte picks the conversation: a boot or a warm-up.
		if len(data) > 0 && data[0]%2 == 0 {
			_, _ = c.Hello(ctx)
		} else {
			_, _ = c.Warm(ctx, &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/init"}})
		}
		if ctx.Err() != nil {
			t.Fatal("the client blocked on a finite stream")
		}
		_ = c.Start(&guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/true"}})
		_ = c.Signal(15)
		// An exec, whose frames the pump demultiplexes: its events end
		// too, with one last event.
		execDone := make(chan string, 1)
		if p, err := c.Exec(&guest.ExecSpec{Args: []string{"/bin/sh"}}); err == nil {
			go func() {
				var lastKind guest.EventKind
				for ev := range p.Events() {
					if lastKind != 0 {
						execDone <- fmt.Sprintf("exec event %s after the last %s", ev.Kind, lastKind)
						return
					}
					if ev.Kind == guest.EventExit || ev.Kind == guest.EventEnd {
						lastKind = ev.Kind
					}
				}
				if lastKind == 0 {
					execDone <- "exec events ended without a last event"
					return
				}
				execDone <- ""
			}()
		} else {
			execDone <- ""
		}
		var last *guest.Event
		for ev := range events(ctx, t, c) {
			if last != nil {
				t.Fatalf("event %s after the last event %s", ev.Kind, last.Kind)
			}
			switch ev.Kind {
			case guest.EventStdout, guest.EventStderr:
				if len(ev.Data) > guest.MaxPayload {
					t.Fatalf("%s event of %d bytes", ev.Kind, len(ev.Data))
				}
			case guest.EventExit, guest.EventEnd:
				ev := ev
				last = &ev
			case guest.EventHealthy:
			default:
				t.Fatalf("unknown event kind %s", ev.Kind)
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the events did not end on a finite stream")
		}
		if last == nil {
			t.Fatal("events ended without a last event")
		}
		select {
		case msg := <-execDone:
			if msg != "" {
				t.Fatal(msg)
			}
		case <-ctx.Done():
			t.Fatal("the exec's events did not end on a finite stream")
		}
	})
}

// events yields c's events, failing t if they do not end by ctx.
func events(ctx context.Context, t *testing.T, c *guest.Client) <-chan guest.Event {
	out := make(chan guest.Event)
	go func() {
		defer close(out)
		ch := c.Events()
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					return
				}
				out <- ev
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// TestExitAcknowledged: the client acknowledges the exit status, whether
// it arrives as the application's end or while a call waits for another
// frame, so that arrow-init resets the machine only once its output is
// safe (guest.FrameExitAck).
func TestExitAcknowledged(t *testing.T) {
	tests := []struct {
		name string
		host func(t *testing.T, c *guest.Client)
	}{
		{"after the application", func(t *testing.T, c *guest.Client) {
			if _, err := c.Hello(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			drain(t, c)
		}},
		{"during a warm-up", func(t *testing.T, c *guest.Client) {
			if _, err := c.Hello(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
			defer cancel()
			_, _ = c.Warm(ctx, &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/true"}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newPair(t)
			g.Hello(guest.ProtocolVersion)
			g.Stdout("out")
			g.Exit(guest.ExitStatus{Reason: guest.Exited})
			tt.host(t, c)
			if _, err := g.Wait(testCtx(t), func(r guesttest.Received) bool {
				return slices.Contains(r.Frames, guest.FrameExitAck)
			}); err != nil {
				t.Fatalf("no exit acknowledgement: %v (received %+v)", err, g.Received())
			}
		})
	}
}
