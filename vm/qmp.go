package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
)

// maxQMPLine bounds one QMP message; QEMU's replies to the commands Arrow
// sends are far smaller.
const maxQMPLine = 1 << 20

// QMP is a client of QEMU's machine protocol: JSON objects, one per line.
// Commands are executed one at a time; asynchronous events are delivered
// on [QMP.Events].
type QMP struct {
	conn    net.Conn
	mu      sync.Mutex // one command in flight
	replies chan qmpMessage
	events  chan QMPEvent
	readErr error
	closed  chan struct{}
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
	Return json.RawMessage `json:"return,omitempty"`
	Error  *QMPError       `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// NewQMP reads QEMU's greeting from conn and enters command mode.
func NewQMP(ctx context.Context, conn net.Conn) (*QMP, error) {
	q := &QMP{
		conn:    conn,
		replies: make(chan qmpMessage, 1),
		events:  make(chan QMPEvent, 64),
		closed:  make(chan struct{}),
	}
	greeting := make(chan error, 1)
	go q.readLoop(greeting)
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

func (q *QMP) readLoop(greeting chan<- error) {
	defer close(q.closed)
	sc := bufio.NewScanner(q.conn)
	sc.Buffer(make([]byte, 0, 4096), maxQMPLine)
	first := true
	for sc.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			q.readErr = fmt.Errorf("qmp: bad message: %w", err)
			break
		}
		switch {
		case first:
			first = false
			if m.QMP == nil {
				greeting <- errors.New("no QMP greeting")
				return
			}
			greeting <- nil
		case m.Event != "":
			select {
			case q.events <- QMPEvent{Name: m.Event, Data: m.Data}:
			default: // nobody listening: events are advisory
			}
		default:
			q.replies <- m
		}
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
// its reply.
func (q *QMP) execute(ctx context.Context, command string, args any, send func([]byte) error) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if err := send(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case m := <-q.replies:
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, m.Error)
		}
		return m.Return, nil
	case <-q.closed:
		return nil, fmt.Errorf("qmp %s: %w", command, q.readErr)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}
