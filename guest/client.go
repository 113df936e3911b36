package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Agent is what the host asks of arrow-init (package guest/agent) over a
// VM's control connection. [Client] implements it over the real frame
// protocol; tests of the host's logic substitute their own, or drive a
// Client with the fake guest of package guest/guesttest.
type Agent interface {
	// Hello waits for arrow-init's announcement and checks its version.
	Hello(ctx context.Context) (Hello, error)
	// Warm has arrow-init exercise a start without an application.
	Warm(ctx context.Context, sample *Spec) (Warmed, error)
	// Start hands arrow-init the application.
	Start(spec *Spec) error
	// Signal, Resize, Stdin and CloseStdin forward to the application.
	Signal(n int) error
	Resize(ws WindowSize) error
	Stdin(p []byte) error
	CloseStdin() error
	// Events reports what the application does, until it exits or the
	// stream ends.
	Events() <-chan Event
	// Err says why the stream ended, once Events is closed.
	Err() error
	// Close ends the conversation and closes the connection.
	Close() error

	// Exec runs a further process in the started guest (arrow exec);
	// its events arrive through the Events pump, which must run.
	Exec(spec *ExecSpec) (*Process, error)

	// Freeze has arrow-init stop sending, for a save of the running
	// guest; Thaw lets it go on, as itself or as a new clone.
	Freeze(ctx context.Context) error
	Thaw(ctx context.Context, t *Thaw) error
}

// EventKind says what an [Event] reports.
type EventKind uint8

// Event kinds.
const (
	// EventStdout carries bytes the application wrote to standard output
	// (or to its terminal).
	EventStdout EventKind = 1 + iota
	// EventStderr carries bytes the application wrote to standard error.
	EventStderr
	// EventHealthy says the application accepts connections on the
	// spec's ReadyPort.
	EventHealthy
	// EventExit carries the application's exit status, or in Err why the
	// guest's report did not decode. It is the last event.
	EventExit
	// EventEnd says the stream ended without an exit status: the guest
	// died, or broke the protocol. Err says why, nil when the guest closed
	// the stream cleanly between frames. It is the last event.
	EventEnd
)

// String names the kind for logs and test failures.
func (k EventKind) String() string {
	switch k {
	case EventStdout:
		return "stdout"
	case EventStderr:
		return "stderr"
	case EventHealthy:
		return "healthy"
	case EventExit:
		return "exit"
	case EventEnd:
		return "end"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one thing the guest reported about the application.
type Event struct {
	Kind EventKind
	// Data is the output of EventStdout and EventStderr.
	Data []byte
	// Status is the exit status of EventExit, when Err is nil.
	Status ExitStatus
	// Err is, for EventExit, why the status did not decode; for EventEnd,
	// why the stream ended (nil when it ended cleanly).
	Err error
}

// ErrClosed is returned by a Client's calls once it is closed.
var ErrClosed = errors.New("guest: client closed")

// EndError is returned by a call that waited for a frame when the guest's
// stream ended (or broke) first. Its text is the reason's alone: callers
// say what they were waiting for.
type EndError struct {
	// Err is why: io.EOF when the guest closed the stream between frames,
	// a protocol error when it sent what this version does not accept.
	Err error
}

func (e *EndError) Error() string { return e.Err.Error() }
func (e *EndError) Unwrap() error { return e.Err }

// VersionError is returned by Hello when arrow-init speaks another
// protocol version than this host.
type VersionError struct {
	// Guest is the version arrow-init announced.
	Guest int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("arrow-init speaks protocol version %d, this arrow %d: rebuild both from the same source", e.Guest, ProtocolVersion)
}

// Client is the host's end of the conversation with one VM's arrow-init,
// and the only owner of that VM's control connection (vm.Machine.Control).
//
// It reads from the guest only while a call waits for a frame: Hello and
// Warm read until their answer, and the first call of Events starts
// reading until the application's exit. Frames the guest sends meanwhile
// wait in the connection, and a call given up (its context ended) leaves
// a read in flight whose frame the next call receives: nothing is lost
// or read twice. Only one call reads at a time; one waits for another.
//
// Sending (Start, Signal, ...) is independent of receiving and safe from
// several goroutines at once.
type Client struct {
	conn   *Conn
	closer io.Closer // nil when the connection cannot be closed

	// turn is held by the call that reads frames (Hello, Warm or the
	// Events pump), so that one frame goes to one of them.
	turn chan struct{}

	mu sync.Mutex
	// inflight, while a read runs, is where its result will arrive.
	inflight chan received
	// end is why the stream ended, once it did; reads are not retried.
	end error

	closeOnce sync.Once
	closed    chan struct{}

	eventsOnce sync.Once
	events     chan Event

	// execs are the exec'd processes by ID, guarded by mu, until their
	// exit; lastExecID is the ID given last, execsDone says the pump
	// ended them all.
	execs      map[uint32]*Process
	lastExecID uint32
	execsDone  bool

	// answers carries the guest's answers to Freeze and Thaw from the
	// Events pump, which reads every frame once the application runs;
	// pumpDone is closed when the pump ends.
	answers  chan Frame
	pumpDone chan struct{}
}

type received struct {
	f   Frame
	err error
}

var _ Agent = (*Client)(nil)

// NewClient returns a client speaking the frame protocol over rw, the
// host's end of a VM's control port. If rw is an io.Closer, Close closes
// it.
func NewClient(rw io.ReadWriter) *Client {
	c := &Client{
		conn:     NewConn(rw, rw),
		turn:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
		answers:  make(chan Frame, 1),
		pumpDone: make(chan struct{}),
	}
	if cl, ok := rw.(io.Closer); ok {
		c.closer = cl
	}
	return c
}

// Hello waits for arrow-init's hello (FrameReady) and checks that it
// speaks this host's [ProtocolVersion] (a [*VersionError] if not).
// Frames before the hello are dropped: nothing runs yet that could send
// them. The stream ending first is an [*EndError]; ctx ending, ctx.Err().
//
// A clone of a template does not say hello: its arrow-init said it in
// the template, before the snapshot.
func (c *Client) Hello(ctx context.Context) (Hello, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return Hello{}, err
	}
	defer release()
	for {
		f, err := c.next(ctx)
		if err != nil {
			return Hello{}, err
		}
		if f.Type != FrameReady {
			c.drop(f)
			continue
		}
		var h Hello
		if err := Decode(f.Payload, &h); err != nil {
			return Hello{}, fmt.Errorf("guest hello: %w", err)
		}
		if h.Version != ProtocolVersion {
			return Hello{}, &VersionError{Guest: h.Version}
		}
		return h, nil
	}
}

// Warm sends arrow-init a sample spec to exercise a start with
// (FrameWarm) and waits for its account (FrameWarmed), dropping other
// frames. The account comes from the guest, so what of it can reach logs
// is bounded: at most 8 steps of 32 bytes, an error of 256. A failed
// warm-up is a Warmed with Error set, not an error: the guest answered.
// The stream ending first is an [*EndError]; ctx ending, ctx.Err().
func (c *Client) Warm(ctx context.Context, sample *Spec) (Warmed, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return Warmed{}, err
	}
	defer release()
	if err := c.conn.SendJSON(FrameWarm, sample); err != nil {
		return Warmed{}, err
	}
	for {
		f, err := c.next(ctx)
		if err != nil {
			return Warmed{}, err
		}
		if f.Type == FrameWarmed {
			return decodeWarmed(f.Payload)
		}
		c.drop(f)
	}
}

// drop handles a frame a call that waits for another one passes over. An
// exit status is still acknowledged, so that arrow-init, failing before
// the host expected it to report, powers off at once rather than after
// waiting for the acknowledgement in vain; the stream then ends, and the
// call with it.
func (c *Client) drop(f Frame) {
	if f.Type == FrameExit {
		_ = c.conn.Send(FrameExitAck, nil)
	}
}

// decodeWarmed decodes and bounds the guest's answer to a warm-up.
func decodeWarmed(payload []byte) (Warmed, error) {
	var w Warmed
	if err := Decode(payload, &w); err != nil {
		return Warmed{}, err
	}
	const maxSteps, maxStep, maxLen = 8, 32, 256
	if len(w.Steps) > maxSteps {
		w.Steps = w.Steps[:maxSteps]
	}
	for i, st := range w.Steps {
		if len(st) > maxStep {
			w.Steps[i] = st[:maxStep]
		}
	}
	if len(w.Error) > maxLen {
		w.Error = w.Error[:maxLen] + "..."
	}
	return w, nil
}

// Start hands arrow-init the application (FrameStart). It need not wait
// for the hello: the port buffers the frame until the guest opens it,
// which saves a round trip through the emulated device on every start,
// so a cold boot sends it first and then awaits the hello.
func (c *Client) Start(spec *Spec) error { return c.conn.SendJSON(FrameStart, spec) }

// Signal asks arrow-init to deliver signal n to the application. Every
// call sends: a signal sent twice reaches the guest twice.
func (c *Client) Signal(n int) error { return c.conn.SendJSON(FrameSignal, Signal{Number: n}) }

// Resize tells arrow-init the size of the application's terminal.
func (c *Client) Resize(ws WindowSize) error { return c.conn.SendJSON(FrameResize, ws) }

// Stdin sends p to the application's standard input. An empty p sends
// nothing.
func (c *Client) Stdin(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	return c.conn.Send(FrameStdin, p)
}

// CloseStdin ends the application's standard input.
func (c *Client) CloseStdin() error { return c.conn.Send(FrameStdinClose, nil) }

// Events returns the application's events, in the order the guest sent
// them: output, health, and last its exit (EventExit) or the stream's end
// (EventEnd); then the channel is closed. Frames of no event (a late
// hello, say) are dropped. The first call starts reading; the channel is
// the same on every call. Close ends it early, without a last event.
func (c *Client) Events() <-chan Event {
	c.eventsOnce.Do(func() {
		c.events = make(chan Event)
		go c.pump(c.events)
	})
	return c.events
}

// pump turns frames into events until the exit or the stream's end, and
// hands the execs' frames to their processes.
func (c *Client) pump(out chan<- Event) {
	defer close(c.pumpDone)
	defer close(out)
	// The cases that end the stream end the execs with their reason;
	// the others (Close) with this one.
	defer c.endExecs(ErrClosed)
	release, err := c.acquire(context.Background())
	if err != nil {
		return // closed
	}
	defer release()
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-c.closed:
			return false
		}
	}
	for {
		f, err := c.next(context.Background())
		if err != nil {
			var end *EndError
			if errors.As(err, &end) {
				ev := Event{Kind: EventEnd}
				if !errors.Is(end.Err, io.EOF) {
					ev.Err = end.Err
				}
				// The execs first: they need no reader of the
				// application's events.
				c.endExecs(fmt.Errorf("the guest's stream ended: %w", end.Err))
				send(ev)
			}
			return
		}
		var ev Event
		switch f.Type {
		case FrameStdout:
			ev = Event{Kind: EventStdout, Data: f.Payload}
		case FrameStderr:
			ev = Event{Kind: EventStderr, Data: f.Payload}
		case FrameHealthy:
			ev = Event{Kind: EventHealthy}
		case FrameExit:
			// The guest's last word: nothing after it is read.
			ev = Event{Kind: EventExit}
			if err := Decode(f.Payload, &ev.Status); err != nil {
				ev = Event{Kind: EventExit, Err: fmt.Errorf("guest exit status: %w", err)}
			}
			// Everything before the exit status has arrived: let
			// arrow-init reset the machine (see FrameExitAck). A
			// failure means the guest is gone already.
			_ = c.conn.Send(FrameExitAck, nil)
			c.endExecs(ErrAppEnded)
			send(ev)
			return
		case FrameExecStdout, FrameExecStderr, FrameExecExit:
			c.execFrame(f)
			continue
		case FrameFrozen, FrameThawed:
			// One answer is awaited at a time (Freeze, then Thaw); a
			// second one unasked for is the guest's noise.
			select {
			case c.answers <- f:
			default:
			}
			continue
		default:
			continue
		}
		if !send(ev) {
			return
		}
	}
}

// Err says why the guest's stream ended: nil while it has not, or when it
// ended cleanly between frames or after the exit status.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.end == nil || errors.Is(c.end, io.EOF) {
		return nil
	}
	return c.end
}

// Close ends the Client: calls waiting for frames return ErrClosed, the
// Events channel is closed, and the connection is closed, which ends a
// read in flight. Close is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.closer != nil {
			err = c.closer.Close()
		}
	})
	return err
}

// acquire waits for the turn to read frames; release gives it back.
func (c *Client) acquire(ctx context.Context) (release func(), err error) {
	// Checked first, as a select picks at random among ready cases.
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case c.turn <- struct{}{}:
		return func() { <-c.turn }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, ErrClosed
	}
}

// next returns the guest's next frame; only the turn's holder calls it.
// The read runs in a goroutine of its own, so that ctx can give up on it:
// the goroutine then ends with the read, and its frame waits for the next
// call.
func (c *Client) next(ctx context.Context) (Frame, error) {
	c.mu.Lock()
	if c.end != nil {
		err := c.end
		c.mu.Unlock()
		return Frame{}, &EndError{Err: err}
	}
	ch := c.inflight
	if ch == nil {
		ch = make(chan received, 1)
		c.inflight = ch
		go func() {
			f, err := c.conn.Recv()
			ch <- received{f, err}
		}()
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		c.mu.Lock()
		c.inflight = nil
		if r.err != nil {
			c.end = r.err
		}
		c.mu.Unlock()
		if r.err != nil {
			return Frame{}, &EndError{Err: r.err}
		}
		return r.f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	case <-c.closed:
		return Frame{}, ErrClosed
	}
}

// Freeze asks arrow-init to stop sending until [Client.Thaw]
// (FrameFreeze) and waits for its answer (FrameFrozen), which is the last
// frame before the thaw: once it returns nil the guest may be saved with
// no frame of it half sent. It refuses while an exec runs (its host side
// could not follow the guest into a clone). The answer arrives through
// the Events pump, which it starts if need be.
func (c *Client) Freeze(ctx context.Context) error {
	c.Events()
	if err := c.conn.Send(FrameFreeze, nil); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	f, err := c.answer(ctx, FrameFrozen)
	if err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	var fr Frozen
	if err := Decode(f.Payload, &fr); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	if fr.Error != "" {
		return fmt.Errorf("freeze: the guest refused: %s", bounded(fr.Error))
	}
	return nil
}

// Thaw lets a frozen arrow-init go on (FrameThaw), as the same guest or,
// with t.Clone, as a new clone it first makes unique, and waits for its
// answer (FrameThawed).
func (c *Client) Thaw(ctx context.Context, t *Thaw) error {
	if err := t.Validate(); err != nil {
		return err
	}
	c.Events()
	if err := c.conn.SendJSON(FrameThaw, t); err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	f, err := c.answer(ctx, FrameThawed)
	if err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	var th Thawed
	if err := Decode(f.Payload, &th); err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	if th.Error != "" {
		return fmt.Errorf("thaw: %s", bounded(th.Error))
	}
	return nil
}

// answer waits for the pump to hand over a frame of type want.
func (c *Client) answer(ctx context.Context, want FrameType) (Frame, error) {
	for {
		select {
		case f := <-c.answers:
			if f.Type == want {
				return f, nil
			}
		case <-c.pumpDone:
			if err := c.Err(); err != nil {
				return Frame{}, &EndError{Err: err}
			}
			return Frame{}, ErrAppEnded
		case <-c.closed:
			return Frame{}, ErrClosed
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		}
	}
}

// bounded cuts a message from the guest to what a log may take.
func bounded(s string) string {
	const maxLen = 256
	if len(s) > maxLen {
		return s[:maxLen] + "..."
	}
	return s
}
