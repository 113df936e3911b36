package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/logs"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/template"
)

// forever, in seconds, stands in for run's own stop timeout: a shim times
// stops itself, per request (`arrow stop -t`).
const forever = 100 * 365 * 24 * 3600.0

// killGrace is how long a SIGKILL forwarded to the application may take to
// end it before the VM itself is killed.
const killGrace = 2 * time.Second

// Serve is the body of a shim process: it runs the arrow described in dir
// and serves its socket until the run ends, then records how it ended.
//
// ctl is its daemon's control connection (see [Start]): once the socket
// serves requests the shim writes "ok\n" to it (or the reason it could
// not start), then waits for the daemon to confirm with "go\n" that it
// recorded the shim. Only then does it start the VM, and from then on it
// outlives its daemon. Between the two the socket already answers: an
// attach made then (the daemon joins the attaches that waited for this
// run) sees all the run's output. Should the daemon end first, ctl reads end of file
// and the shim ends without starting anything: a daemon killed between
// starting a shim and recording it leaves nothing running behind.
//
// A stop signal to the shim (SIGTERM, SIGINT) stops the arrow as
// `arrow stop` would.
func Serve(ctx context.Context, dir string, ctl io.ReadWriteCloser) error {
	s, err := newServer(dir)
	if err != nil {
		fmt.Fprintf(ctl, "%v\n", err)
		ctl.Close()
		return err
	}
	defer s.close()
	s.serve()
	fmt.Fprintln(ctl, "ok")
	if err := awaitGo(ctl); err != nil {
		s.abandoned(err)
		return err
	}
	return s.run(ctx)
}

// awaitGo reads the daemon's confirmation from ctl, and closes ctl.
func awaitGo(ctl io.ReadCloser) error {
	defer ctl.Close()
	line, err := readLine(ctl, 16)
	if err != nil || line != "go" {
		return errAbandoned
	}
	return nil
}

// errAbandoned is why a shim whose daemon never confirmed it ends.
var errAbandoned = errors.New("arrowd ended before it confirmed this run of the arrow: the run was abandoned")

// readLine reads one line of at most max bytes from r, byte by byte so
// that nothing after it is consumed.
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
			continue
		}
		if err != nil {
			return string(b), err
		}
	}
	return string(b), errors.New("control line too long")
}

// abandoned records a run that never started because its daemon went
// before confirming it. The shim holds the arrow's lock while it writes,
// so the record cannot land on a later run's.
func (s *server) abandoned(why error) {
	e := &Exit{ExitCode: run.ExitArrowFailed, FinishedAt: time.Now(), Error: why.Error()}
	_ = writeJSON(filepath.Join(s.dir, ExitFile), e)
}

// server is one shim's state.
type server struct {
	dir    string
	launch *Launch
	ln     net.Listener
	log    *logs.Writer
	sigs   chan os.Signal
	stdin  *io.PipeWriter
	stdinR *io.PipeReader
	out    *fanout
	group  *cgroup.Group
	spare  *template.Spare // the VM to run in, when a spare shim was claimed
	lock   *os.File        // the arrow's LockFile, held for the shim's life
	srv    *http.Server    // the socket's server, once serve was called
	// resize holds the latest terminal size asked for (with TTY) until
	// the run takes it: a size asked before the VM starts is the
	// terminal's initial size, a later one is relayed once the
	// application runs.
	resize chan guest.WindowSize

	mu       sync.Mutex
	status   Status
	done     chan struct{} // closed when the run ended and exit.json is written
	ready    chan struct{} // closed when the application started, or the run ended
	once     sync.Once
	healthy  chan struct{} // closed when the ready port answered, or the run ended
	hOnce    sync.Once
	stopping bool
	// handle is the run while its application runs: execs go to it.
	handle *run.Handle
	// paused: the VM is paused (see pause.go); pauseMu serialises the
	// QMP commands that change it.
	paused  bool
	pauseMu sync.Mutex
}

func newServer(dir string) (*server, error) {
	// The lock first: until this shim holds it, it touches nothing of
	// the arrow's (another shim may be serving it).
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("shim: %w", err)
	}
	l, err := ReadLaunch(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("shim: %w", err)
	}
	lw, err := logs.Create(filepath.Join(dir, LogFile), logs.WriterOptions{MaxSize: l.LogMaxSize, MaxFiles: l.LogMaxFiles})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("shim: log: %w", err)
	}
	_ = os.Remove(l.Socket) // a dead shim's: the lock says no live one has it
	ln, err := net.Listen("unix", l.Socket)
	if err != nil {
		lw.Close()
		lock.Close()
		return nil, fmt.Errorf("shim: %w", err)
	}
	_ = os.Chmod(l.Socket, 0o600)
	pr, pw := io.Pipe()
	s := &server{
		dir: dir, launch: l, ln: ln, log: lw, lock: lock,
		sigs:  make(chan os.Signal, 8),
		stdin: pw, stdinR: pr,
		out:     newFanout(),
		resize:  make(chan guest.WindowSize, 1),
		status:  Status{State: api.Starting},
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
		healthy: make(chan struct{}),
	}
	if l.Cgroup != "" {
		m, err := cgroup.New(l.CgroupParent)
		if err == nil {
			s.group, err = m.Open(l.Cgroup)
		}
		if err != nil {
			// Fail closed: the VM never runs outside its limits.
			s.close()
			return nil, fmt.Errorf("shim: cgroup %s: %w", l.Cgroup, err)
		}
	}
	return s, nil
}

// serve starts answering on the socket. It is called before the daemon's
// "go", so that attaches can join before the VM starts (see [Serve]).
func (s *server) serve() {
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) { _ = srv.Serve(s.ln) }(s.srv)
}

func (s *server) close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
	s.ln.Close()
	os.Remove(s.launch.Socket)
	s.log.Close()
	s.lock.Close() // last: the arrow is free for another shim
}

// run runs the VM to its end while serving the socket.
func (s *server) run(ctx context.Context) error {
	if s.srv == nil {
		s.serve()
	}
	srv := s.srv

	stop := make(chan os.Signal, 1)
	signalNotify(stop)
	go func() {
		select {
		case <-stop:
			s.stop(time.Duration(s.launch.Config.StopTimeout * float64(time.Second)))
		case <-s.done:
		}
	}()

	o := Options(&s.launch.Config, s.launch.Root)
	if s.launch.Tap != nil {
		o.Tap, o.Ports = s.launch.Tap, nil // the bridge's ports are arrowd's
	}
	stdout, stderr := s.log.Stream(logs.Stdout), s.log.Stream(logs.Stderr)
	o.Out = io.MultiWriter(stdout, s.out.stream(api.StreamStdout))
	o.Err = io.MultiWriter(stderr, s.out.stream(api.StreamStderr))
	o.Log = stderr
	o.In = s.stdinR
	if o.TTY {
		o.Size, o.Resize = s.initialSize(), s.resize
	}
	o.Signals = s.sigs
	o.StopTimeout = forever
	o.Spare = s.spare
	t0 := time.Now()
	if s.group != nil {
		// The jail's helper enters the group before QEMU exists.
		o.Cgroup = s.group
	}
	res, err := s.runVM(ctx, o, t0)

	e := &Exit{ExitCode: res.ExitCode(), FinishedAt: time.Now(), Accel: res.Accel.Name}
	if err != nil {
		e.ExitCode = run.ExitCode(err)
		e.Error = err.Error()
		fmt.Fprintf(stderr, "arrow: %v\n", err)
	} else if res.Status.Message != "" {
		e.Error = res.Status.Message
	}
	// The message may be the guest's: the host keeps a bounded part.
	e.Bound()
	if s.group != nil {
		if st, serr := s.group.Stats(); serr == nil && st.OOMKills > 0 {
			// The host killed QEMU: report it as docker reports an OOM
			// kill, whatever the broken-off run made of it.
			e.OOMKilled, e.ExitCode = true, 128+int(syscall.SIGKILL)
			e.Error = "the VM exceeded its memory limit (--memory plus the VM's overhead) and was killed by the host"
		}
	}
	s.mu.Lock()
	e.StartedAt = s.status.StartedAt
	e.Template, e.Spare, e.Phases = s.status.Template, s.status.Spare, s.status.Phases
	s.status.State = api.Exited
	s.status.Pid = 0
	s.status.Exit = e
	s.mu.Unlock()
	s.out.close()
	werr := writeJSON(filepath.Join(s.dir, ExitFile), e)
	close(s.done)
	s.once.Do(func() { close(s.ready) })
	s.hOnce.Do(func() { close(s.healthy) })
	// Give a daemon waiting on the socket a moment to hear the end from
	// the shim itself; it reads exit.json otherwise.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if werr != nil {
		return fmt.Errorf("shim: record the exit: %w", werr)
	}
	return nil
}

// runVM launches the arrow's VM, puts it into the arrow's cgroup, starts
// the application and waits for its end, keeping the status current.
func (s *server) runVM(ctx context.Context, o run.Options, t0 time.Time) (run.Result, error) {
	h, err := run.Launch(ctx, o)
	if err != nil {
		return run.Result{}, err
	}
	defer h.Close()
	if s.group != nil {
		// A spare's QEMU started before the arrow had a group; for
		// other runs the jail put it there already. Before the
		// application starts: limits fail closed.
		if err := s.group.Add(h.Pid()); err != nil {
			return run.Result{Accel: h.Accel()}, &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("cgroup: %w", err)}
		}
	}
	s.mu.Lock()
	s.status.Pid = h.Pid()
	s.mu.Unlock()
	how, err := h.Start(ctx)
	if err != nil {
		return run.Result{Accel: h.Accel()}, err
	}
	s.mu.Lock()
	s.status.Template = how.Template
	s.status.Spare = how.Spare
	for _, ph := range how.Phases {
		s.status.Phases = append(s.status.Phases, api.Phase{Name: ph.Name, Seconds: ph.Duration.Seconds()})
	}
	s.status.State = api.Running
	s.handle = h
	s.status.StartedAt = time.Now()
	s.status.BootSeconds = time.Since(t0).Seconds()
	s.mu.Unlock()
	s.once.Do(func() { close(s.ready) })
	healthy := func() {
		s.mu.Lock()
		s.status.Healthy = true
		s.mu.Unlock()
		s.hOnce.Do(func() { close(s.healthy) })
	}
	waited := make(chan struct{})
	go func() {
		select {
		case <-h.Healthy():
			healthy()
		case <-waited:
		}
	}()
	res, err := h.Wait(ctx)
	s.mu.Lock()
	s.handle = nil
	s.mu.Unlock()
	close(waited)
	// An application that became healthy and ended at once: the report
	// must not depend on which of the two the goroutine saw first.
	select {
	case <-h.Healthy():
		healthy()
	default:
	}
	return res, err
}

// stop sends SIGTERM, then SIGKILL after timeout, then kills the VM.
func (s *server) stop(timeout time.Duration) {
	s.mu.Lock()
	already := s.stopping
	s.stopping = true
	s.mu.Unlock()
	if already {
		return
	}
	s.signal(syscall.SIGTERM)
	go func() {
		select {
		case <-s.done:
			return
		case <-time.After(timeout):
		}
		s.kill()
	}()
}

// kill ends the application with SIGKILL in the guest and, should the
// guest not report its end in time, kills the VM (run kills it on a
// repeated signal).
func (s *server) kill() {
	s.signal(syscall.SIGKILL)
	go func() {
		select {
		case <-s.done:
		case <-time.After(killGrace):
			s.signal(syscall.SIGKILL)
		}
	}()
}

func (s *server) signal(sig os.Signal) {
	s.resumeForSignal()
	select {
	case s.sigs <- sig:
	case <-s.done:
	}
}

func (s *server) snapshot() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, http.StatusOK, s.snapshot())
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		// ?for=running returns once the application started (or the run
		// ended before it could); otherwise once the run ended.
		until := s.done
		switch r.URL.Query().Get("for") {
		case "running":
			until = s.ready
		case "healthy":
			until = s.healthy
		}
		select {
		case <-until:
			writeReply(w, http.StatusOK, s.snapshot())
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST /signal", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("signal"))
		if err != nil || n <= 0 || n > 64 {
			writeReply(w, http.StatusBadRequest, api.Error{Message: "signal: want a number from 1 to 64"})
			return
		}
		if syscall.Signal(n) == syscall.SIGKILL {
			s.kill()
		} else {
			s.signal(syscall.Signal(n))
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		t, err := strconv.ParseFloat(r.URL.Query().Get("timeout"), 64)
		// Not NaN, and within a time.Duration.
		if err != nil || !(t >= 0 && t <= api.MaxTimeoutSeconds) {
			writeReply(w, http.StatusBadRequest, api.Error{Message: fmt.Sprintf("timeout: want seconds from 0 to %d", api.MaxTimeoutSeconds)})
			return
		}
		s.stop(time.Duration(t * float64(time.Second)))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /attach", s.attach)
	mux.HandleFunc("POST /resize", s.handleResize)
	mux.HandleFunc("POST /exec", s.exec)
	s.pauseRoutes(mux)
	return mux
}

// attach streams the application's output to the client as frames and
// its input, with Stdin, to the application, until the run ends or the
// client goes. With ?stdin_once=1 the end of this client's input ends
// the application's (docker's StdinOnce); otherwise it ends only this
// attach's input, and another attach may follow (as docker).
//
// The client is subscribed before the response's head goes out: once a
// client read the 200, no output of the application can pass it by.
func (s *server) attach(w http.ResponseWriter, r *http.Request) {
	once := r.URL.Query().Get("stdin_once")
	if once != "" && once != "0" && once != "1" {
		writeReply(w, http.StatusBadRequest, api.Error{Message: "stdin_once: want 0 or 1"})
		return
	}
	sub := s.out.subscribe()
	defer s.out.unsubscribe(sub)
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if s.launch.Config.Stdin {
		go func() {
			_, _ = io.Copy(s.stdin, brw)
			if once == "1" {
				s.stdin.Close()
			}
		}()
	}
	for f := range sub {
		if err := api.WriteFrame(conn, f.stream, f.data); err != nil {
			return
		}
	}
}

func writeReply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errNotRunning is returned by clients for a shim that is gone.
var errNotRunning = errors.New("shim not running")
