// Package guesttest is a fake arrow-init for tests of the host's side:
// it speaks the real frame protocol of package guest over one end of a
// net.Pipe, records what the host sends, and says and does what a test
// tells it to, when it tells it to. Tests of guest.Client and of the code
// that drives one (run's relay, the template package) use it instead of a
// VM.
//
// The guest's frames are queued and written by a goroutine of the fake's
// own, as the virtio-serial port buffers them: a test can script the
// guest's whole part before the host reads any of it.
package guesttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/arrowsys/arrow/guest"
)

// Received is what the fake guest got from the host so far.
type Received struct {
	// Frames are the types of every frame, in order.
	Frames []guest.FrameType
	// Starts are the specs of FrameStart, Warms those of FrameWarm.
	Starts []guest.Spec
	Warms  []guest.Spec
	// Signals are the signal numbers of FrameSignal, in order.
	Signals []int
	// Resizes are the sizes of FrameResize, in order.
	Resizes []guest.WindowSize
	// Stdin is the concatenated input of FrameStdin; StdinClosed says a
	// FrameStdinClose came (StdinAfterClose counts input frames after it).
	Stdin           []byte
	StdinClosed     bool
	StdinAfterClose int
	// Execs are the specs of FrameExec, in order; ExecStdin is the
	// input of each exec by ID, ExecStdinClosed the IDs whose input
	// ended, ExecSignals and ExecResizes what FrameExecSignal and
	// FrameExecResize asked, in order.
	Execs           []guest.ExecSpec
	ExecStdin       map[uint32][]byte
	ExecStdinClosed map[uint32]bool
	ExecSignals     []guest.ExecSignal
	ExecResizes     []guest.ExecResize
	// Thaws are the FrameThaw payloads, in order (a FrameFreeze is in
	// Frames alone).
	Thaws []guest.Thaw
	// Ended says the host's stream ended; Err is why, when it was not a
	// clean end (a frame that did not decode is an error too).
	Ended bool
	Err   error
}

// clone returns a copy that shares no slices with r.
func (r *Received) clone() Received {
	c := *r
	c.Frames = append([]guest.FrameType(nil), r.Frames...)
	c.Starts = append([]guest.Spec(nil), r.Starts...)
	c.Warms = append([]guest.Spec(nil), r.Warms...)
	c.Signals = append([]int(nil), r.Signals...)
	c.Resizes = append([]guest.WindowSize(nil), r.Resizes...)
	c.Stdin = append([]byte(nil), r.Stdin...)
	c.Execs = append([]guest.ExecSpec(nil), r.Execs...)
	c.ExecSignals = append([]guest.ExecSignal(nil), r.ExecSignals...)
	c.ExecResizes = append([]guest.ExecResize(nil), r.ExecResizes...)
	c.ExecStdin = make(map[uint32][]byte, len(r.ExecStdin))
	for id, b := range r.ExecStdin {
		c.ExecStdin[id] = append([]byte(nil), b...)
	}
	c.ExecStdinClosed = make(map[uint32]bool, len(r.ExecStdinClosed))
	for id, v := range r.ExecStdinClosed {
		c.ExecStdinClosed[id] = v
	}
	return c
}

// Guest is a fake arrow-init. Its methods are safe from several
// goroutines.
type Guest struct {
	host, end net.Conn

	mu      sync.Mutex
	got     Received
	changed chan struct{} // closed and replaced when got changes
	warmed  *guest.Warmed // the answer to FrameWarm; nil: the default

	outMu  sync.Mutex
	out    [][]byte // frames to write; nil entry: close the pipe
	outSig chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	done      sync.WaitGroup
}

// New starts a fake guest; t's cleanup closes it. Give [Guest.Host] to
// guest.NewClient. The guest answers FrameWarm by itself (see
// [Guest.SetWarmed]) and otherwise only records and waits for cues.
func New(t testing.TB) *Guest {
	host, end := net.Pipe()
	g := &Guest{
		host: host, end: end,
		changed: make(chan struct{}),
		outSig:  make(chan struct{}, 1),
		closed:  make(chan struct{}),
	}
	g.done.Add(2)
	go g.receive()
	go g.write()
	t.Cleanup(g.Close)
	return g
}

// Host is the host's end of the control connection.
func (g *Guest) Host() net.Conn { return g.host }

// Close closes both ends at once, dropping frames not yet written, and
// waits for the fake's goroutines.
func (g *Guest) Close() {
	g.closeOnce.Do(func() {
		close(g.closed)
		g.end.Close()
		g.host.Close()
	})
	g.done.Wait()
}

// Hello says arrow-init is ready, speaking protocol version.
func (g *Guest) Hello(version int) {
	g.SendJSON(guest.FrameReady, guest.Hello{Version: version, Kernel: "6.1.0-fake"})
}

// Stdout and Stderr send application output.
func (g *Guest) Stdout(s string) { g.Send(guest.FrameStdout, []byte(s)) }
func (g *Guest) Stderr(s string) { g.Send(guest.FrameStderr, []byte(s)) }

// Healthy says the application accepts connections on its ready port.
func (g *Guest) Healthy() { g.Send(guest.FrameHealthy, nil) }

// Exit reports the application's exit status.
func (g *Guest) Exit(st guest.ExitStatus) { g.SendJSON(guest.FrameExit, st) }

// ExecStdout and ExecStderr send output of exec id.
func (g *Guest) ExecStdout(id uint32, s string) { g.execData(guest.FrameExecStdout, id, s) }
func (g *Guest) ExecStderr(id uint32, s string) { g.execData(guest.FrameExecStderr, id, s) }

func (g *Guest) execData(t guest.FrameType, id uint32, s string) {
	var b bytes.Buffer
	if err := guest.NewConn(nil, &b).SendExecData(t, id, []byte(s)); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	g.queue(b.Bytes())
}

// ExecExit reports exec id's exit status.
func (g *Guest) ExecExit(id uint32, st guest.ExitStatus) {
	g.SendJSON(guest.FrameExecExit, guest.ExecExit{ID: id, Status: st})
}

// Die closes the guest's end once the frames queued before it are
// written, as a VM that stops would end the stream.
func (g *Guest) Die() { g.queue(nil) }

// SetWarmed sets the answer to FrameWarm; by default the guest answers
// that it decoded the sample.
func (g *Guest) SetWarmed(w guest.Warmed) {
	g.mu.Lock()
	g.warmed = &w
	g.mu.Unlock()
}

// Send queues one frame of type t; a payload above guest.MaxPayload is
// split as guest.Conn splits it.
func (g *Guest) Send(t guest.FrameType, payload []byte) {
	var b bytes.Buffer
	if err := guest.NewConn(nil, &b).Send(t, payload); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	g.queue(b.Bytes())
}

// SendJSON queues v as one frame of type t, without checking what it is:
// a test may send the host what a broken guest would.
func (g *Guest) SendJSON(t guest.FrameType, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("guesttest: %v", err))
	}
	g.Send(t, b)
}

// Write queues raw bytes, which need not be frames.
func (g *Guest) Write(p []byte) { g.queue(append([]byte(nil), p...)) }

func (g *Guest) queue(b []byte) {
	g.outMu.Lock()
	g.out = append(g.out, b)
	g.outMu.Unlock()
	select {
	case g.outSig <- struct{}{}:
	default:
	}
}

// write writes queued frames in order until Die or Close.
func (g *Guest) write() {
	defer g.done.Done()
	for {
		select {
		case <-g.outSig:
		case <-g.closed:
			return
		}
		g.outMu.Lock()
		batch := g.out
		g.out = nil
		g.outMu.Unlock()
		for _, b := range batch {
			if b == nil {
				g.end.Close()
				return
			}
			if _, err := g.end.Write(b); err != nil {
				return
			}
		}
	}
}

// receive records the host's frames until its stream ends.
func (g *Guest) receive() {
	defer g.done.Done()
	conn := guest.NewConn(g.end, io.Discard)
	for {
		f, err := conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				err = nil
			}
			g.record(func(r *Received) { r.Ended, r.Err = true, err })
			return
		}
		if err := g.handle(f); err != nil {
			g.record(func(r *Received) { r.Frames = append(r.Frames, f.Type); r.Err = err })
			continue
		}
	}
}

// handle records one frame from the host and answers a warm-up.
func (g *Guest) handle(f guest.Frame) error {
	var rec func(*Received)
	switch f.Type {
	case guest.FrameStart, guest.FrameWarm:
		var s guest.Spec
		if err := guest.Decode(f.Payload, &s); err != nil {
			return err
		}
		if f.Type == guest.FrameStart {
			rec = func(r *Received) { r.Starts = append(r.Starts, s) }
		} else {
			rec = func(r *Received) { r.Warms = append(r.Warms, s) }
			// Answered once recorded, so that a host that has the
			// answer finds the warm-up among what the guest received.
			defer g.answerWarm()
		}
	case guest.FrameSignal:
		var s guest.Signal
		if err := guest.Decode(f.Payload, &s); err != nil {
			return err
		}
		rec = func(r *Received) { r.Signals = append(r.Signals, s.Number) }
	case guest.FrameResize:
		var ws guest.WindowSize
		if err := guest.Decode(f.Payload, &ws); err != nil {
			return err
		}
		rec = func(r *Received) { r.Resizes = append(r.Resizes, ws) }
	case guest.FrameStdin:
		rec = func(r *Received) {
			r.Stdin = append(r.Stdin, f.Payload...)
			if r.StdinClosed {
				r.StdinAfterClose++
			}
		}
	case guest.FrameStdinClose:
		rec = func(r *Received) { r.StdinClosed = true }
	case guest.FrameExec:
		e, err := guest.DecodeExecSpec(f.Payload)
		if err != nil {
			return err
		}
		rec = func(r *Received) { r.Execs = append(r.Execs, *e) }
	case guest.FrameExecStdin, guest.FrameExecStdinClose:
		id, data, err := guest.SplitExecData(f.Payload)
		if err != nil {
			return err
		}
		if f.Type == guest.FrameExecStdin {
			rec = func(r *Received) {
				if r.ExecStdin == nil {
					r.ExecStdin = make(map[uint32][]byte)
				}
				r.ExecStdin[id] = append(r.ExecStdin[id], data...)
			}
		} else {
			rec = func(r *Received) {
				if r.ExecStdinClosed == nil {
					r.ExecStdinClosed = make(map[uint32]bool)
				}
				r.ExecStdinClosed[id] = true
			}
		}
	case guest.FrameExecSignal:
		sig, err := guest.DecodeExecSignal(f.Payload)
		if err != nil {
			return err
		}
		rec = func(r *Received) { r.ExecSignals = append(r.ExecSignals, sig) }
	case guest.FrameExecResize:
		rs, err := guest.DecodeExecResize(f.Payload)
		if err != nil {
			return err
		}
		rec = func(r *Received) { r.ExecResizes = append(r.ExecResizes, rs) }
	case guest.FrameExitAck, guest.FrameFreeze:
		rec = func(*Received) {}
	case guest.FrameThaw:
		var t guest.Thaw
		if err := guest.Decode(f.Payload, &t); err != nil {
			return err
		}
		rec = func(r *Received) { r.Thaws = append(r.Thaws, t) }
	default:
		return fmt.Errorf("guesttest: the host sent a %s frame, which only a guest sends", f.Type)
	}
	g.record(func(r *Received) {
		r.Frames = append(r.Frames, f.Type)
		rec(r)
	})
	return nil
}

func (g *Guest) answerWarm() {
	g.mu.Lock()
	w := guest.Warmed{Steps: []string{"decode"}, Nanos: 1000}
	if g.warmed != nil {
		w = *g.warmed
	}
	g.mu.Unlock()
	g.SendJSON(guest.FrameWarmed, w)
}

func (g *Guest) record(fn func(*Received)) {
	g.mu.Lock()
	fn(&g.got)
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// Received returns what the host sent so far.
func (g *Guest) Received() Received {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.clone()
}

// Wait waits until cond holds of what the host sent, and returns that.
// It fails when ctx ends first, saying what had come.
func (g *Guest) Wait(ctx context.Context, cond func(Received) bool) (Received, error) {
	for {
		g.mu.Lock()
		r, changed := g.got.clone(), g.changed
		g.mu.Unlock()
		if cond(r) {
			return r, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return r, fmt.Errorf("guesttest: waiting for the host (got frames %v): %w", r.Frames, ctx.Err())
		}
	}
}
