//go:build linux

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// NotifySocket is where arrow-init listens for sd_notify(3) messages of a
// service ($NOTIFY_SOCKET).
const NotifySocket = "/run/arrow/notify"

// relaySettleWait bounds how long readiness waits for a service to listen
// on its published ports (see relayLoopback).
const relaySettleWait = 5 * time.Second

// pidFileWait bounds how long a forking service's daemon has to write its
// PID file once the command that started it exited.
const pidFileWait = 10 * time.Second

// runService supervises a systemd service as systemd would, with the VM
// as its only unit: ExecStartPre=, the main process by Type=, readiness
// (reported to the host as healthy), ExecStartPost=, then the main
// process until it ends or the host stops it (ExecStop=, KillSignal=,
// TimeoutStopSec=), then ExecStopPost=. Its result is the main process's
// exit status, or that of the first command that failed without '-'.
func (a *agent) runService(spec *guest.Spec) guest.ExitStatus {
	t0 := time.Now()
	svc := spec.Service
	if err := prepare(spec); err != nil {
		return initFailed(err)
	}
	// Every command inherits it; arrow-init creates nothing for itself
	// from here on that the mask could narrow.
	unix.Umask(int(svc.UMask))
	if err := makeServiceDirs(a, spec); err != nil {
		return initFailed(err)
	}
	env, err := serviceEnv(spec)
	if err != nil {
		return initFailed(err)
	}
	// One reaper for the service's processes, orphans (a forking
	// daemon) and execs alike.
	a.reap = newReaper()
	defer a.reap.close()
	s := &supervisor{a: a, spec: spec, env: env, r: a.reap, stopReq: make(chan struct{}), mainChanged: make(chan int, 1)}
	var notify *net.UnixConn
	if svc.Type == guest.ServiceNotify {
		if notify, err = listenNotify(); err != nil {
			return initFailed(err)
		}
		defer notify.Close()
		s.env = append(s.env, "NOTIFY_SOCKET="+NotifySocket)
	}
	// The host's frames (signals: a stop) go to the supervisor.
	go a.serveHost(&process{onSignal: s.signal, drained: make(chan struct{})})
	a.debugf("service prepared in %v", time.Since(t0))

	status := s.supervise(notify)
	a.debugf("service ended %+v after %v", status, time.Since(t0))
	// As for an application (see run): the reaper stops before the
	// rest is killed, so that execs end with the service.
	s.r.close()
	_ = unix.Kill(-1, unix.SIGKILL)
	reapAll()
	s.drain()
	return status
}

// supervisor is one service's run.
type supervisor struct {
	a    *agent
	spec *guest.Spec
	env  []string
	r    *reaper

	mu       sync.Mutex
	mainPID  int
	drains   []chan struct{}
	stopping bool
	stopReq  chan struct{}
	// mainChanged carries a MAINPID= the service announced.
	mainChanged chan int
}

// supervise runs the service's phases; see runService.
func (s *supervisor) supervise(notify *net.UnixConn) guest.ExitStatus {
	svc := s.spec.Service
	for _, c := range svc.Pre {
		if st, ok := s.runCommand(c, nil); !ok {
			return st
		}
	}
	var ready chan struct{}
	if notify != nil {
		ready = make(chan struct{})
		go s.readNotify(notify, ready)
	}
	switch svc.Type {
	case guest.ServiceOneshot:
		var last guest.ExitStatus
		for _, c := range svc.Start {
			st, ok := s.runCommand(c, nil)
			if !ok {
				return st
			}
			last = st
		}
		for _, c := range svc.Post {
			if st, ok := s.runCommand(c, nil); !ok {
				return st
			}
		}
		s.stopCommands(false)
		if last.Reason == "" {
			last = guest.ExitStatus{Reason: guest.Exited}
		}
		return last
	case guest.ServiceForking:
		if st, ok := s.runCommand(svc.Start[0], nil); !ok {
			return st
		}
		pid, err := s.readPIDFile(svc.PIDFile)
		if err != nil {
			return initFailed(err)
		}
		s.setMain(pid)
		s.a.debugf("forking service: main pid %d from %s", pid, svc.PIDFile)
	default:
		p, err := s.start(svc.Start[0], nil)
		if err != nil {
			return startFailure(svc.Start[0].Path, err)
		}
		s.setMain(p)
	}
	mainExit := s.watchMain()
	if ready != nil {
		// Type=notify: up once it says READY=1 (or it ended first).
		select {
		case <-ready:
		case st := <-mainExit:
			return s.ended(st)
		case <-s.stopReq:
			return s.ended(<-mainExit)
		}
	}
	if len(svc.LoopbackPorts) > 0 && s.spec.Network != nil {
		var addrs []netip.Addr
		for _, i := range s.spec.Network.Interfaces {
			if p, err := netip.ParsePrefix(i.Address); err == nil {
				addrs = append(addrs, p.Addr())
			}
		}
		done := make(chan struct{})
		defer close(done)
		var settled []chan struct{}
		for _, port := range svc.LoopbackPorts {
			ch := make(chan struct{})
			settled = append(settled, ch)
			go s.a.relayLoopback(port, addrs, done, ch)
		}
		// Ready means reachable: a client that connects to a published
		// port once run -d returned must find the relay. Bounded, for a
		// service that never listens on a port it was published on.
		limit := time.After(relaySettleWait)
	settle:
		for _, ch := range settled {
			select {
			case <-ch:
			case <-limit:
				break settle
			}
		}
	}
	if s.spec.ReadyPort == 0 {
		s.a.debugf("service ready")
		s.a.healthy.Store(true)
		if err := s.a.conn.Send(guest.FrameHealthy, nil); err != nil {
			s.a.log.Printf("report readiness: %v", err)
		}
	} else {
		done := make(chan struct{})
		defer close(done)
		go s.a.awaitPort(s.spec.ReadyPort, done)
	}
	for _, c := range svc.Post {
		if st, ok := s.runCommand(c, nil); !ok {
			// systemd stops a service whose ExecStartPost= failed.
			s.signal(unix.SIGTERM)
			<-mainExit
			return st
		}
	}
	return s.ended(<-mainExit)
}

// ended runs what follows the main process's end: ExecStop= unless a stop
// ran it, then ExecStopPost=; the status stays the main process's.
func (s *supervisor) ended(st guest.ExitStatus) guest.ExitStatus {
	s.mu.Lock()
	stopping := s.stopping
	s.stopping = true
	s.mu.Unlock()
	s.stopCommands(!stopping)
	return st
}

// stopCommands runs ExecStop= (with stop) and ExecStopPost=.
func (s *supervisor) stopCommands(stop bool) {
	svc := s.spec.Service
	var cmds []guest.Command
	if stop {
		cmds = append(cmds, svc.Stop...)
	}
	for _, c := range append(cmds, svc.StopPost...) {
		s.runCommand(c, nil)
	}
}

// signal takes a signal from the host. SIGTERM and SIGINT stop the
// service as systemd would (ExecStop=, then KillSignal= to what is left,
// then SIGKILL after TimeoutStopSec=); others go to the main process.
func (s *supervisor) signal(sig unix.Signal) {
	if sig != unix.SIGTERM && sig != unix.SIGINT {
		s.mu.Lock()
		pid := s.mainPID
		s.mu.Unlock()
		if pid > 0 {
			_ = unix.Kill(pid, sig)
		} else if sig == unix.SIGKILL {
			_ = unix.Kill(-1, unix.SIGKILL)
		}
		return
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	pid := s.mainPID
	s.mu.Unlock()
	close(s.stopReq)
	go func() {
		svc := s.spec.Service
		extra := []string{}
		if pid > 0 {
			extra = append(extra, "MAINPID="+strconv.Itoa(pid))
		}
		for _, c := range svc.Stop {
			s.runCommand(c, extra)
		}
		kill := unix.Signal(svc.KillSignal)
		s.a.debugf("stop: %v to what is left", kill)
		// KillMode=control-group: every process of the service, which
		// in this VM is every process but arrow-init.
		_ = unix.Kill(-1, kill)
		if svc.TimeoutStopNanos > 0 {
			time.Sleep(time.Duration(svc.TimeoutStopNanos))
			_ = unix.Kill(-1, unix.SIGKILL)
		}
	}()
}

// runCommand runs c to its end. ok is false when it failed and its
// failure fails the service (no '-').
func (s *supervisor) runCommand(c guest.Command, extraEnv []string) (guest.ExitStatus, bool) {
	pid, err := s.start(c, extraEnv)
	if err != nil {
		st := startFailure(c.Path, err)
		return st, c.IgnoreFailure
	}
	st := statusOf(<-s.r.wait(pid))
	s.a.debugf("%s exited %+v", c.Path, st)
	failed := st.Reason != guest.Exited || st.Code != 0
	return st, !failed || c.IgnoreFailure
}

// start starts c with the service's environment (plus extraEnv) and
// credentials, its output relayed to the host.
func (s *supervisor) start(c guest.Command, extraEnv []string) (int, error) {
	cs := *s.spec
	cs.Env = append(append([]string{}, s.env...), extraEnv...)
	get := func(k string) (string, bool) {
		for i := len(cs.Env) - 1; i >= 0; i-- {
			if key, v, _ := strings.Cut(cs.Env[i], "="); key == k {
				return v, true
			}
		}
		return "", false
	}
	cs.Args = c.Args
	if !c.NoExpand {
		cs.Args = guest.ExpandArgs(c.Args, get)
	}
	if len(cs.Args) == 0 {
		return 0, fmt.Errorf("%s: no arguments after expansion", c.Path)
	}
	if c.Privileged {
		cs.UID, cs.GID, cs.Groups = 0, 0, nil
	}
	// A command that exits before wait(pid) is kept by the reaper.
	p, err := s.a.startProgram(&cs, c.Path)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.drains = append(s.drains, p.drained)
	s.mu.Unlock()
	return p.pid, nil
}

func (s *supervisor) setMain(pid int) {
	s.mu.Lock()
	s.mainPID = pid
	s.mu.Unlock()
}

// watchMain reports the main process's end, following MAINPID= changes.
func (s *supervisor) watchMain() <-chan guest.ExitStatus {
	out := make(chan guest.ExitStatus, 1)
	s.mu.Lock()
	pid := s.mainPID
	s.mu.Unlock()
	go func() {
		ch := s.r.wait(pid)
		for {
			select {
			case ws := <-ch:
				out <- statusOf(ws)
				return
			case np := <-s.mainChanged:
				s.a.debugf("main pid %d -> %d", pid, np)
				pid = np
				s.setMain(np)
				ch = s.r.wait(np)
			}
		}
	}()
	return out
}

// readPIDFile waits for a forking daemon's PID file and reads it.
func (s *supervisor) readPIDFile(path string) (int, error) {
	deadline := time.Now().Add(pidFileWait)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			pid, perr := strconv.Atoi(string(bytes.TrimSpace(b)))
			if perr == nil && pid > 1 {
				if unix.Kill(pid, 0) == nil {
					return pid, nil
				}
				// A stale file: the daemon died, or has not rewritten it.
			} else if perr != nil || pid <= 1 {
				err = fmt.Errorf("PID file %s: %.40q is not a PID", path, b)
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("PID file %s names no live process", path)
			}
			return 0, fmt.Errorf("forking service: %w (waited %v)", err, pidFileWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drain waits, bounded, for the relayed output of every command.
func (s *supervisor) drain() {
	s.mu.Lock()
	drains := s.drains
	s.mu.Unlock()
	deadline := time.After(drainTimeout)
	for _, d := range drains {
		select {
		case <-d:
		case <-deadline:
			s.a.log.Printf("service output still open %v after exit; dropping the rest", drainTimeout)
			return
		}
	}
}

// listenNotify opens the socket services send sd_notify messages to;
// every user may send (the service drops root).
func listenNotify() (*net.UnixConn, error) {
	// Explicit modes: the service's umask (redis's is 007) must not
	// keep its user out.
	if err := os.MkdirAll("/run/arrow", 0o755); err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	if err := os.Chmod("/run/arrow", 0o755); err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	_ = os.Remove(NotifySocket)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: NotifySocket, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	if err := os.Chmod(NotifySocket, 0o777); err != nil {
		c.Close()
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	return c, nil
}

// readNotify reads sd_notify messages: READY=1 closes ready, MAINPID=
// changes the main process. Others (STATUS=, STOPPING=1, WATCHDOG=1) need
// nothing in an arrow.
func (s *supervisor) readNotify(c *net.UnixConn, ready chan struct{}) {
	buf := make([]byte, 4096)
	once := sync.Once{}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			switch {
			case line == "READY=1":
				once.Do(func() { close(ready) })
			case strings.HasPrefix(line, "MAINPID="):
				if pid, err := strconv.Atoi(line[len("MAINPID="):]); err == nil && pid > 1 {
					select {
					case s.mainChanged <- pid:
					default:
					}
				}
			}
		}
	}
}

// makeServiceDirs makes RuntimeDirectory= and the others, with their
// modes and, unless they are configuration, the service's owner; and
// before them the tmpfiles.d directories, with the owners those give.
func makeServiceDirs(a *agent, spec *guest.Spec) error {
	for _, d := range spec.Service.Dirs {
		if err := makeServiceDir(spec, d); err != nil {
			if !d.Optional {
				return err
			}
			a.debugf("optional %v", err)
		}
	}
	return nil
}

func makeServiceDir(spec *guest.Spec, d guest.ServiceDir) error {
	fi, err := os.Lstat(d.Path)
	existed := err == nil
	if existed && !fi.IsDir() && d.Replace {
		if err := os.RemoveAll(d.Path); err != nil {
			return fmt.Errorf("service directory: %w", err)
		}
		existed = false
	}
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return fmt.Errorf("service directory: %w", err)
	}
	uid, gid := -1, -1
	switch {
	case d.Owned:
		uid, gid = int(spec.UID), int(spec.GID)
	default:
		if d.UID != nil {
			uid = int(*d.UID)
		}
		if d.GID != nil {
			gid = int(*d.GID)
		}
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(d.Path, uid, gid); err != nil {
			return fmt.Errorf("service directory: %w", err)
		}
	}
	mode := d.Mode
	if d.KeepMode {
		if existed {
			return nil
		}
		mode = 0o755
	}
	// After chown, which clears the setgid bit of some modes.
	if err := unix.Chmod(d.Path, mode); err != nil {
		return fmt.Errorf("service directory %s: %w", d.Path, err)
	}
	return nil
}

// serviceEnv is the spec's environment with the service's environment
// files read over it, and its unset variables removed.
func serviceEnv(spec *guest.Spec) ([]string, error) {
	env := append([]string{}, spec.Env...)
	for _, f := range spec.Service.EnvFiles {
		b, err := readBounded(f.Path, guest.MaxEnvFile)
		if err != nil {
			if f.Optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("EnvironmentFile=%s: %w", f.Path, err)
		}
		vars, err := guest.ParseEnvFile(b)
		if err != nil {
			return nil, fmt.Errorf("EnvironmentFile=%s: %w", f.Path, err)
		}
		env = append(env, vars...)
	}
	env = mergeEnv(env)
	for _, u := range spec.Service.Unset {
		env = removeEnv(env, u)
	}
	return env, nil
}

// mergeEnv keeps the last value of each variable, at its first place.
func mergeEnv(env []string) []string {
	out := make([]string, 0, len(env))
	at := map[string]int{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := at[k]; ok {
			out[i] = e
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	return out
}

// removeEnv drops u: a name, or NAME=VALUE for that assignment only.
func removeEnv(env []string, u string) []string {
	out := env[:0]
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if e == u || !strings.Contains(u, "=") && k == u {
			continue
		}
		out = append(out, e)
	}
	return out
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}

func statusOf(ws unix.WaitStatus) guest.ExitStatus {
	if ws.Signaled() {
		return guest.ExitStatus{Reason: guest.Signaled, Signal: int(ws.Signal())}
	}
	return guest.ExitStatus{Reason: guest.Exited, Code: ws.ExitStatus()}
}

// reaper reaps every child of arrow-init (PID 1: orphans too, a forking
// daemon among them) once the application or service started, and hands
// each exit to whoever waits for that PID (the application, a service's
// supervisor, an exec), keeping those nobody waits for yet.
type reaper struct {
	mu      sync.Mutex
	exited  map[int]unix.WaitStatus
	waiting map[int]chan unix.WaitStatus
	sigchld chan os.Signal
	done    chan struct{}
	stopped chan struct{} // closed when the reaping goroutine returned
	once    sync.Once
}

// maxUnclaimed bounds the exits kept that nobody waits for.
const maxUnclaimed = 4096

func newReaper() *reaper {
	r := &reaper{exited: map[int]unix.WaitStatus{}, waiting: map[int]chan unix.WaitStatus{},
		sigchld: make(chan os.Signal, 16), done: make(chan struct{}), stopped: make(chan struct{})}
	signal.Notify(r.sigchld, unix.SIGCHLD)
	go func() {
		defer close(r.stopped)
		for {
			select {
			case <-r.sigchld:
				r.reap()
			case <-r.done:
				return
			}
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		} else {
			if len(r.exited) >= maxUnclaimed {
				clear(r.exited)
			}
			r.exited[pid] = ws
		}
		r.mu.Unlock()
	}
}

// wait returns a channel that gets pid's exit status.
func (r *reaper) wait(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- ws
		return ch
	}
	r.waiting[pid] = ch
	return ch
}

// close stops reaping, and returns once no exit will be handed on any
// more: what ends from then on is reaped by reapAll, unreported.
func (r *reaper) close() {
	r.once.Do(func() {
		signal.Stop(r.sigchld)
		close(r.done)
	})
	<-r.stopped
}
