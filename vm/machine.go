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
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/jail"
	"golang.org/x/sys/unix"
)

// Machine is a running QEMU process and the host ends of its channels.
type Machine struct {
	cfg     Config // as started
	swaps   atomic.Uint64
	cmd     *exec.Cmd // QEMU, or the helper of its jail
	pid     int       // QEMU's
	control net.Conn
	qmpConn net.Conn

	qmpOnce sync.Once
	qmp     *QMP
	qmpErr  error

	console *tail
	stderr  *tail

	daemons []*virtiofsd
	exited  chan struct{} // closed once QEMU is reaped
	done    chan struct{} // closed once QEMU and every daemon are reaped
	waitErr error
	copied  sync.WaitGroup

	failMu     sync.Mutex
	daemonFail error // a virtiofsd that died under a running VM
}

// daemonGrace is how long a virtiofsd that exited gives QEMU to exit too
// before it counts as a failure: virtiofsd ends by itself when QEMU goes,
// sometimes before QEMU is reaped.
const daemonGrace = time.Second

// Start launches QEMU for cfg. Console output is copied to console when it
// is not nil; the last few KiB are kept either way for [Machine.ConsoleTail].
// The QEMU process dies with the calling process (parent-death signal) and
// is not in the caller's process group, so a terminal's ^C reaches only
// Arrow, which decides what the guest gets.
//
// Drive images are opened here, with the caller's credentials, and handed
// to QEMU open. Each virtiofs share gets a virtiofsd started here and
// supervised with QEMU: it is killed when QEMU exits, and QEMU is killed
// when it dies under a running VM (the guest's file system would hang).
func Start(ctx context.Context, cfg Config, console io.Writer) (m *Machine, err error) {
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
	var daemons []*virtiofsd
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll(hostEnds)
			for _, d := range daemons {
				d.kill()
				<-d.done
			}
		}
	}()
	defer func() { closeAll(guestEnds) }() // QEMU holds its own copies once started
	for i := 0; i < 3; i++ {
		h, g, err := socketpair()
		if err != nil {
			return nil, err
		}
		hostEnds = append(hostEnds, h)
		guestEnds = append(guestEnds, g)
	}
	// The kernel and initramfs reach QEMU as open files (fdKernel,
	// fdInitrd): QEMU runs as an unprivileged user that may not be able
	// to reach them by path (a data root of mode 0700, say).
	for _, p := range []string{cfg.Kernel, cfg.Initrd} {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("boot files: %w", err)
		}
		guestEnds = append(guestEnds, f)
	}
	for _, d := range cfg.Drives {
		f, err := openDrive(d)
		if err != nil {
			return nil, err
		}
		guestEnds = append(guestEnds, f) // see Config.driveFD
	}
	if cfg.Shares, err = resolveShares(cfg.Shares); err != nil {
		return nil, err
	}
	for _, s := range cfg.Shares {
		if s.FS != ShareVirtiofs {
			continue
		}
		bin := cfg.Virtiofsd
		if bin == "" {
			bin = DefaultVirtiofsd
		}
		if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("share %s: %w", s.Tag, ErrNoVirtiofsd)
		}
		listener, client, err := vhostUserPair()
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", s.Tag, err)
		}
		guestEnds = append(guestEnds, client) // see Config.shareFD
		d, err := startVirtiofsd(bin, s, listener, cfg.Jail)
		listener.Close() // virtiofsd has its own copy
		if err != nil {
			return nil, err
		}
		daemons = append(daemons, d)
	}
	var placeholders []*os.File // host ends of placeholder cards; see NIC.Placeholder
	defer func() {
		if err != nil {
			closeAll(placeholders)
		}
	}()
	for i, n := range cfg.NICs {
		if n.Placeholder {
			h, g, err := socketpair()
			if err != nil {
				return nil, err
			}
			placeholders = append(placeholders, h)
			guestEnds = append(guestEnds, g) // see Config.nicFD
			continue
		}
		if n.Tap == nil {
			continue
		}
		// A copy: QEMU's descriptors are closed here once it started,
		// and the caller's tap stays the caller's.
		fd, err := unix.FcntlInt(n.Tap.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("network card %d: tap device: %w", i, err)
		}
		guestEnds = append(guestEnds, os.NewFile(uintptr(fd), "tap")) // see Config.nicFD
	}
	if cfg.Memory != nil {
		f, err := openMemory(*cfg.Memory)
		if err != nil {
			return nil, err
		}
		guestEnds = append(guestEnds, f) // see Config.memoryFD
	}

	var jd *jailed
	if cfg.Jail != nil {
		if jd, err = cfg.Jail.lease(cfg); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				jd.release()
			}
		}()
	}

	m = &Machine{
		cfg:     cfg,
		console: newTail(4<<10, console),
		stderr:  newTail(4<<10, nil),
		daemons: daemons,
		exited:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	var hs *jail.Handshake
	if jd != nil {
		// fds 3...: see fdConsole and friends; the helper passes them on.
		if m.cmd, hs, err = cfg.jailCommand(jd, guestEnds); err != nil {
			return nil, err
		}
	} else {
		m.cmd = exec.Command(cfg.QEMU, cfg.Args()...)
		m.cmd.ExtraFiles = guestEnds // fds 3...: see fdConsole and friends
		m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	m.cmd.Stdin = nil
	m.cmd.Stdout = m.stderr
	m.cmd.Stderr = m.stderr
	// The parent-death signal fires when the *thread* that started QEMU
	// (or its jail's helper) exits, not the process, and the Go runtime
	// may retire threads: it is started and waited for on a goroutine
	// locked to its thread, which therefore lives exactly as long as it.
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := m.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- m.cmd.Wait()
	}()
	if err := <-started; err != nil {
		if hs != nil {
			hs.Close()
		}
		return nil, fmt.Errorf("start %s: %w", cfg.QEMU, err)
	}
	m.pid = m.cmd.Process.Pid
	if hs != nil {
		// Killing the helper, the jail's pid namespace init, ends QEMU.
		if m.pid, err = hs.Complete(m.cmd.Process.Pid); err != nil {
			_ = m.cmd.Process.Kill()
			<-waited
			if msg := strings.TrimSpace(m.stderr.String()); msg != "" && !strings.Contains(err.Error(), msg) {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return nil, err
		}
	}
	conns := make([]net.Conn, 0, 3)
	for _, f := range hostEnds {
		c, err := net.FileConn(f)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			_ = m.cmd.Process.Kill()
			<-waited
			return nil, fmt.Errorf("wrap QEMU channel: %w", err)
		}
		conns = append(conns, c)
	}
	closeAll(hostEnds) // the conns hold their own descriptors
	hostEnds = nil
	consoleConn := conns[0]
	m.control, m.qmpConn = conns[1], conns[2]
	m.copied.Add(1)
	go func() {
		defer m.copied.Done()
		_, _ = io.Copy(m.console, consoleConn)
		consoleConn.Close()
	}()
	go func() {
		err := <-waited
		jd.release()
		close(m.exited)
		closeAll(placeholders)
		// The console is fully read once QEMU is gone: its end closed.
		m.copied.Wait()
		// Nothing is left for the daemons to serve.
		for _, d := range m.daemons {
			d.kill()
			<-d.done
		}
		m.waitErr = err
		close(m.done)
	}()
	for _, d := range m.daemons {
		go m.supervise(d)
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = m.Kill()
		case <-m.done:
		}
	}()
	if cfg.Jail != nil {
		if err := m.publishUDP(ctx); err != nil {
			_ = m.Kill()
			<-m.done
			return nil, err
		}
	}
	return m, nil
}

// publishUDP publishes a jailed VM's UDP ports once QEMU runs as its uid.
//
// A port on QEMU's command line gets its socket while QEMU is still root,
// and slirp sends whatever the guest sends from the published guest port
// through that socket, to any address the guest names: the jail's host
// guard, which knows a VM's traffic by its uid, would not see it. Added
// now (hostfwd_add), the socket is the VM uid's, and guarded. TCP needs no
// such care: a guest cannot send through a listening socket.
func (m *Machine) publishUDP(ctx context.Context) error {
	for i, n := range m.cfg.NICs {
		if n.User == nil {
			continue
		}
		for _, f := range n.User.Forwards {
			if f.Proto != "udp" {
				continue
			}
			if err := m.AddForward(ctx, i, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// supervise kills the VM when d dies under it.
func (m *Machine) supervise(d *virtiofsd) {
	select {
	case <-m.exited:
		return
	case <-d.done:
	}
	select {
	case <-m.exited:
	case <-time.After(daemonGrace):
		m.failMu.Lock()
		if m.daemonFail == nil {
			m.daemonFail = d.failure()
		}
		m.failMu.Unlock()
		_ = m.Kill()
	}
}

// openDrive opens d's image the way QEMU will use it.
func openDrive(d Drive) (*os.File, error) {
	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("drive: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("drive: %w", err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("drive %s: not a file or a block device", d.Path)
	}
	return f, nil
}

// resolveShares returns shares with their paths resolved to real
// directories, checked again after resolution.
func resolveShares(shares []Share) ([]Share, error) {
	out := make([]Share, len(shares))
	for i, s := range shares {
		p, err := filepath.EvalSymlinks(s.Path)
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", s.Tag, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", s.Tag, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("share %s: %s is not a directory", s.Tag, p)
		}
		s.Path = p
		if err := s.validate(); err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Control is the host end of the guest protocol port.
func (m *Machine) Control() net.Conn { return m.control }

// Pid is the QEMU process's ID (in a jail, not its helper's).
func (m *Machine) Pid() int { return m.pid }

// Done is closed when QEMU has exited, and the virtiofsd processes serving
// its shares with it.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Wait waits for QEMU to exit and returns its error, with what QEMU printed
// on its standard error when it failed. A virtiofsd that died under the
// running VM (which was then killed) is an error too.
func (m *Machine) Wait() error {
	<-m.done
	m.control.Close()
	m.qmpConn.Close()
	m.failMu.Lock()
	daemonFail := m.daemonFail
	m.failMu.Unlock()
	if daemonFail != nil {
		return daemonFail
	}
	if m.waitErr != nil {
		msg := strings.TrimSpace(m.stderr.String())
		for _, d := range m.daemons {
			if out := strings.TrimSpace(d.stderr.String()); out != "" {
				msg += "\nvirtiofsd for share " + d.share.Tag + ": " + out
			}
		}
		if msg = strings.TrimSpace(msg); msg != "" {
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
	w := t.w
	t.mu.Unlock()
	if w != nil {
		_, _ = w.Write(p) // a failing console sink must not stop the VM
	}
	return len(p), nil
}

func (t *tail) setWriter(w io.Writer) {
	t.mu.Lock()
	t.w = w
	t.mu.Unlock()
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
