package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Machine is a running QEMU process and the host ends of its channels.
type Machine struct {
	cmd     *exec.Cmd
	control net.Conn
	qmpConn net.Conn

	qmpOnce sync.Once
	qmp     *QMP
	qmpErr  error

	console *tail
	stderr  *tail

	done    chan struct{}
	waitErr error
	copied  sync.WaitGroup
}

// Start launches QEMU for cfg. Console output is copied to console when it
// is not nil; the last few KiB are kept either way for [Machine.ConsoleTail].
// The QEMU process dies with the calling process (parent-death signal) and
// is not in the caller's process group, so a terminal's ^C reaches only
// Arrow, which decides what the guest gets.
func Start(ctx context.Context, cfg Config, console io.Writer) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.QEMU == "" {
		q, err := FindQEMU()
		if err != nil {
			return nil, err
		}
		cfg.QEMU = q
	}
	var hostEnds, guestEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	for i := 0; i < 3; i++ {
		h, g, err := socketpair()
		if err != nil {
			closeAll(hostEnds)
			closeAll(guestEnds)
			return nil, err
		}
		hostEnds = append(hostEnds, h)
		guestEnds = append(guestEnds, g)
	}
	defer closeAll(guestEnds) // QEMU holds its own copies once started

	m := &Machine{
		console: newTail(4<<10, console),
		stderr:  newTail(4<<10, nil),
		done:    make(chan struct{}),
	}
	m.cmd = exec.Command(cfg.QEMU, cfg.Args()...)
	m.cmd.ExtraFiles = guestEnds // fds 3, 4, 5: see fdConsole and friends
	m.cmd.Stdin = nil
	m.cmd.Stdout = m.stderr
	m.cmd.Stderr = m.stderr
	// Go sets the parent-death signal after switching credentials, so it
	// holds for a QEMU started as RunAs.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cfg.RunAs}
	if err := m.cmd.Start(); err != nil {
		closeAll(hostEnds)
		return nil, fmt.Errorf("start %s: %w", cfg.QEMU, err)
	}
	conns := make([]net.Conn, 0, 3)
	for _, f := range hostEnds {
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			_ = m.cmd.Process.Kill()
			_ = m.cmd.Wait()
			return nil, fmt.Errorf("wrap QEMU channel: %w", err)
		}
		conns = append(conns, c)
	}
	consoleConn := conns[0]
	m.control, m.qmpConn = conns[1], conns[2]
	m.copied.Add(1)
	go func() {
		defer m.copied.Done()
		_, _ = io.Copy(m.console, consoleConn)
		consoleConn.Close()
	}()
	go func() {
		err := m.cmd.Wait()
		// The console is fully read once QEMU is gone: its end closed.
		m.copied.Wait()
		m.waitErr = err
		close(m.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = m.Kill()
		case <-m.done:
		}
	}()
	return m, nil
}

// Control is the host end of the guest protocol port.
func (m *Machine) Control() net.Conn { return m.control }

// Pid is the QEMU process's ID.
func (m *Machine) Pid() int { return m.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Wait waits for QEMU to exit and returns its error, with what QEMU printed
// on its standard error when it failed.
func (m *Machine) Wait() error {
	<-m.done
	m.control.Close()
	m.qmpConn.Close()
	if m.waitErr != nil {
		if msg := strings.TrimSpace(m.stderr.String()); msg != "" {
			return fmt.Errorf("qemu: %w: %s", m.waitErr, msg)
		}
		return fmt.Errorf("qemu: %w", m.waitErr)
	}
	return nil
}

// Kill ends QEMU at once. It is safe to call at any time, also after exit.
func (m *Machine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	err := m.cmd.Process.Signal(syscall.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Shutdown asks QEMU to quit through QMP and waits up to timeout for it to
// exit, then kills it. The guest gets no chance to flush anything: use the
// guest protocol for a graceful stop.
func (m *Machine) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if q, err := m.QMP(ctx); err == nil {
		_, _ = q.Execute(ctx, "quit", nil)
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return m.Kill()
	}
}

// QMP returns the machine's QMP client, negotiating capabilities on first
// use so that runs that never need QMP do not pay for it.
func (m *Machine) QMP(ctx context.Context) (*QMP, error) {
	m.qmpOnce.Do(func() {
		m.qmp, m.qmpErr = NewQMP(ctx, m.qmpConn)
	})
	return m.qmp, m.qmpErr
}

// ConsoleTail returns the last KiBs the guest printed on its console,
// which is where a kernel panic's explanation is.
func (m *Machine) ConsoleTail() string { return m.console.String() }

// tail is an io.Writer that forwards to w (when set) and keeps the last n
// bytes written.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
	w   io.Writer
}

func newTail(n int, w io.Writer) *tail { return &tail{n: n, w: w} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	t.mu.Unlock()
	if t.w != nil {
		_, _ = t.w.Write(p) // a failing console sink must not stop the VM
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}

// socketpair returns two connected stream sockets, close-on-exec.
func socketpair() (*os.File, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest"), nil
}
