package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

// Process is a shim the caller started.
type Process struct {
	cmd *exec.Cmd
	// Done is closed when the shim process has exited and been reaped.
	Done chan struct{}

	ctl     *os.File // the caller's end of the control connection
	ctlOnce sync.Once
}

// Pid is the shim's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the shim process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Commit tells the shim that the caller has recorded it (durably: the
// shim outlives the caller from now on, and the caller's successor must be
// able to find it). A shim starts its VM only once committed; a spare
// shim, only once claimed and committed. Commit is the last word on the
// control connection, which it closes.
func (p *Process) Commit() error {
	err := errors.New("shim: already committed or abandoned")
	p.ctlOnce.Do(func() {
		_, err = io.WriteString(p.ctl, "go\n")
		if cerr := p.ctl.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// Abandon closes the control connection without committing: the shim
// ends (a spare kills its VM) as it would were the caller gone.
func (p *Process) Abandon() {
	p.ctlOnce.Do(func() { p.ctl.Close() })
}

// Start starts a shim for the arrow in dir: exe (Arrow's own binary) with
// args (which must make it call [Serve] or [ServeSpare] on dir), in a
// session of its own so that it outlives the caller and no terminal signal
// reaches it. It returns once the shim listens, or with the reason it
// could not start.
//
// The shim's fd 3 is one end of a socket pair whose other end stays with
// the returned Process until [Process.Commit] or [Process.Abandon]. The
// caller's end closes when the caller dies, however it dies, and the shim
// then ends: so a caller killed between this call and recording the shim
// leaves no shim behind.
func Start(ctx context.Context, exe string, args []string, dir string) (*Process, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start shim: control socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "shim-ctl"), os.NewFile(uintptr(fds[1]), "shim-ctl")
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The shim's own diagnostics (a panic, say) go to a file of the arrow's.
	if f, err := os.OpenFile(dir+"/"+ShimLogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
		defer f.Close()
	}
	if err := cmd.Start(); err != nil {
		ours.Close()
		theirs.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	theirs.Close()
	p := &Process{cmd: cmd, Done: make(chan struct{}), ctl: ours}
	go func() {
		_ = cmd.Wait()
		close(p.Done)
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := readLine(ours, 4096)
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s == "ok" {
			return p, nil
		}
		p.Abandon()
		_ = cmd.Process.Kill()
		<-p.Done
		if s == "" {
			s = "exited before it was ready (see " + dir + "/" + ShimLogFile + ")"
		}
		return nil, fmt.Errorf("shim: %s", s)
	case <-ctx.Done():
		p.Abandon()
		_ = cmd.Process.Kill()
		<-p.Done
		return nil, ctx.Err()
	}
}

// ControlFile is a shim's end of its control connection, fd 3 (see
// [Start]), marked close-on-exec so that the VM and its helpers do not
// hold it.
func ControlFile() (*os.File, error) {
	if _, err := unix.FcntlInt(3, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("shim: no control connection (fd 3): arrowd starts shims: %w", err)
	}
	return os.NewFile(3, "shim-ctl"), nil
}

// Client talks to a shim over its socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the shim listening on socket.
func NewClient(socket string) *Client {
	t := client.UnixTransport(socket)
	// A shim's requests are few and some are long waits: no idle
	// connections kept for reuse.
	t.DisableKeepAlives = true
	return &Client{socket: socket, hc: &http.Client{Transport: t}}
}

// Wait blocks until the run ended and returns its final status, its exit
// record within the bounds of [Exit.Bound].
func (c *Client) Wait(ctx context.Context) (*Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/wait", &st)
	if st.Exit != nil {
		st.Exit.Bound()
	}
	return &st, err
}

// WaitRunning blocks until the application started, or the run ended
// before it did, and returns the status then.
func (c *Client) WaitRunning(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/wait?for=running", &st)
}

// WaitHealthy blocks until the application answered on its ready port,
// or the run ended, and returns the status then.
func (c *Client) WaitHealthy(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/wait?for=healthy", &st)
}

// Signal sends sig to the application; SIGKILL also kills the VM if the
// guest does not end the application promptly.
func (c *Client) Signal(ctx context.Context, sig syscall.Signal) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/signal?signal=%d", int(sig)), nil)
}

// Stop sends SIGTERM, and kills the application after timeout.
func (c *Client) Stop(ctx context.Context, timeout time.Duration) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/stop?timeout=%g", timeout.Seconds()), nil)
}

// Attach opens an attach stream: frames of output to read (see
// [api.ReadFrame]) and input to write. Once it returns, the stream has
// all output from then on. With stdinOnce the end of this stream's input
// ends the application's (docker's StdinOnce).
func (c *Client) Attach(ctx context.Context, stdinOnce bool) (net.Conn, *bufio.Reader, error) {
	path := "/attach"
	if stdinOnce {
		path += "?stdin_once=1"
	}
	conn, br, resp, err := c.openStream(ctx, "attach", []byte("GET "+path+" HTTP/1.1\r\nHost: shim\r\n\r\n"))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, nil, fmt.Errorf("shim attach: %s", resp.Status)
	}
	return conn, br, nil
}

// openStream sends req, a whole HTTP/1.1 request, on a connection of its
// own and reads the response's head; on a 200 the connection goes on as
// a stream (attach, exec), which net/http's client does not hand over.
// The caller owns conn and judges resp. Failing before the head arrived
// means the shim is gone ([IsGone]).
func (c *Client) openStream(ctx context.Context, what string, req []byte) (net.Conn, *bufio.Reader, *http.Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", errNotRunning, err)
	}
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("%w: shim %s: %w", errNotRunning, what, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("%w: shim %s: %w", errNotRunning, what, err)
	}
	return conn, br, resp, nil
}

// Claim makes the spare shim on the client's socket the shim of the
// arrow in dir (see [ServeSpare]). Once it returns, the shim serves the
// arrow's socket, as after [Start].
func (c *Client) Claim(ctx context.Context, dir string) error {
	body, err := json.Marshal(Claim{Dir: dir})
	if err != nil {
		return err
	}
	return c.doBody(ctx, http.MethodPost, "/claim", bytes.NewReader(body), nil)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.doBody(ctx, method, path, nil, out)
}

func (c *Client) doBody(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotRunning, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		return fmt.Errorf("shim: %s: %s", resp.Status, e.Message)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, api.MaxRequestBytes)).Decode(out); err != nil {
		return fmt.Errorf("%w: %w", errNotRunning, err)
	}
	return nil
}

// IsGone reports whether err means the shim is not there to answer.
func IsGone(err error) bool { return err != nil && errors.Is(err, errNotRunning) }
