//go:build linux

package agent

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// drainTimeout bounds how long output is awaited once the application and
// everything it left behind are dead; only a descendant that escaped
// kill(-1) (none can) would hold a stream open longer.
const drainTimeout = 2 * time.Second

// defaultPath is the PATH an application gets when its spec has none, as in
// docker.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// run starts the application described by spec, relays its streams and
// signals until it exits, and returns its exit status.
func (a *agent) run(spec *guest.Spec) guest.ExitStatus {
	t0 := time.Now()
	if err := prepare(spec); err != nil {
		return initFailed(err)
	}
	a.debugf("prepared in %v", time.Since(t0))
	// From here on the reaper reaps every child, the application, its
	// orphans and the execs, and hands each exit to whoever waits for it.
	a.reap = newReaper()
	defer a.reap.close()

	p, err := a.start(spec)
	if err != nil {
		return startFailure(spec.Args[0], err)
	}
	a.serving = true
	go a.serveHost(p)
	a.debugf("started pid %d in %v", p.pid, time.Since(t0))
	if spec.ReadyPort > 0 {
		done := make(chan struct{})
		defer close(done)
		go a.awaitPort(spec.ReadyPort, done)
	}
	if spec.ReadyOnInput {
		done := make(chan struct{})
		defer close(done)
		go a.awaitInputRead(p.pid, done)
	}

	status := statusOf(<-a.reap.wait(p.pid))
	a.debugf("exited %+v after %v", status, time.Since(t0))
	// The application is gone; so is the VM's reason to exist. Kill what
	// it left behind (daemonized children, say) so their copies of the
	// output streams close and nothing outlives the exit report. The
	// reaper stops first: an exec killed here ends with the application
	// (the host reports it so), not with an exit status of its own that
	// would race the application's.
	a.reap.close()
	_ = unix.Kill(-1, unix.SIGKILL)
	reapAll()
	p.closeInput()
	select {
	case <-p.drained:
	case <-time.After(drainTimeout):
		a.log.Printf("output still open %v after exit; dropping the rest", drainTimeout)
	}
	a.debugf("drained after %v", time.Since(t0))
	return status
}

// process is the running application and its plumbing.
type process struct {
	pid     int
	stdin   *os.File   // write end of stdin, or the terminal; nil without stdin
	tty     *os.File   // terminal master in terminal mode
	outputs []*os.File // the read ends of its output, which pumps read
	drained chan struct{}

	stdinMu     sync.Mutex
	stdinClosed bool

	// onSignal, when set, takes the host's signals instead of pid (a
	// service's supervisor: see service.go).
	onSignal func(unix.Signal)
}

// deliver gives the application a signal from the host.
func (p *process) deliver(sig unix.Signal) {
	if p.onSignal != nil {
		p.onSignal(sig)
		return
	}
	_ = unix.Kill(p.pid, sig)
}

func (p *process) closeInput() {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin != nil && !p.stdinClosed && p.tty == nil {
		p.stdin.Close()
	}
	p.stdinClosed = true
}

func (p *process) writeStdin(b []byte) {
	p.stdinMu.Lock()
	closed := p.stdinClosed
	p.stdinMu.Unlock()
	if closed || p.stdin == nil {
		return
	}
	// The application not reading its input must not stall signals and
	// resizes behind it: a blocked write only blocks this frame's
	// delivery, which the host paces by its own reads.
	_ = writeAll(p.stdin, b)
}

// procSpec is what starting a process (the application or an exec)
// takes.
type procSpec struct {
	// prog is the program, looked up in env's PATH; "" means args[0].
	prog   string
	args   []string
	env    []string
	dir    string
	cred   syscall.Credential
	stdin  bool
	tty    bool
	size   guest.WindowSize
	stdout guest.FrameType // the frame types of its output
	stderr guest.FrameType
	// send sends a chunk of its output to the host; it fails with
	// errExecEnded once an exec's end was reported, after which nothing
	// more of it may go.
	send func(t guest.FrameType, b []byte) error
}

// start launches the application with its streams connected.
func (a *agent) start(spec *guest.Spec) (*process, error) {
	return a.startProgram(spec, spec.Args[0])
}

// startProgram launches prog (looked up in the spec's PATH) with the
// spec's Args as its argv, and its streams connected: a service's command
// may give its argv[0] apart from the program (systemd's @ prefix).
func (a *agent) startProgram(spec *guest.Spec, prog string) (*process, error) {
	return a.spawn(procSpec{
		prog: prog, args: spec.Args, env: withPath(spec.Env), dir: spec.Dir,
		cred:  syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: spec.Groups},
		stdin: spec.Stdin, tty: spec.TTY, size: spec.Size,
		stdout: guest.FrameStdout, stderr: guest.FrameStderr,
		send: a.conn.Send,
	})
}

// withPath adds the default PATH to env when it has none.
func withPath(env []string) []string {
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=" + defaultPath}, env...)
	}
	return env
}

// spawn starts a process with its streams connected: a terminal, or pipes
// that keep stdout and stderr apart.
func (a *agent) spawn(ps procSpec) (*process, error) {
	prog := ps.prog
	if prog == "" {
		prog = ps.args[0]
	}
	path, err := lookPath(prog, envValue(ps.env, "PATH"))
	if err != nil {
		return nil, err
	}
	cred := ps.cred
	cmd := &exec.Cmd{
		Path: path,
		Args: ps.args,
		Env:  ps.env,
		Dir:  ps.dir,
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true,
			Credential: &cred,
		},
	}
	p := &process{drained: make(chan struct{})}
	var parentEnds, childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	if ps.tty {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("open terminal: %w", err)
		}
		if ps.size.Rows > 0 && ps.size.Cols > 0 {
			_ = pty.Setsize(master, &pty.Winsize{Rows: ps.size.Rows, Cols: ps.size.Cols})
		}
		childEnds = append(childEnds, slave)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		p.tty, p.stdin = master, master
		parentEnds = append(parentEnds, master)
		p.outputs = []*os.File{master}
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			return nil, err
		}
		childEnds = append(childEnds, outW, errW)
		parentEnds = append(parentEnds, outR, errR)
		cmd.Stdout, cmd.Stderr = outW, errW
		if ps.stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				for _, f := range parentEnds {
					f.Close()
				}
				return nil, err
			}
			childEnds = append(childEnds, inR)
			parentEnds = append(parentEnds, inW)
			cmd.Stdin, p.stdin = inR, inW
		}
		// cmd.Stdin nil means /dev/null.
		p.outputs = []*os.File{outR, errR}
	}
	if err := cmd.Start(); err != nil {
		for _, f := range parentEnds {
			f.Close()
		}
		return nil, err
	}
	p.pid = cmd.Process.Pid
	if ps.tty {
		go a.pump(ps.send, ps.stdout, p.outputs[0], p.drained, nil)
	} else {
		both := make(chan struct{})
		go a.pump(ps.send, ps.stdout, p.outputs[0], both, nil)
		go a.pump(ps.send, ps.stderr, p.outputs[1], p.drained, both)
	}
	return p, nil
}

// pump copies r to the host as frames of type t until r ends, then waits
// for after (the other stream) and closes done.
func (a *agent) pump(send func(guest.FrameType, []byte) error, t guest.FrameType, r *os.File, done chan struct{}, after chan struct{}) {
	defer close(done)
	defer r.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := send(t, buf[:n]); serr != nil {
				if !errors.Is(serr, errExecEnded) {
					a.log.Printf("forwarding %s: %v", t, serr)
				}
				break
			}
		}
		if err != nil {
			// A terminal master reads EIO once the last slave is closed:
			// that is its end of file.
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.EIO) && !errors.Is(err, os.ErrClosed) {
				a.log.Printf("reading %s: %v", t, err)
			}
			break
		}
	}
	if after != nil {
		<-after
	}
}

// serveHost handles the frames the host sends while the application runs.
// When the host goes away, the application is killed: nobody is left to
// see its output or exit status.
func (a *agent) serveHost(p *process) {
	for {
		f, err := a.conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				a.log.Printf("control channel: %v", err)
			}
			p.deliver(unix.SIGKILL)
			return
		}
		switch f.Type {
		case guest.FrameExitAck:
			// The host has everything: poweroff may reset the machine.
			// Nothing the host sends after it matters.
			close(a.acked)
			return
		case guest.FrameStdin:
			p.writeStdin(f.Payload)
		case guest.FrameStdinClose:
			if p.tty != nil {
				// On a terminal, end of input is the EOF character.
				p.writeStdin([]byte{4})
			} else {
				p.closeInput()
			}
		case guest.FrameSignal:
			var s guest.Signal
			if err := guest.Decode(f.Payload, &s); err != nil || s.Number <= 0 || s.Number > 64 {
				a.log.Printf("ignoring bad signal frame: %v", err)
				continue
			}
			a.debugf("forwarding signal %d", s.Number)
			p.deliver(unix.Signal(s.Number))
		case guest.FrameResize:
			var ws guest.WindowSize
			if err := guest.Decode(f.Payload, &ws); err != nil || p.tty == nil {
				continue
			}
			_ = pty.Setsize(p.tty, &pty.Winsize{Rows: ws.Rows, Cols: ws.Cols})
		case guest.FrameFreeze:
			if err := a.freeze(p); err != nil {
				a.log.Printf("control channel while frozen: %v", err)
				p.deliver(unix.SIGKILL)
				return
			}
		case guest.FrameExec, guest.FrameExecStdin, guest.FrameExecStdinClose, guest.FrameExecSignal, guest.FrameExecResize:
			if err := a.execs.handle(a, f); err != nil {
				a.log.Printf("%s frame: %v", f.Type, err)
			}
		default:
			a.debugf("ignoring %s frame", f.Type)
		}
	}
}

// reapAll reaps every remaining child, waiting for those just killed.
func reapAll() {
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil {
			return // ECHILD: none left
		}
	}
}

// startFailure classifies why the application could not be started, the
// way a shell would: not found is 127, found but not runnable is 126.
func startFailure(prog string, err error) guest.ExitStatus {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, unix.ENOENT):
		return guest.ExitStatus{Reason: guest.NotFound, Message: fmt.Sprintf("%s: not found in the guest", prog)}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EISDIR), errors.Is(err, unix.EPERM):
		return guest.ExitStatus{Reason: guest.NotExecutable, Message: fmt.Sprintf("%s: cannot execute: %v", prog, err)}
	}
	return initFailed(fmt.Errorf("start %s: %w", prog, err))
}

// lookPath finds prog in path (the application's PATH, not arrow-init's).
func lookPath(prog, path string) (string, error) {
	if strings.Contains(prog, "/") {
		return prog, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", prog, exec.ErrNotFound)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

func envValue(env []string, key string) string {
	v := ""
	for _, e := range env {
		if k, val, _ := strings.Cut(e, "="); k == key {
			v = val // the last one wins, as in getenv after putenv
		}
	}
	return v
}

// prepare sets up what the application expects to find: the clock,
// entropy, host name, identity files, its working directory and limits.
func prepare(spec *guest.Spec) error {
	if spec.TimeUnixNano > 0 {
		tv := unix.NsecToTimeval(spec.TimeUnixNano)
		if err := unix.Settimeofday(&tv); err != nil {
			return fmt.Errorf("set clock: %w", err)
		}
	}
	if len(spec.Seed) > 0 {
		if err := addEntropy(spec.Seed); err != nil {
			return fmt.Errorf("seed entropy: %w", err)
		}
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = "arrow"
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	if err := writeIdentityFiles(hostname, spec.MachineID, spec.Network); err != nil {
		return err
	}
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	for _, r := range spec.Rlimits {
		res, _ := guest.RlimitResource(r.Type)
		// syscall.Setrlimit (not unix) so that the Go runtime does not
		// restore its own NOFILE soft limit in the child.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("rlimit %s: %w", r.Type, err)
		}
	}
	return nil
}

// writeIdentityFiles writes the /etc files every libc consults, unless the
// root file system brings its own, and the run's own identity (host name,
// hosts, machine ID), which replaces the image's. On a read-only root the
// image's files (or their absence) stand.
func writeIdentityFiles(hostname, machineID string, n *guest.Network) error {
	const (
		keep    = iota // the image's file stands if it has one
		replace        // the run's replaces the image's
		link           // the run's replaces the image's, even a link, unless it is empty
	)
	files := []struct {
		path, content string
		how           int
	}{
		{"/etc/hostname", hostname + "\n", replace},
		{"/etc/hosts", hostsFile(hostname, n), replace},
		// An image's machine ID would be every arrow's, and a
		// template's every clone's.
		{"/etc/machine-id", machineID + "\n", link},
		// The host's name servers, as docker does: an image's
		// resolv.conf (often a link into /run/systemd) means nothing in
		// the guest.
		{"/etc/resolv.conf", resolvConf(n), link},
		{"/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", keep},
		{"/etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n", keep},
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		if errors.Is(err, unix.EROFS) {
			return nil
		}
		return fmt.Errorf("create /etc: %w", err)
	}
	for _, f := range files {
		switch f.how {
		case keep:
			if _, err := os.Lstat(f.path); err == nil {
				continue
			}
		case link:
			if strings.TrimSpace(f.content) == "" {
				continue
			}
			if fi, err := os.Lstat(f.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if err := os.Remove(f.path); err != nil && !errors.Is(err, unix.EROFS) {
					return fmt.Errorf("replace %s: %w", f.path, err)
				}
			}
		}
		if err := os.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			if errors.Is(err, unix.EROFS) {
				continue
			}
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return nil
}

// addEntropy mixes seed into the kernel's pool and credits it, so that
// getrandom neither blocks nor returns what another clone of the same
// snapshot would.
func addEntropy(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(buf[0:], uint32(len(seed)*8))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(seed)))
	copy(buf[8:], seed)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	if err := reseedCRNG(f); err != nil {
		return err
	}
	// Touch the pool once so a broken RNG shows up here, not in the app.
	_, err = rand.Read(make([]byte, 1))
	return err
}

// awaitInputRead watches the application's process until it blocks
// reading its standard input, then tells the host it is ready: a
// handler that initialized and waits for its request. It gives up when
// done closes (the application ended).
func (a *agent) awaitInputRead(pid int, done <-chan struct{}) {
	path := "/proc/" + strconv.Itoa(pid) + "/syscall"
	for {
		if b, err := os.ReadFile(path); err == nil && readsInput(string(b)) {
			a.healthy.Store(true)
			if err := a.conn.Send(guest.FrameHealthy, nil); err != nil {
				a.log.Printf("report readiness: %v", err)
			}
			return
		}
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readsInput reports whether a /proc/PID/syscall line says the process
// is blocked in read(0, ...): the system call number of read on x86-64
// (0), then its first argument, the descriptor.
func readsInput(syscallLine string) bool {
	f := strings.Fields(syscallLine)
	return len(f) >= 2 && f[0] == "0" && f[1] == "0x0"
}

// awaitPort connects to port on the loopback until a connection succeeds,
// then tells the host the application is healthy. It gives up when done
// closes (the application ended).
func (a *agent) awaitPort(port int, done <-chan struct{}) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			a.healthy.Store(true)
			if err := a.conn.Send(guest.FrameHealthy, nil); err != nil {
				a.log.Printf("report health: %v", err)
			}
			return
		}
		select {
		case <-done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
