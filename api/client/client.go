// Package client is the Go client of arrowd's API (package api), used by
// the arrow CLI and usable by any tool that manages arrows.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/arrowsys/arrow/api"
)

// Client talks to one arrowd, over its Unix socket or its TLS listener.
type Client struct {
	socket string // or the TCP address, for errors
	dial   func(ctx context.Context) (net.Conn, error)
	hc     *http.Client
}

// newClient is a client whose every connection is made by dial.
func newClient(addr string, dial func(ctx context.Context) (net.Conn, error)) *Client {
	return &Client{socket: addr, dial: dial, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}}
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return newClient(socket, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", socket) })
}

// UnixTransport is an HTTP transport whose every connection goes to the
// Unix socket socket, whatever the request's host: for Arrow's other
// HTTP-over-Unix-socket services (shims).
func UnixTransport(socket string) *http.Transport {
	return New(socket).hc.Transport.(*http.Transport)
}

// NewTLS returns a client for a daemon's TCP listener (arrow daemon
// --tls-listen), authenticating with the client certificate in cfg.
func NewTLS(addr string, cfg *tls.Config) *Client {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	return newClient(addr, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
}

// Error is an error response of the daemon.
type Error struct {
	// Status is the HTTP status: 400 invalid input, 404 unknown arrow,
	// 409 conflict, ...
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsNotFound reports whether err is the daemon's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// ErrUnreachable wraps errors connecting to the daemon.
var ErrUnreachable = errors.New("arrowd is not reachable")

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Info(ctx)
	return err
}

// Info describes the daemon.
func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var i api.Info
	return i, c.do(ctx, http.MethodGet, "/info", nil, nil, &i)
}

// Create creates an arrow and starts it; see api.CreateRequest. The arrow
// returned may have ended already (State Exited, with Error saying why).
func (c *Client) Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error) {
	var a api.Arrow
	return a, c.do(ctx, http.MethodPost, "/arrows", nil, req, &a)
}

// List lists the running arrows, or all.
func (c *Client) List(ctx context.Context, all bool) ([]api.Arrow, error) {
	var out []api.Arrow
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	return out, c.do(ctx, http.MethodGet, "/arrows", q, nil, &out)
}

// Inspect returns an arrow by ID, ID prefix or name.
func (c *Client) Inspect(ctx context.Context, ref string) (api.Arrow, error) {
	var a api.Arrow
	return a, c.do(ctx, http.MethodGet, "/arrows/"+url.PathEscape(ref), nil, nil, &a)
}

// Remove removes an arrow; force kills a running one first.
func (c *Client) Remove(ctx context.Context, ref string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.do(ctx, http.MethodDelete, "/arrows/"+url.PathEscape(ref), q, nil, nil)
}

// Start starts an arrow that is not running.
func (c *Client) Start(ctx context.Context, ref string) (api.Arrow, error) {
	var a api.Arrow
	return a, c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/start", nil, nil, &a)
}

func timeoutQuery(timeout *time.Duration) url.Values {
	q := url.Values{}
	if timeout != nil {
		q.Set("t", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	}
	return q
}

// Stop stops an arrow: SIGTERM, then SIGKILL after timeout (nil: the
// arrow's own stop timeout).
func (c *Client) Stop(ctx context.Context, ref string, timeout *time.Duration) error {
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/stop", timeoutQuery(timeout), nil, nil)
}

// Restart stops an arrow and starts it again.
func (c *Client) Restart(ctx context.Context, ref string, timeout *time.Duration) (api.Arrow, error) {
	var a api.Arrow
	return a, c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/restart", timeoutQuery(timeout), nil, &a)
}

// Kill sends a signal (a name or number; empty for SIGKILL).
func (c *Client) Kill(ctx context.Context, ref, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/kill", q, nil, nil)
}

// Wait blocks until the arrow's run ends and returns its exit status.
func (c *Client) Wait(ctx context.Context, ref string) (api.WaitResponse, error) {
	var w api.WaitResponse
	return w, c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/wait", nil, nil, &w)
}

// WaitNext waits for the end of the arrow's current run or, when none
// runs, its next one. It returns once arrowd registered the wait, and the
// function it returns reads that run's exit status: register, start the
// arrow, then read, and the status is had even when the arrow is removed
// as it ends (api.CreateRequest.AutoRemove). The function must be called
// (it releases the connection). It fails when the connection to arrowd
// breaks before the status came: arrowd went. With lease, the run is
// this wait's: should it end first (this process killed, ctx ended), arrowd
// kills the arrow (and removes it, with AutoRemove), as a foreground run's
// VM goes with its `arrow run`.
func (c *Client) WaitNext(ctx context.Context, ref string, lease bool) (func() (api.WaitResponse, error), error) {
	q := url.Values{"next": {"1"}}
	if lease {
		q.Set("lease", "1")
	}
	resp, err := c.send(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/wait", q, nil)
	if err != nil {
		return nil, err
	}
	return func() (api.WaitResponse, error) {
		defer resp.Body.Close()
		var v struct {
			api.WaitResponse
			Message string `json:"message"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
			if ctx.Err() != nil {
				return api.WaitResponse{}, ctx.Err()
			}
			return api.WaitResponse{}, fmt.Errorf("%w: the wait's answer broke off: %w", ErrUnreachable, err)
		}
		if v.Message != "" {
			return api.WaitResponse{}, &Error{Status: resp.StatusCode, Message: v.Message}
		}
		return v.WaitResponse, nil
	}, nil
}

// LogsOptions select log lines.
type LogsOptions struct {
	Follow bool
	// Since is a duration ("10m"), an RFC 3339 time or Unix seconds.
	Since string
	// Tail is how many lines from the end; negative for all.
	Tail int
}

// Logs calls fn with each log line of an arrow.
func (c *Client) Logs(ctx context.Context, ref string, o LogsOptions, fn func(api.LogEntry) error) error {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Since != "" {
		q.Set("since", o.Since)
	}
	if o.Tail >= 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	return stream(c, ctx, "/arrows/"+url.PathEscape(ref)+"/logs", q, fn)
}

// Stats returns one sample of every running arrow.
func (c *Client) Stats(ctx context.Context) ([]api.Stats, error) {
	var s []api.Stats
	return s, c.do(ctx, http.MethodGet, "/stats", nil, nil, &s)
}

// StatsStream calls fn with a sample of every running arrow each second.
func (c *Client) StatsStream(ctx context.Context, fn func([]api.Stats) error) error {
	return stream(c, ctx, "/stats", url.Values{"stream": {"1"}}, fn)
}

// Events calls fn with each event as it happens, until ctx ends.
func (c *Client) Events(ctx context.Context, fn func(api.Event) error) error {
	return stream(c, ctx, "/events", nil, fn)
}

// Attach joins a running arrow's stdio: read frames of output
// (api.ReadFrame) from the reader, write input to the connection. An
// arrow that is not running is an [*Error] with status 409.
func (c *Client) Attach(ctx context.Context, ref string) (net.Conn, *bufio.Reader, error) {
	return c.AttachWith(ctx, ref, AttachOptions{})
}

// AttachOptions modify an attach.
type AttachOptions struct {
	// Next attaches to an arrow that is not running at its next start:
	// the call returns once the attach is registered, and the stream
	// then has all of that run's output (attach, then start).
	Next bool
	// StdinOnce ends the application's input when this attach's input
	// ends (the connection is half-closed).
	StdinOnce bool
}

// AttachWith is Attach with options.
func (c *Client) AttachWith(ctx context.Context, ref string, o AttachOptions) (net.Conn, *bufio.Reader, error) {
	q := url.Values{}
	if o.Next {
		q.Set("next", "1")
	}
	if o.StdinOnce {
		q.Set("stdin_once", "1")
	}
	return c.upgrade(ctx, http.MethodGet, ref, "attach", q, nil)
}

// Resize sets the size of a TTY arrow's terminal; set before a start, it
// is that run's initial size.
func (c *Client) Resize(ctx context.Context, ref string, rows, cols uint16) error {
	q := url.Values{"h": {strconv.Itoa(int(rows))}, "w": {strconv.Itoa(int(cols))}}
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/resize", q, nil, nil)
}

// Exec runs a process in a running arrow and opens its exec stream (see
// api.ExecStdin): read its output frames and, last, its exit
// (api.ReadExecFrame) from the reader; write input and control frames to
// the connection. An arrow that is not running is an [*Error] with status
// 409.
func (c *Client) Exec(ctx context.Context, ref string, cfg *api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c.upgrade(ctx, http.MethodPost, ref, "exec", nil, body)
}

// upgrade sends method /arrows/ref/kind, asking to switch to the
// arrow-kind protocol (with body as JSON when there is one), and
// returns the connection, its reader past the response, once arrowd
// switched. It is written by hand rather than with net/http because the
// connection goes on as a raw stream both ways.
func (c *Client) upgrade(ctx context.Context, method, ref, kind string, q url.Values, body []byte) (net.Conn, *bufio.Reader, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	query := ""
	if len(q) > 0 {
		query = "?" + q.Encode()
	}
	req := fmt.Sprintf("%s /%s/arrows/%s/%s%s HTTP/1.1\r\nHost: arrowd\r\nConnection: Upgrade\r\nUpgrade: arrow-%s\r\n", method, api.Version, url.PathEscape(ref), kind, query, kind)
	if body != nil {
		req += fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req += "\r\n"
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%s: %w", kind, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, nil, responseError(resp)
	}
	return conn, br, nil
}

// stream reads a JSON-lines response into fn.
func stream[T any](c *Client, ctx context.Context, path string, q url.Values, fn func(T) error) error {
	resp, err := c.send(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var v T
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("arrowd stream: %w", err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := "http://arrowd/" + api.Version + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, unwrapURL(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("arrowd answer: %w", err)
	}
	return nil
}

func responseError(resp *http.Response) error {
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(resp.Status + ": " + string(b))
	}
	return &Error{Status: resp.StatusCode, Message: e.Message}
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// CreateNetwork creates a bridge network.
func (c *Client) CreateNetwork(ctx context.Context, req *api.NetworkCreateRequest) (api.Network, error) {
	var n api.Network
	return n, c.do(ctx, http.MethodPost, "/networks", nil, req, &n)
}

// Networks lists the bridge networks.
func (c *Client) Networks(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	return out, c.do(ctx, http.MethodGet, "/networks", nil, nil, &out)
}

// Network returns a bridge network by name.
func (c *Client) Network(ctx context.Context, name string) (api.Network, error) {
	var n api.Network
	return n, c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &n)
}

// RemoveNetwork removes a bridge network no arrow is attached to.
func (c *Client) RemoveNetwork(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
}

// Pool lists the daemon's pool of spare VMs by machine shape.
func (c *Client) Pool(ctx context.Context) ([]api.PoolEntry, error) {
	var out []api.PoolEntry
	return out, c.do(ctx, http.MethodGet, "/pool", nil, nil, &out)
}

// SetPool sets how many spare VMs the daemon keeps for a machine shape,
// and returns the pool then.
func (c *Client) SetPool(ctx context.Context, req *api.PoolRequest) ([]api.PoolEntry, error) {
	var out []api.PoolEntry
	return out, c.do(ctx, http.MethodPost, "/pool", nil, req, &out)
}

// Metrics returns the daemon's Prometheus metrics, in the text exposition
// format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://arrowd/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return "", responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return string(b), err
}
