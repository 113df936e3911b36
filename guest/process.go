package guest

import (
	"errors"
	"fmt"
	"sync"
)

// ErrTooManyExecs is returned by Exec when [MaxExecs] execs run already.
var ErrTooManyExecs = fmt.Errorf("guest: %d execs run already, the most one guest runs at once", MaxExecs)

// ErrAppEnded ends the events of the execs still running when the
// application exits: the VM stops with it, and them.
var ErrAppEnded = errors.New("the arrow's application exited: its VM stops, and the processes exec'd in it with it")

// execBuffer is how many events of one exec wait for its reader before
// the pump waits too. Frames carry at most 64 KiB of output from
// arrow-init, so that is a few MiB: a reader that lags more holds up the
// application's events as well, as the control connection is one stream.
const execBuffer = 64

// Process is a process exec'd in a started guest ([Client.Exec]): its own
// events and streams, next to the application's.
type Process struct {
	c      *Client
	id     uint32
	events chan Event
	// gone is closed by Close: the pump then drops the process's events
	// rather than wait for a reader who left.
	gone     chan struct{}
	goneOnce sync.Once
}

// ID is the exec's ID in the guest protocol.
func (p *Process) ID() uint32 { return p.id }

// Events returns the process's events: output (EventStdout, EventStderr)
// and last its exit (EventExit), or EventEnd when the guest's stream or
// the application ended first (Err says why); then the channel is closed.
func (p *Process) Events() <-chan Event { return p.events }

// Stdin sends b to the process's standard input; an empty b sends
// nothing.
func (p *Process) Stdin(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return p.c.conn.SendExecData(FrameExecStdin, p.id, b)
}

// CloseStdin ends the process's standard input (on a terminal: sends the
// EOF character).
func (p *Process) CloseStdin() error {
	return p.c.conn.SendExecData(FrameExecStdinClose, p.id, nil)
}

// Signal asks arrow-init to deliver signal n to the process.
func (p *Process) Signal(n int) error {
	return p.c.conn.SendJSON(FrameExecSignal, ExecSignal{ID: p.id, Number: n})
}

// Resize tells arrow-init the size of the process's terminal.
func (p *Process) Resize(ws WindowSize) error {
	return p.c.conn.SendJSON(FrameExecResize, ExecResize{ID: p.id, Size: ws})
}

// Close gives the process up: it is killed (SIGKILL) if it still runs,
// and its further events are dropped. Its Events channel is closed when
// its exit comes (or the stream ends). Close is idempotent.
func (p *Process) Close() {
	p.goneOnce.Do(func() {
		close(p.gone)
		// Only while it runs: once its exit came, its ID may be
		// another's. (IDs are given in turn, 65535 before one comes
		// again, so an exit in flight is no such risk.)
		p.c.mu.Lock()
		running := p.c.execs[p.id] == p
		p.c.mu.Unlock()
		if running {
			_ = p.Signal(9)
		}
	})
}

// Exec starts a further process in the guest (FrameExec) and returns its
// handle. spec's ID is set here, to a free one. The guest must run its
// application, and the Events pump must run (as the application's relay
// runs it): the process's events arrive through it.
func (c *Client) Exec(spec *ExecSpec) (*Process, error) {
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	c.Events() // the pump demultiplexes the exec's frames
	c.mu.Lock()
	if c.execsDone {
		c.mu.Unlock()
		return nil, ErrAppEnded
	}
	if len(c.execs) >= MaxExecs {
		c.mu.Unlock()
		return nil, ErrTooManyExecs
	}
	if c.execs == nil {
		c.execs = make(map[uint32]*Process)
	}
	id := c.lastExecID
	for {
		id = id%MaxExecID + 1
		if c.execs[id] == nil {
			break
		}
	}
	c.lastExecID = id
	p := &Process{c: c, id: id, events: make(chan Event, execBuffer), gone: make(chan struct{})}
	// Registered before the guest hears of it: its first frame may come
	// back at once.
	c.execs[id] = p
	c.mu.Unlock()
	s := *spec
	s.ID = id
	err := s.Validate()
	if err == nil {
		err = c.conn.SendJSON(FrameExec, &s)
	}
	if err != nil {
		c.unregister(id)
		return nil, err
	}
	return p, nil
}

// unregister forgets exec id, which never started.
func (c *Client) unregister(id uint32) {
	c.mu.Lock()
	p := c.execs[id]
	delete(c.execs, id)
	c.mu.Unlock()
	if p != nil {
		close(p.events)
	}
}

// execFrame hands an exec's frame to its process. Frames for an ID the
// host does not know (an exec given up, a broken guest) are dropped.
func (c *Client) execFrame(f Frame) {
	var (
		id   uint32
		ev   Event
		last bool
	)
	switch f.Type {
	case FrameExecStdout, FrameExecStderr:
		var data []byte
		var err error
		if id, data, err = SplitExecData(f.Payload); err != nil {
			return
		}
		kind := EventStdout
		if f.Type == FrameExecStderr {
			kind = EventStderr
		}
		ev = Event{Kind: kind, Data: data}
	case FrameExecExit:
		x, err := DecodeExecExit(f.Payload)
		if err != nil {
			return
		}
		id, ev, last = x.ID, Event{Kind: EventExit, Status: x.Status}, true
	default:
		return
	}
	c.mu.Lock()
	p := c.execs[id]
	if last {
		delete(c.execs, id)
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p.events <- ev:
	case <-p.gone:
	case <-c.closed:
	}
	if last {
		close(p.events)
	}
}

// endExecs ends the events of every exec still running, with err; no
// exec starts after it.
func (c *Client) endExecs(err error) {
	c.mu.Lock()
	ps := c.execs
	c.execs, c.execsDone = nil, true
	c.mu.Unlock()
	for _, p := range ps {
		select {
		case p.events <- Event{Kind: EventEnd, Err: err}:
		case <-p.gone:
		case <-c.closed:
		}
		close(p.events)
	}
}
