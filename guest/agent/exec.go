//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// errExecEnded refuses output of an exec whose end was reported: the host
// may have given its ID to another exec since.
var errExecEnded = errors.New("exec ended")

// execTable is the processes exec'd next to the application, by their
// host-given ID, until their exit is reported.
type execTable struct {
	mu    sync.Mutex
	procs map[uint32]*execProc
}

// execProc is one exec'd process.
type execProc struct {
	id uint32
	p  *process

	// sendMu orders its output before its exit: once ended, no frame
	// about it goes.
	sendMu sync.Mutex
	ended  bool
}

// send sends output of the exec, unless its end was reported.
func (e *execProc) send(c *guest.Conn) func(guest.FrameType, []byte) error {
	return func(t guest.FrameType, b []byte) error {
		e.sendMu.Lock()
		defer e.sendMu.Unlock()
		if e.ended {
			return errExecEnded
		}
		return c.SendExecData(t, e.id, b)
	}
}

// handle acts on one exec frame from the host. A frame for an ID that
// runs no exec is an error, logged by the caller: the exec may have just
// ended.
func (t *execTable) handle(a *agent, f guest.Frame) error {
	switch f.Type {
	case guest.FrameExec:
		spec, err := guest.DecodeExecSpec(f.Payload)
		if err != nil {
			return err
		}
		t.start(a, spec)
		return nil
	case guest.FrameExecStdin, guest.FrameExecStdinClose:
		id, data, err := guest.SplitExecData(f.Payload)
		if err != nil {
			return err
		}
		e, err := t.lookup(id)
		if err != nil {
			return err
		}
		switch {
		case f.Type == guest.FrameExecStdin:
			e.p.writeStdin(data)
		case e.p.tty != nil:
			// On a terminal, end of input is the EOF character.
			e.p.writeStdin([]byte{4})
		default:
			e.p.closeInput()
		}
	case guest.FrameExecSignal:
		s, err := guest.DecodeExecSignal(f.Payload)
		if err != nil {
			return err
		}
		e, err := t.lookup(s.ID)
		if err != nil {
			return err
		}
		_ = unix.Kill(e.p.pid, unix.Signal(s.Number))
	case guest.FrameExecResize:
		r, err := guest.DecodeExecResize(f.Payload)
		if err != nil {
			return err
		}
		e, err := t.lookup(r.ID)
		if err != nil {
			return err
		}
		if e.p.tty != nil {
			_ = pty.Setsize(e.p.tty, &pty.Winsize{Rows: r.Size.Rows, Cols: r.Size.Cols})
		}
	}
	return nil
}

func (t *execTable) lookup(id uint32) (*execProc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.procs[id]; e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("no exec %d runs", id)
}

// start runs spec's process and reports its end, or why it could not
// start, as its exit status.
func (t *execTable) start(a *agent, spec *guest.ExecSpec) {
	e := &execProc{id: spec.ID}
	t.mu.Lock()
	switch {
	case t.procs[spec.ID] != nil:
		t.mu.Unlock()
		// Not reported: the exit would look like the running one's.
		a.log.Printf("exec %d: the ID is in use", spec.ID)
		return
	case len(t.procs) >= guest.MaxExecs:
		t.mu.Unlock()
		a.execExit(e, initFailed(fmt.Errorf("%d processes exec'd run already, the most a guest runs at once", guest.MaxExecs)))
		return
	}
	if t.procs == nil {
		t.procs = make(map[uint32]*execProc)
	}
	// Held until it started or failed to: its ID is taken meanwhile.
	t.procs[spec.ID] = e
	t.mu.Unlock()
	fail := func(st guest.ExitStatus) {
		t.remove(spec.ID)
		a.execExit(e, st)
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		fail(initFailed(fmt.Errorf("working directory %s: %w", dir, err)))
		return
	}
	ps := procSpec{
		args: spec.Args, env: withPath(spec.Env), dir: dir,
		cred:  syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: spec.Groups},
		stdin: spec.Stdin, tty: spec.TTY, size: spec.Size,
		stdout: guest.FrameExecStdout, stderr: guest.FrameExecStderr,
		send: e.send(a.conn),
	}
	// The reaper keeps an exit nobody waits for yet: one before wait is
	// not lost.
	p, err := a.spawn(ps)
	if err != nil {
		fail(startFailure(spec.Args[0], err))
		return
	}
	exited := a.reap.wait(p.pid)
	e.p = p
	a.debugf("exec %d: pid %d: %q", spec.ID, p.pid, spec.Args)
	go func() {
		st := statusOf(<-exited)
		p.closeInput()
		select {
		case <-p.drained:
		case <-time.After(drainTimeout):
			// A descendant holds its output open: what it writes
			// from now on is dropped, as the host hears of the end.
			a.log.Printf("exec %d: output still open %v after exit; dropping the rest", spec.ID, drainTimeout)
		}
		t.remove(spec.ID)
		a.execExit(e, st)
	}()
}

func (t *execTable) remove(id uint32) {
	t.mu.Lock()
	delete(t.procs, id)
	t.mu.Unlock()
}

// execExit reports e's end, its last frame.
func (a *agent) execExit(e *execProc, st guest.ExitStatus) {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.ended = true
	if err := a.conn.SendJSON(guest.FrameExecExit, guest.ExecExit{ID: e.id, Status: st}); err != nil {
		a.log.Printf("exec %d: reporting its exit: %v", e.id, err)
	}
}
