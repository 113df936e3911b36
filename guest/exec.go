package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
)

// Limits on execs, so that neither side of the protocol can make the other
// allocate without end. Both sides enforce them: the host does not send
// more, and arrow-init refuses what exceeds them.
const (
	// MaxExecs bounds the execs that run at once in one guest.
	MaxExecs = 16
	// MaxExecID is the largest exec ID; IDs run from 1 to it, and the
	// host reuses one once its exec's [FrameExecExit] came.
	MaxExecID = 1<<16 - 1
	// execIDSize is the length of the ID that prefixes an exec's stream
	// frames.
	execIDSize = 4
	// MaxExecData is the most stream data one exec frame carries.
	MaxExecData = MaxPayload - execIDSize
)

// ErrExecID is returned for an exec frame whose ID is out of range or
// missing.
var ErrExecID = errors.New("guest protocol: bad exec ID")

// ExecSpec is a further process to run in a started guest, next to the
// application (arrow exec, docker exec): in the same root file system,
// with its own credentials, environment, working directory and streams.
type ExecSpec struct {
	// ID names the exec in its stream frames; the host picks it, from 1
	// to [MaxExecID], among the IDs not in use.
	ID uint32 `json:"id"`
	// Args is the program and its arguments; Args[0] is looked up in the
	// PATH of Env when it has no slash.
	Args []string `json:"args"`
	// Env is the process's whole environment, KEY=value; arrow-init adds
	// the default PATH when it has none, as for the application.
	Env []string `json:"env,omitempty"`
	// Dir is the absolute working directory, which must exist; empty is
	// "/".
	Dir string `json:"dir,omitempty"`
	// UID, GID and Groups are the process's credentials.
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	// Stdin says whether the host forwards standard input; without it
	// the process reads from /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY runs the process on a pseudo-terminal of its own; its output
	// then arrives as [FrameExecStdout] only.
	TTY bool `json:"tty,omitempty"`
	// Size is the initial terminal size, with TTY.
	Size WindowSize `json:"size,omitempty"`
}

// Validate reports the first problem that makes e unusable.
func (e *ExecSpec) Validate() error {
	switch {
	case e.ID == 0 || e.ID > MaxExecID:
		return fmt.Errorf("exec: %w: %d, want 1 to %d", ErrExecID, e.ID, MaxExecID)
	case len(e.Args) == 0 || e.Args[0] == "":
		return errors.New("exec: no program to run")
	case len(e.Args) > maxArgs:
		return fmt.Errorf("exec: %d arguments, at most %d", len(e.Args), maxArgs)
	case len(e.Env) > maxEnv:
		return fmt.Errorf("exec: %d environment variables, at most %d", len(e.Env), maxEnv)
	case len(e.Groups) > maxGroups:
		return fmt.Errorf("exec: %d groups, at most %d", len(e.Groups), maxGroups)
	case e.Dir != "" && !path.IsAbs(e.Dir):
		return fmt.Errorf("exec: working directory %.80q is not absolute", e.Dir)
	case len(e.Dir) > maxPathLen:
		return fmt.Errorf("exec: working directory of %d bytes, at most %d", len(e.Dir), maxPathLen)
	}
	return checkStrings("exec", append([]string{e.Dir}, e.Args...), e.Env)
}

// ExecSignal asks the guest to deliver a signal to an exec.
type ExecSignal struct {
	ID     uint32 `json:"id"`
	Number int    `json:"signal"`
}

// ExecResize is the new size of an exec's terminal.
type ExecResize struct {
	ID   uint32     `json:"id"`
	Size WindowSize `json:"size"`
}

// ExecExit is an exec's exit status. NotFound and NotExecutable mean what
// they mean for the application; InitFailed, that arrow-init could not
// start it (a missing working directory, too many execs...).
type ExecExit struct {
	ID     uint32     `json:"id"`
	Status ExitStatus `json:"status"`
}

// DecodeExecSpec decodes and validates a [FrameExec] payload.
func DecodeExecSpec(payload []byte) (*ExecSpec, error) {
	var e ExecSpec
	if err := Decode(payload, &e); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// DecodeExecSignal decodes a [FrameExecSignal] payload and checks its ID
// and signal number.
func DecodeExecSignal(payload []byte) (ExecSignal, error) {
	var s ExecSignal
	if err := Decode(payload, &s); err != nil {
		return ExecSignal{}, err
	}
	if err := checkExecID(s.ID); err != nil {
		return ExecSignal{}, err
	}
	if s.Number <= 0 || s.Number > 64 {
		return ExecSignal{}, fmt.Errorf("exec %d: signal %d: want 1 to 64", s.ID, s.Number)
	}
	return s, nil
}

// DecodeExecResize decodes a [FrameExecResize] payload and checks its ID.
func DecodeExecResize(payload []byte) (ExecResize, error) {
	var r ExecResize
	if err := Decode(payload, &r); err != nil {
		return ExecResize{}, err
	}
	if err := checkExecID(r.ID); err != nil {
		return ExecResize{}, err
	}
	return r, nil
}

// maxExitMessage bounds the message of an exec's exit status the host
// keeps: it comes from the guest.
const maxExitMessage = 1024

// DecodeExecExit decodes a [FrameExecExit] payload, checks its ID and
// bounds its message.
func DecodeExecExit(payload []byte) (ExecExit, error) {
	var e ExecExit
	if err := Decode(payload, &e); err != nil {
		return ExecExit{}, err
	}
	if err := checkExecID(e.ID); err != nil {
		return ExecExit{}, err
	}
	if len(e.Status.Message) > maxExitMessage {
		e.Status.Message = e.Status.Message[:maxExitMessage] + "..."
	}
	return e, nil
}

func checkExecID(id uint32) error {
	if id == 0 || id > MaxExecID {
		return fmt.Errorf("%w: %d, want 1 to %d", ErrExecID, id, MaxExecID)
	}
	return nil
}

// SplitExecData splits the payload of an exec's stream frame
// ([FrameExecStdin], [FrameExecStdinClose], [FrameExecStdout],
// [FrameExecStderr]) into the exec's ID and its data.
func SplitExecData(payload []byte) (uint32, []byte, error) {
	if len(payload) < execIDSize {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes has none", ErrExecID, len(payload))
	}
	id := binary.BigEndian.Uint32(payload)
	if err := checkExecID(id); err != nil {
		return 0, nil, err
	}
	return id, payload[execIDSize:], nil
}

// SendExecData sends p as stream frames of type t for exec id, split so
// that every frame carries the ID; an empty p sends one frame with the ID
// alone (as [FrameExecStdinClose] is).
func (c *Conn) SendExecData(t FrameType, id uint32, p []byte) error {
	for {
		n := min(len(p), MaxExecData)
		buf := make([]byte, execIDSize+n)
		binary.BigEndian.PutUint32(buf, id)
		copy(buf[execIDSize:], p[:n])
		if err := c.Send(t, buf); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}
