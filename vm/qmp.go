package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// maxQMPLine bounds one QMP message; QEMU's replies to the commands Arrow
// sends are far smaller. A longer line ends the session (the monitor is
// then unusable and every command fails) rather than growing a buffer on
// behalf of a QEMU that may be under a guest's control.
const maxQMPLine = 1 << 20

// QMP is a client of QEMU's machine protocol: JSON objects, one per line.
// Commands are executed one at a time; asynchronous events are delivered
// on [QMP.Events].
//
// Every command carries an "id" that QEMU echoes in its reply, and a reply
// is handed only to the pending command with that id. QEMU runs in the
// jail next to a guest that may have taken it over, so the monitor's
// output is untrusted: a reply nobody asked for, one that arrives after
// its command gave up, a second greeting or a reply with a foreign id is
// dropped, so that no command ever receives another's reply.
type QMP struct {
	conn net.Conn
	mu   sync.Mutex // one command in flight
	// sendErr, guarded by mu, fails every command after a send failed.
	sendErr error
	events  chan QMPEvent
	readErr error // set before closed is closed
	closed  chan struct{}

	// pendingMu guards nextID and pending, shared by execute and
	// readLoop.
	pendingMu sync.Mutex
	nextID    uint64
	// pending maps the id of each command awaiting its reply to where
	// the reply goes (buffered, so readLoop never blocks on it).
	pending map[string]chan qmpMessage
}

// QMPEvent is an asynchronous QMP event such as SHUTDOWN or STOP.
type QMPEvent struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
}

// QMPError is an error QEMU returned for a command.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	ID     json.RawMessage `json:"id,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *QMPError       `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// NewQMP reads QEMU's greeting from conn and enters command mode.
func NewQMP(ctx context.Context, conn net.Conn) (*QMP, error) {
	return newQMP(ctx, conn, maxQMPLine)
}

// newQMP is NewQMP with a bound on the length of a message, which tests
// lower to reach it with small inputs.
func newQMP(ctx context.Context, conn net.Conn, maxLine int) (*QMP, error) {
	q := &QMP{
		conn:    conn,
		events:  make(chan QMPEvent, 64),
		closed:  make(chan struct{}),
		pending: make(map[string]chan qmpMessage),
	}
	greeting := make(chan error, 1)
	go q.readLoop(greeting, maxLine)
	select {
	case err := <-greeting:
		if err != nil {
			return nil, fmt.Errorf("qmp greeting: %w", err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp greeting: %w", ctx.Err())
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return q, nil
}

// readLoop reads messages until the connection fails or QEMU sends one
// that is not JSON, and routes each: the greeting (first message only),
// events, and replies to the pending command whose id they carry. It never
// blocks on a consumer, so a flood of events or replies cannot wedge it.
func (q *QMP) readLoop(greeting chan<- error, maxLine int) {
	defer close(q.closed)
	sc := bufio.NewScanner(q.conn)
	sc.Buffer(make([]byte, 0, min(4096, maxLine)), maxLine)
	first := true
	for sc.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			// Not a protocol we can resynchronise with: fail every
			// command from now on rather than guess.
			q.readErr = fmt.Errorf("qmp: bad message: %w", err)
			break
		}
		switch {
		case first:
			first = false
			if m.QMP == nil {
				greeting <- errors.New("no QMP greeting")
				q.readErr = errors.New("qmp: no greeting")
				return
			}
			greeting <- nil
		case m.QMP != nil:
			// A greeting out of place: nothing to do with it.
		case m.Event != "":
			select {
			case q.events <- QMPEvent{Name: m.Event, Data: m.Data}:
			default: // nobody listening: events are advisory
			}
		case m.Return != nil || m.Error != nil:
			q.deliver(m)
		}
		// Anything else (no return, error or event) is not a reply to
		// anything and is dropped.
	}
	if first {
		greeting <- errors.New("connection closed")
	}
	if q.readErr == nil {
		q.readErr = errors.New("qmp: connection closed")
		if err := sc.Err(); err != nil {
			q.readErr = fmt.Errorf("qmp: %w", err)
		}
	}
}

// deliver hands reply m to the pending command whose id it carries, and
// drops it when there is none.
func (q *QMP) deliver(m qmpMessage) {
	var id string
	if m.ID == nil || json.Unmarshal(m.ID, &id) != nil {
		return // not an id Arrow sent (Arrow's are strings)
	}
	q.pendingMu.Lock()
	ch, ok := q.pending[id]
	delete(q.pending, id) // a second reply with the id finds nobody
	q.pendingMu.Unlock()
	if ok {
		ch <- m // buffered for exactly this one reply
	}
}

// Events delivers asynchronous events. Events arriving while the channel
// is full are dropped.
func (q *QMP) Events() <-chan QMPEvent { return q.events }

// Execute runs one command and returns its "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	return q.execute(ctx, command, args, func(b []byte) error {
		_, err := q.conn.Write(b)
		return err
	})
}

// execute sends command with send, one command at a time, and waits for
// the reply that carries its id.
func (q *QMP) execute(ctx context.Context, command string, args any, send func([]byte) error) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	reply := make(chan qmpMessage, 1)
	q.pendingMu.Lock()
	q.nextID++
	id := "arrow-" + strconv.FormatUint(q.nextID, 10)
	q.pending[id] = reply
	q.pendingMu.Unlock()
	// Whatever happens, the id is no longer awaited: a late reply to a
	// command that gave up is dropped, not taken by the next command.
	defer func() {
		q.pendingMu.Lock()
		delete(q.pending, id)
		q.pendingMu.Unlock()
	}()
	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if q.sendErr != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, q.sendErr)
	}
	// A QEMU that stops reading must not hold the caller past ctx: the
	// write is cut by a deadline in the past when ctx ends.
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		q.conn.SetWriteDeadline(time.Unix(1, 0))
		close(cut)
	})
	err = send(append(b, '\n'))
	if !stop() {
		<-cut
		if err == nil {
			// The whole line went out before the deadline: the
			// connection is fine for the next command.
			q.conn.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		// Part of the line may be on the wire, so QEMU would read the
		// next command as the tail of this one: fail from now on.
		q.sendErr = fmt.Errorf("monitor unusable after a failed send: %w", err)
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case m := <-reply:
		return m.result(command)
	case <-q.closed:
		// The reply may have come just before the connection ended.
		select {
		case m := <-reply:
			return m.result(command)
		default:
		}
		return nil, fmt.Errorf("qmp %s: %w", command, q.readErr)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// result is what the command gets from its reply m.
func (m qmpMessage) result(command string) (json.RawMessage, error) {
	if m.Error != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, m.Error)
	}
	return m.Return, nil
}
