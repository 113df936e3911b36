package containerdshim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/fifo"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/run"
)

// forever, in seconds, stands in for run's own stop timeout: containerd
// (ctr task kill, the kubelet) times the stop and sends SIGKILL itself.
const forever = 100 * 365 * 24 * 3600.0

// container is one task: its VM (run.Handle), its init process and its
// exec processes, and what it holds on the host.
type container struct {
	id, bundle string
	h          *run.Handle
	pid        int           // the VM's process: stable for the task's life
	mounted    string        // the root file system's mount point, once mounted
	group      *cgroup.Group // the VM's cgroup
	limits     cgroup.Limits // the group's, as Update changes them
	memoryMiB  int           // the VM's memory
	netCleanup func()        // releases the pod network's attachment
	netns      *os.File      // the pod's network namespace, held open while attached

	// A pod sandbox's pause process, instead of h (sandbox.go), its end
	// (closed once reaped) and its exit status then.
	sandbox     *exec.Cmd
	sandboxDone chan struct{}
	sandboxExit uint32
	init        *process

	mu     sync.Mutex
	execs  map[string]*process
	paused bool
	// pauseMu serialises the QMP commands that pause and resume.
	pauseMu sync.Mutex
}

// release gives back what the task held on the host: the VM's record,
// the root file system's mount, the cgroup and the pod network. The VM
// is dead or was never launched.
func (c *container) release(log io.Writer) {
	if c.init != nil {
		c.init.closeStdio()
	}
	if c.mounted != "" {
		if err := unmountAll(c.mounted); err != nil {
			fmt.Fprintf(log, "containerd-shim-arrow: %s: %v\n", c.id, err)
		} else {
			c.mounted = ""
		}
	}
	if c.group != nil {
		if err := removeGroup(context.Background(), c.group); err != nil {
			fmt.Fprintf(log, "containerd-shim-arrow: %s: %v\n", c.id, err)
		}
		c.group = nil
	}
	if c.netCleanup != nil {
		c.netCleanup()
		c.netCleanup = nil
	}
	if c.netns != nil {
		_ = c.netns.Close()
		c.netns = nil
	}
	_ = os.Remove(c.bundle + "/" + vmFile)
}

// stop ends what runs the task: its VM, or a pod sandbox's pause
// process.
func (c *container) stop() {
	if c.sandbox != nil {
		c.stopSandbox()
		return
	}
	if c.h != nil {
		c.h.Close()
	}
}

func (c *container) isPaused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

// pause stops (on) or continues (off) the VM's virtual CPUs.
func (c *container) pause(ctx context.Context, on bool) error {
	if c.isSandboxTask() {
		return errors.New("a pod sandbox has no VM to pause")
	}
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	if c.isPaused() == on {
		if on {
			return errors.New("paused already")
		}
		return errors.New("not paused")
	}
	var err error
	if on {
		err = c.h.Pause(ctx)
	} else {
		err = c.h.Resume(ctx)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.paused = on
	c.mu.Unlock()
	return nil
}

// metrics are the task's cgroup usage as containerd's cgroups v2 metrics
// type (io.containerd.cgroups.v2.Metrics), whatever the host's cgroup
// version: a subset, what package cgroup reads (memory usage and limit,
// CPU time, tasks, OOM kills).
func (c *container) metrics() (*anypb.Any, error) {
	if c.isSandboxTask() {
		return nil, errors.New("a pod sandbox has no VM: its containers' tasks have the stats")
	}
	if c.group == nil {
		return nil, errors.New("the task has no cgroup")
	}
	st, err := c.group.Stats()
	if err != nil {
		return nil, err
	}
	m := &v2stats.Metrics{
		Pids:         &v2stats.PidsStat{Current: uint64(max(st.Pids, 0)), Limit: run.VMPids},
		CPU:          &v2stats.CPUStat{UsageUsec: uint64(st.CPUUsage.Microseconds())},
		Memory:       &v2stats.MemoryStat{Usage: uint64(max(st.MemoryBytes, 0)), UsageLimit: uint64(max(st.MemoryLimit, 0))},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: st.OOMKills},
	}
	return typeurl.MarshalAnyToProto(m)
}

// process is a task's init process or one exec process: its stdio (the
// FIFOs containerd made) and its state.
type process struct {
	c                                 *container
	execID                            string
	terminal                          bool
	stdinPath, stdoutPath, stderrPath string

	// The FIFOs, once open.
	stdin          io.ReadCloser
	stdout, stderr io.WriteCloser
	// stdinW ends the init process's input (CloseIO).
	stdinW *io.PipeWriter
	// sigs and resize reach the init process through run's relay.
	sigs   chan os.Signal
	resize chan guest.WindowSize

	eo   run.ExecOptions // an exec's
	proc *guest.Process  // an exec's, once started

	mu       sync.Mutex
	state    task.Status
	exit     uint32
	exitedAt time.Time
	done     chan struct{}
}

type processState struct {
	status   task.Status
	exit     uint32
	exitedAt time.Time
}

func newProcess(c *container, execID string, terminal bool, stdin, stdout, stderr string) *process {
	return &process{c: c, execID: execID, terminal: terminal,
		stdinPath: stdin, stdoutPath: stdout, stderrPath: stderr,
		state: task.Status_CREATED, done: make(chan struct{})}
}

func (p *process) snapshot() processState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return processState{p.state, p.exit, p.exitedAt}
}

// setState moves the process from one state to another, if it is in the
// first.
func (p *process) setState(from, to task.Status) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != from {
		return false
	}
	p.state = to
	return true
}

// finish records the process's end, once; false if it had ended before.
func (p *process) finish(code uint32) bool {
	p.mu.Lock()
	if p.state == task.Status_STOPPED {
		p.mu.Unlock()
		return false
	}
	p.state, p.exit, p.exitedAt = task.Status_STOPPED, code, time.Now()
	p.mu.Unlock()
	p.closeStdio()
	close(p.done)
	return true
}

// waitDone waits at most d for the process's end; it says whether it came.
func (p *process) waitDone(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// openStdio opens the FIFOs containerd made for the process. They are
// opened without waiting for the other side (containerd's client may be
// gone: a detached task's output then goes nowhere, as runc's does).
func (p *process) openStdio(ctx context.Context) error {
	var err error
	if p.stdinPath != "" {
		if p.stdin, err = fifo.OpenFifo(ctx, p.stdinPath, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			return fmt.Errorf("stdin %s: %w", p.stdinPath, err)
		}
	}
	if p.stdoutPath != "" {
		if p.stdout, err = fifo.OpenFifo(ctx, p.stdoutPath, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err != nil {
			p.closeStdio()
			return fmt.Errorf("stdout %s: %w", p.stdoutPath, err)
		}
	}
	if p.stderrPath != "" && !p.terminal {
		if p.stderr, err = fifo.OpenFifo(ctx, p.stderrPath, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err != nil {
			p.closeStdio()
			return fmt.Errorf("stderr %s: %w", p.stderrPath, err)
		}
	}
	return nil
}

func (p *process) closeStdio() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range []io.Closer{p.stdin, p.stdout, p.stderr} {
		if c != nil {
			_ = c.Close()
		}
	}
	if p.stdinW != nil {
		_ = p.stdinW.Close()
	}
}

// out and errOut are where the process's streams go: its FIFOs, or
// nowhere. A write that fails (nobody reads any more) drops the output
// rather than holding up the guest.
func (p *process) out() io.Writer {
	if p.stdout == nil {
		return io.Discard
	}
	return &dropWriter{w: p.stdout}
}

func (p *process) errOut() io.Writer {
	switch {
	case p.stderr != nil:
		return &dropWriter{w: p.stderr}
	case p.terminal:
		return p.out()
	}
	return io.Discard
}

// message writes Arrow's own words about the process to its stderr (its
// terminal with one), where `ctr run` shows them.
func (p *process) message(format string, a ...any) {
	fmt.Fprintf(p.errOut(), format, a...)
}

// initOptions wires the init process's streams, signals and terminal into
// the run's options.
func (p *process) initOptions(o *run.Options) {
	o.Out, o.Err = p.out(), p.errOut()
	o.StopTimeout = forever
	p.sigs = make(chan os.Signal, 8)
	o.Signals = p.sigs
	if p.stdin != nil {
		pr, pw := io.Pipe()
		p.stdinW = pw
		o.In = pr
		go func() {
			_, err := io.Copy(pw, p.stdin)
			pw.CloseWithError(err)
		}()
	}
	if o.TTY {
		p.resize = make(chan guest.WindowSize, 1)
		o.Resize = p.resize
		o.Size = guest.WindowSize{Rows: 24, Cols: 80}
	}
}

// signal forwards sig to the init process (run's relay delivers it).
func (p *process) signal(sig os.Signal) {
	select {
	case p.sigs <- sig:
	case <-p.done:
	case <-time.After(killGrace):
	}
}

// resizeTo sets the process's terminal size; for the init process the
// latest size wins over an older one not yet relayed.
func (p *process) resizeTo(rows, cols uint16) error {
	ws := guest.WindowSize{Rows: rows, Cols: cols}
	if p.execID != "" {
		if p.proc == nil {
			p.eo.Size = ws
			return nil
		}
		return p.proc.Resize(ws)
	}
	for {
		select {
		case p.resize <- ws:
			return nil
		default:
		}
		select {
		case <-p.resize:
		default:
		}
	}
}

// closeStdin ends the process's standard input.
func (p *process) closeStdin() {
	if p.execID != "" {
		if p.proc != nil {
			_ = p.proc.CloseStdin()
		}
		return
	}
	p.mu.Lock()
	w := p.stdinW
	p.mu.Unlock()
	if w != nil {
		_ = w.Close()
	}
}

// dropWriter writes to w until a write fails, then drops everything.
type dropWriter struct {
	mu     sync.Mutex
	w      io.Writer
	broken bool
}

func (d *dropWriter) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.broken {
		if _, err := d.w.Write(b); err != nil {
			d.broken = true
		}
	}
	return len(b), nil
}

// execOptions translates an exec's OCI process into run's terms.
func execOptions(ps *specs.Process, terminal, stdin bool) (run.ExecOptions, error) {
	if len(ps.Args) == 0 || ps.Args[0] == "" {
		return run.ExecOptions{}, errors.New("process.args: nothing to run")
	}
	if len(ps.Args)+len(ps.Env) > 4096 {
		return run.ExecOptions{}, errors.New("process: more than 4096 args and env entries")
	}
	eo := run.ExecOptions{Args: ps.Args, Env: ps.Env, Dir: ps.Cwd, Stdin: stdin, TTY: terminal,
		User: fmt.Sprintf("%d:%d", ps.User.UID, ps.User.GID)}
	if ps.ConsoleSize != nil && ps.ConsoleSize.Height > 0 && ps.ConsoleSize.Width > 0 &&
		ps.ConsoleSize.Height <= 65535 && ps.ConsoleSize.Width <= 65535 {
		eo.Size = guest.WindowSize{Rows: uint16(ps.ConsoleSize.Height), Cols: uint16(ps.ConsoleSize.Width)}
	}
	return eo, nil
}

// startExec runs an exec process in the task's guest and relays it.
func (s *service) startExec(c *container, p *process) error {
	if c.init.snapshot().status != task.Status_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "task %s is not running", c.id)
	}
	if c.isPaused() {
		return status.Errorf(codes.FailedPrecondition, "task %s is paused", c.id)
	}
	if !p.setState(task.Status_CREATED, task.Status_RUNNING) {
		return status.Errorf(codes.FailedPrecondition, "exec %s: not in the created state", p.execID)
	}
	fail := func(err error) error {
		s.exited(c, p, run.ExitArrowFailed)
		return err
	}
	if err := p.openStdio(s.ctx); err != nil {
		return fail(status.Errorf(codes.Internal, "exec %s: %v", p.execID, err))
	}
	proc, err := c.h.Exec(s.ctx, p.eo)
	if err != nil {
		return fail(status.Errorf(codes.FailedPrecondition, "exec %s: %v", p.execID, err))
	}
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()
	if p.stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := p.stdin.Read(buf)
				if n > 0 && proc.Stdin(buf[:n]) != nil {
					return
				}
				if err != nil {
					_ = proc.CloseStdin()
					return
				}
			}
		}()
	}
	go func() {
		out, errOut := p.out(), p.errOut()
		code := uint32(run.ExitArrowFailed)
		for ev := range proc.Events() {
			switch ev.Kind {
			case guest.EventStdout:
				_, _ = out.Write(ev.Data)
			case guest.EventStderr:
				_, _ = errOut.Write(ev.Data)
			case guest.EventExit:
				code = uint32(ev.Status.ExitCode())
				if ev.Status.Reason != guest.Exited && ev.Status.Reason != guest.Signaled && ev.Status.Message != "" {
					fmt.Fprintf(errOut, "arrow: %s\n", ev.Status.Message)
				}
			case guest.EventEnd:
				if errors.Is(ev.Err, guest.ErrAppEnded) {
					// Killed with the VM, as runc's exec with its container.
					code = 128 + uint32(syscall.SIGKILL)
				} else if ev.Err != nil {
					fmt.Fprintf(errOut, "arrow: %v\n", ev.Err)
				}
			}
		}
		proc.Close()
		s.exited(c, p, code)
	}()
	return nil
}
