package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// PortName is the name of the virtio-serial port that carries the protocol.
// arrow-init finds its device by this name under /sys/class/virtio-ports.
const PortName = "arrow.0"

// ModulesDir is where the host puts kernel module files in the guest's
// initramfs, flat, by file name, for kernels that build Arrow's drivers as
// modules. It is not /lib/modules: on a usrmerged host /lib is a symlink
// in the guest too.
const ModulesDir = "/.arrow/modules"

// MaxPayload bounds a frame's payload. [Conn.Send] splits larger stream
// data into several frames; a peer announcing more is a protocol error.
const MaxPayload = 1 << 20

// headerSize is the length of a frame header: type (1), reserved (3),
// big-endian payload length (4).
const headerSize = 8

// FrameType says what a frame carries.
type FrameType uint8

// Frames sent by the host.
const (
	// FrameStart carries a JSON [Spec]: the application to run.
	FrameStart FrameType = 1 + iota
	// FrameStdin carries bytes for the application's standard input.
	FrameStdin
	// FrameStdinClose ends the application's standard input.
	FrameStdinClose
	// FrameSignal carries a JSON [Signal] to deliver to the application.
	FrameSignal
	// FrameResize carries a JSON [WindowSize] for the application's terminal.
	FrameResize
	// FrameWarm, sent to a pooled clone before any [FrameStart], carries a
	// sample JSON [Spec]: arrow-init runs the steps of a start that do not
	// depend on the application (see [Warmed]) and answers [FrameWarmed].
	FrameWarm
	// FrameExec carries a JSON [ExecSpec]: a further process to run in
	// the started guest, under an ID the host picked (arrow exec).
	FrameExec
	// FrameExecStdin carries an exec's ID (4 bytes, big-endian) and then
	// bytes for its standard input.
	FrameExecStdin
	// FrameExecStdinClose carries an exec's ID: its input ends.
	FrameExecStdinClose
	// FrameExecSignal carries a JSON [ExecSignal] for an exec.
	FrameExecSignal
	// FrameExecResize carries a JSON [ExecResize] for an exec's terminal.
	FrameExecResize
	// FrameExitAck (no payload) says the host received the [FrameExit],
	// and so every frame before it. arrow-init resets the machine only
	// then: a guest's write to its virtio-serial port returns before QEMU
	// has passed the bytes on, and QEMU drops what it still holds when the
	// guest resets, so a reset right after the exit status would cut off
	// the end of a large output whenever the host reads slowly.
	FrameExitAck
	// FrameFreeze (no payload) asks arrow-init to stop sending until
	// [FrameThaw]: the host is about to save the running guest as an
	// application snapshot. arrow-init answers [FrameFrozen], its last
	// frame before the thaw, so that no frame is cut in two by the save.
	FrameFreeze
	// FrameThaw carries a JSON [Thaw]: the guest runs again, as the
	// arrow that was frozen or as a new clone of its snapshot, whose
	// identity the Thaw gives. arrow-init answers [FrameThawed].
	FrameThaw
)

// Frames sent by the guest.
const (
	// FrameReady carries a JSON [Hello]: arrow-init is up and waits for a
	// [FrameStart].
	FrameReady FrameType = 64 + iota
	// FrameStdout carries bytes the application wrote to standard output
	// (or to its terminal, in terminal mode).
	FrameStdout
	// FrameStderr carries bytes the application wrote to standard error.
	FrameStderr
	// FrameExit carries a JSON [ExitStatus]; it is the last frame the
	// guest sends.
	FrameExit
	// FrameHealthy (no payload) says the application accepts TCP
	// connections on the spec's ReadyPort.
	FrameHealthy
	// FrameWarmed carries a JSON [Warmed]: the answer to [FrameWarm].
	FrameWarmed
	// FrameExecStdout and FrameExecStderr carry an exec's ID (4 bytes,
	// big-endian) and then bytes it wrote to standard output (or its
	// terminal) and standard error.
	FrameExecStdout
	FrameExecStderr
	// FrameExecExit carries a JSON [ExecExit]: the exec's exit status, the
	// last frame about it. Its ID is free for another exec afterwards.
	FrameExecExit
	// FrameFrozen carries a JSON [Frozen]: the answer to [FrameFreeze].
	// Without an error, arrow-init sends nothing more until [FrameThaw].
	FrameFrozen
	// FrameThawed carries a JSON [Thawed]: the answer to [FrameThaw].
	FrameThawed
)

// String names the frame type for logs and errors.
func (t FrameType) String() string {
	switch t {
	case FrameStart:
		return "start"
	case FrameStdin:
		return "stdin"
	case FrameStdinClose:
		return "stdin-close"
	case FrameSignal:
		return "signal"
	case FrameResize:
		return "resize"
	case FrameReady:
		return "ready"
	case FrameStdout:
		return "stdout"
	case FrameStderr:
		return "stderr"
	case FrameExit:
		return "exit"
	case FrameHealthy:
		return "healthy"
	case FrameWarm:
		return "warm"
	case FrameWarmed:
		return "warmed"
	case FrameExec:
		return "exec"
	case FrameExecStdin:
		return "exec-stdin"
	case FrameExecStdinClose:
		return "exec-stdin-close"
	case FrameExecSignal:
		return "exec-signal"
	case FrameExecResize:
		return "exec-resize"
	case FrameExitAck:
		return "exit-ack"
	case FrameExecStdout:
		return "exec-stdout"
	case FrameExecStderr:
		return "exec-stderr"
	case FrameExecExit:
		return "exec-exit"
	case FrameFreeze:
		return "freeze"
	case FrameThaw:
		return "thaw"
	case FrameFrozen:
		return "frozen"
	case FrameThawed:
		return "thawed"
	}
	return fmt.Sprintf("frame(%d)", uint8(t))
}

func (t FrameType) known() bool {
	return (t >= FrameStart && t <= FrameThaw) || (t >= FrameReady && t <= FrameThawed)
}

// ErrFrameTooLarge is returned when a peer announces a payload larger than
// [MaxPayload].
var ErrFrameTooLarge = errors.New("guest protocol: frame larger than the maximum payload")

// ErrUnknownFrame is returned for a frame type this version does not know.
var ErrUnknownFrame = errors.New("guest protocol: unknown frame type")

// Frame is one protocol message.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// Conn sends and receives frames over a byte stream. Send may be called from
// several goroutines at once; Recv must be called from one goroutine.
type Conn struct {
	r   io.Reader
	w   io.Writer
	mu  sync.Mutex // serializes whole frames on w
	hdr [headerSize]byte
}

// NewConn returns a Conn reading frames from r and writing them to w.
func NewConn(r io.Reader, w io.Writer) *Conn {
	return &Conn{r: r, w: w}
}

// Send writes one frame. Payloads larger than MaxPayload are split into
// several frames of the same type, which is only meaningful for stream data.
func (c *Conn) Send(t FrameType, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.send(t, payload)
}

// Hold makes every other sender wait until release is called, for a
// conversation no other frame may cut into: arrow-init holds its
// connection from [FrameFrozen] to [FrameThawed], which it sends with
// SendHeld.
func (c *Conn) Hold() (release func()) {
	c.mu.Lock()
	return c.mu.Unlock
}

// SendHeld is Send by the holder of the connection (see Hold).
func (c *Conn) SendHeld(t FrameType, payload []byte) error { return c.send(t, payload) }

// send writes one frame, c.mu held.
func (c *Conn) send(t FrameType, payload []byte) error {
	for {
		n := len(payload)
		if n > MaxPayload {
			n = MaxPayload
		}
		var hdr [headerSize]byte
		hdr[0] = byte(t)
		binary.BigEndian.PutUint32(hdr[4:], uint32(n))
		// One write per frame keeps frames whole on streams whose writes
		// may interleave at the device level.
		buf := make([]byte, 0, headerSize+n)
		buf = append(append(buf, hdr[:]...), payload[:n]...)
		if _, err := c.w.Write(buf); err != nil {
			return fmt.Errorf("send %s frame: %w", t, err)
		}
		payload = payload[n:]
		if len(payload) == 0 {
			return nil
		}
	}
}

// Recv reads the next frame. It returns io.EOF when the stream ends cleanly
// between frames and io.ErrUnexpectedEOF when it ends inside one.
func (c *Conn) Recv() (Frame, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return Frame{}, err
	}
	t := FrameType(c.hdr[0])
	n := binary.BigEndian.Uint32(c.hdr[4:])
	if !t.known() {
		return Frame{}, fmt.Errorf("%w: %d", ErrUnknownFrame, c.hdr[0])
	}
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, t, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %s frame: %w", t, err)
	}
	return Frame{Type: t, Payload: p}, nil
}
