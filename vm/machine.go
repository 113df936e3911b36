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

	"github.com/arrowsys/arrow/api"
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
//
// The steps, in order: openFiles (nothing runs yet), startHelpers
// (virtiofsd, the jail's uid), spawn (QEMU) and supervise. A failing step
// leaves nothing of its own behind; Start undoes the steps before it.
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
	f, err := openFiles(&cfg)
	if err != nil {
		return nil, err
	}
	// QEMU holds its own copies once started, and needs none otherwise.
	defer f.guest.close()
	h, err := startHelpers(cfg, f)
	if err != nil {
		f.closeHost()
		return nil, err
	}
	m := &Machine{
		cfg:     cfg,
		console: newTail(4<<10, console),
		stderr:  newTail(4<<10, nil),
		daemons: h.daemons,
		exited:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	consoleConn, waited, err := m.spawn(f, h.jail)
	if err != nil {
		h.stop()
		f.closeHost()
		return nil, err
	}
	// From here the supervisor owns what is left of the helpers and the
	// placeholders: it releases them once QEMU is reaped, and m.done says
	// it did.
	m.supervise(ctx, consoleConn, waited, h.jail, f.placeholders)
	if cfg.Jail != nil {
		if err := m.publishUDP(ctx); err != nil {
			_ = m.Kill()
			<-m.done
			return nil, err
		}
	}
	return m, nil
}

// qemuFiles are what [Start] opens for a QEMU before anything runs: the
// files QEMU inherits, and the ends of its sockets that stay on the host.
type qemuFiles struct {
	guest guestFiles
	// host are Arrow's ends of the console, control and QMP channels,
	// in that order.
	host []*os.File
	// placeholders are Arrow's ends of placeholder cards' sockets, held
	// unread until QEMU exits; see NIC.Placeholder.
	placeholders []*os.File
	// listeners are virtiofsd's listening sockets, by Config.Shares;
	// nil where !Share.hasFD.
	listeners []*os.File
}

// closeHost closes the ends of f that stay on the host.
func (f *qemuFiles) closeHost() {
	closeFiles(f.host)
	closeFiles(f.placeholders)
	closeFiles(f.listeners)
}

// openFiles opens, with the caller's credentials, everything cfg's QEMU
// inherits: the socket pairs of its channels, the boot files, the drives'
// images, a connected vhost-user socket pair for each virtiofs share, the
// NICs' taps (copies) or placeholder sockets, and the memory file. It
// resolves cfg.Shares' paths on the way. Nothing is started: on error,
// closing what it opened is all there is to undo, and it does that.
func openFiles(cfg *Config) (_ *qemuFiles, err error) {
	f := &qemuFiles{
		guest: guestFiles{
			drives: make([]*os.File, len(cfg.Drives)),
			shares: make([]*os.File, len(cfg.Shares)),
			nics:   make([]*os.File, len(cfg.NICs)),
		},
		listeners: make([]*os.File, len(cfg.Shares)),
	}
	defer func() {
		if err != nil {
			f.guest.close()
			f.closeHost()
		}
	}()
	for _, end := range []**os.File{&f.guest.console, &f.guest.control, &f.guest.qmp} {
		h, g, err := socketpair()
		if err != nil {
			return nil, err
		}
		f.host = append(f.host, h)
		*end = g
	}
	// The kernel and initramfs reach QEMU as open files: QEMU runs as an
	// unprivileged user that may not be able to reach them by path (a
	// data root of mode 0700, say).
	for _, b := range []struct {
		path string
		end  **os.File
	}{{cfg.Kernel, &f.guest.kernel}, {cfg.Initrd, &f.guest.initrd}} {
		if *b.end, err = os.Open(b.path); err != nil {
			return nil, fmt.Errorf("boot files: %w", err)
		}
	}
	for i, d := range cfg.Drives {
		if f.guest.drives[i], err = openDrive(d); err != nil {
			return nil, err
		}
	}
	if cfg.Shares, err = resolveShares(cfg.Shares); err != nil {
		return nil, err
	}
	for i, s := range cfg.Shares {
		if !s.hasFD() {
			continue
		}
		// Checked before the socket pair is made, so that a missing
		// virtiofsd is reported as such.
		if fi, err := os.Stat(cfg.virtiofsd()); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("share %s: %w", s.Tag, ErrNoVirtiofsd)
		}
		if f.listeners[i], f.guest.shares[i], err = vhostUserPair(); err != nil {
			return nil, fmt.Errorf("share %s: %w", s.Tag, err)
		}
	}
	for i, n := range cfg.NICs {
		switch {
		case n.Placeholder:
			h, g, err := socketpair()
			if err != nil {
				return nil, err
			}
			f.placeholders = append(f.placeholders, h)
			f.guest.nics[i] = g
		case n.Tap != nil:
			// A copy: QEMU's descriptors are closed here once it
			// started, and the caller's tap stays the caller's.
			fd, err := unix.FcntlInt(n.Tap.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("network card %d: tap device: %w", i, err)
			}
			f.guest.nics[i] = os.NewFile(uintptr(fd), "tap")
		}
	}
	if cfg.Memory != nil {
		if f.guest.memory, err = openMemory(*cfg.Memory); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// virtiofsd is the virtiofsd binary c's shares are served by.
func (c Config) virtiofsd() string {
	if c.Virtiofsd == "" {
		return DefaultVirtiofsd
	}
	return c.Virtiofsd
}

// helpers are what a QEMU needs running or held beside it: a virtiofsd
// for each virtiofs share, and in a jail the lease of QEMU's uid.
type helpers struct {
	daemons []*virtiofsd
	jail    *jailed // nil without a jail
}

// stop ends the helpers of a QEMU that never ran.
func (h *helpers) stop() {
	h.jail.release()
	for _, d := range h.daemons {
		d.kill()
		<-d.done
	}
}

// startHelpers starts a virtiofsd on each listening socket of f and, in a
// jail, leases QEMU's uid. It closes f's listeners, which the daemons
// have their own copies of. On error nothing it started is left.
func startHelpers(cfg Config, f *qemuFiles) (*helpers, error) {
	defer closeFiles(f.listeners) // those not reached below
	h := &helpers{}
	for i, s := range cfg.Shares {
		if f.listeners[i] == nil {
			continue
		}
		d, err := startVirtiofsd(cfg.virtiofsd(), s, f.listeners[i], cfg.Jail)
		f.listeners[i].Close() // virtiofsd has its own copy
		f.listeners[i] = nil
		if err != nil {
			h.stop()
			return nil, err
		}
		h.daemons = append(h.daemons, d)
	}
	if cfg.Jail != nil {
		jd, err := cfg.Jail.lease(cfg)
		if err != nil {
			h.stop()
			return nil, err
		}
		h.jail = jd
	}
	return h, nil
}

// spawn starts m's QEMU on f's files, under the jail's helper when jd is
// set, and wraps the host ends of its channels: it sets m.cmd, m.pid,
// m.control and m.qmpConn, and returns the console's connection and the
// channel QEMU's Wait result arrives on. On error no QEMU is left; f's
// host ends and the helpers stay the caller's to undo.
func (m *Machine) spawn(f *qemuFiles, jd *jailed) (consoleConn net.Conn, waited <-chan error, err error) {
	cfg := m.cfg
	// The command line names each file by the descriptor the table gave
	// it, and the table's list is what the child inherits: one order.
	table, fds := cfg.number(f.guest)
	args := cfg.args(fds)
	var hs *jail.Handshake
	if jd != nil {
		// The helper passes its descriptors 3... on to QEMU as they are.
		if m.cmd, hs, err = cfg.jailCommand(jd, args, table.list()); err != nil {
			return nil, nil, err
		}
	} else {
		m.cmd = exec.Command(cfg.QEMU, args...)
		m.cmd.ExtraFiles = table.list()
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
	wait := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := m.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		wait <- m.cmd.Wait()
	}()
	if err := <-started; err != nil {
		if hs != nil {
			hs.Close()
		}
		return nil, nil, fmt.Errorf("start %s: %w", cfg.QEMU, err)
	}
	m.pid = m.cmd.Process.Pid
	if hs != nil {
		// Killing the helper, the jail's pid namespace init, ends QEMU.
		if m.pid, err = hs.Complete(m.cmd.Process.Pid); err != nil {
			_ = m.cmd.Process.Kill()
			<-wait
			if msg := strings.TrimSpace(m.stderr.String()); msg != "" && !strings.Contains(err.Error(), msg) {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return nil, nil, err
		}
	}
	conns := make([]net.Conn, 0, len(f.host))
	for _, h := range f.host {
		c, err := net.FileConn(h)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			_ = m.cmd.Process.Kill()
			<-wait
			return nil, nil, fmt.Errorf("wrap QEMU channel: %w", err)
		}
		conns = append(conns, c)
	}
	closeFiles(f.host) // the conns hold their own descriptors
	f.host = nil
	m.control, m.qmpConn = conns[1], conns[2]
	return conns[0], wait, nil
}

// supervise runs a started QEMU's life on goroutines of its own: it
// copies the console, reaps QEMU, then releases the jail's lease and the
// placeholders, ends the daemons once the console is fully read, and
// closes m.done; it kills QEMU when a daemon dies under it or ctx ends.
func (m *Machine) supervise(ctx context.Context, consoleConn net.Conn, waited <-chan error, jd *jailed, placeholders []*os.File) {
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
		closeFiles(placeholders)
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
		go m.superviseDaemon(d)
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = m.Kill()
		case <-m.done:
		}
	}()
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
			if f.Protocol() != api.UDP {
				continue
			}
			if err := m.AddForward(ctx, i, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// superviseDaemon kills the VM when d dies under it.
func (m *Machine) superviseDaemon(d *virtiofsd) {
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
