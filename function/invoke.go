package function

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// Request is an invocation: the body, and for an HTTP handler the method,
// path, query and headers it is sent with.
type Request struct {
	Method string
	// Path is the path the handler sees ("/" when empty), RawQuery its
	// query.
	Path, RawQuery string
	Header         http.Header
	Body           []byte
}

// Response is an invocation's answer: the handler's, or Arrow's refusal.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Start is "cold" (a clone started for it) or "warm" (a kept-warm
	// instance); empty when no instance served it.
	Start string
	// ExitCode is a handler of standard input's exit status.
	ExitCode *int
}

// refusal is Arrow's answer in the API's error format.
func refusal(status int, format string, args ...any) *Response {
	body, _ := jsonError(fmt.Sprintf(format, args...))
	return &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
}

// Invoke runs one invocation of the function name. Whatever happens the
// answer is a Response: 404 for no such function, 413 for a body over
// the function's limit, 429 when it runs its most invocations at once,
// 504 past its timeout, 502 for a response over the limit or a handler
// that broke, 500 for a handler of standard input that exited non-zero
// (its status in ExitCode), else the handler's own.
func (m *Manager) Invoke(ctx context.Context, name string, req *Request) *Response {
	t0 := time.Now()
	f, err := m.get(name)
	if err != nil {
		return refusal(http.StatusNotFound, "%v", err)
	}
	if int64(len(req.Body)) > f.def.MaxBodyBytes {
		return m.count(f, t0, refusal(http.StatusRequestEntityTooLarge, "function %s: the request body exceeds its limit of %d bytes", name, f.def.MaxBodyBytes))
	}
	f.mu.Lock()
	if f.inflight >= f.def.MaxInstances*f.def.Concurrency {
		n := f.inflight
		f.mu.Unlock()
		return m.count(f, t0, refusal(http.StatusTooManyRequests, "function %s runs %d invocations, its most at once (max instances %d, concurrency %d): %v",
			name, n, f.def.MaxInstances, f.def.Concurrency, ErrBusy))
	}
	f.inflight++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	timeout := time.Duration(f.def.Timeout * float64(time.Second))
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, start, err := m.acquire(ictx, f)
	if err != nil {
		if ictx.Err() != nil && ctx.Err() == nil {
			return m.count(f, t0, refusal(http.StatusGatewayTimeout, "function %s: no instance within its timeout of %v: %v", name, timeout, err))
		}
		return m.count(f, t0, refusal(http.StatusBadGateway, "function %s: %v", name, err))
	}
	var resp *Response
	if f.def.HTTPPort > 0 {
		resp = m.invokeHTTP(ictx, f, inst, req)
	} else {
		resp = m.invokeStdio(ictx, f, inst, req)
	}
	timedOut := ictx.Err() != nil && ctx.Err() == nil
	if timedOut {
		resp = refusal(http.StatusGatewayTimeout, "function %s did not answer within its timeout of %v", name, timeout)
	}
	resp.Start = start
	m.release(f, inst, timedOut || resp.Status == http.StatusBadGateway)
	return m.count(f, t0, resp)
}

// count records an invocation's metrics.
func (m *Manager) count(f *fn, t0 time.Time, r *Response) *Response {
	start := r.Start
	if start == "" {
		start = "none"
	}
	m.metrics.invocations.WithLabelValues(f.def.Name, start, strconv.Itoa(r.Status)).Inc()
	if r.Start != "" {
		m.metrics.latency.WithLabelValues(f.def.Name, start).Observe(time.Since(t0).Seconds())
	}
	return r
}

// acquire finds the instance an invocation runs in: with KeepWarm a
// kept-warm one that has room, else a new clone; a kept-warm function
// with MaxInstances instances, all busy or starting, waits for room.
func (m *Manager) acquire(ctx context.Context, f *fn) (*instance, string, error) {
	for {
		f.mu.Lock()
		if f.def.KeepWarm {
			var best *instance
			for _, inst := range f.instances {
				if inst.spent || inst.inflight < 0 || inst.inflight >= f.def.Concurrency {
					continue
				}
				if f.def.HTTPPort == 0 && inst.inflight > 0 {
					continue
				}
				if best == nil || inst.inflight < best.inflight {
					best = inst
				}
			}
			if best != nil {
				best.inflight++
				f.mu.Unlock()
				return best, "warm", nil
			}
		}
		if !f.def.KeepWarm || len(f.instances)+f.starting < f.def.MaxInstances {
			f.starting++
			f.mu.Unlock()
			inst, err := m.startInstance(ctx, f, true)
			f.mu.Lock()
			f.starting--
			f.mu.Unlock()
			if err != nil {
				return nil, "", err
			}
			return inst, "cold", nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// release hands an instance back after an invocation: a fresh clone, a
// spent handler of standard input or a broken instance is removed; a
// kept-warm handler of standard input has its successor made ready.
func (m *Manager) release(f *fn, inst *instance, broken bool) {
	f.mu.Lock()
	inst.inflight--
	inst.used = time.Now()
	if f.def.HTTPPort == 0 {
		inst.spent = true
	}
	drop := broken || inst.spent || !f.def.KeepWarm
	if drop {
		inst.inflight = -1 // nobody else may take it
	}
	prewarm := f.def.KeepWarm && f.def.HTTPPort == 0 && !f.removed
	if prewarm {
		// One ready successor at a time is enough to make the next
		// invocation warm; more would be the pool of a busy function.
		for _, other := range f.instances {
			if other != inst && !other.spent && other.inflight == 0 {
				prewarm = false
			}
		}
	}
	f.mu.Unlock()
	if drop {
		m.dropLater(f, inst.id)
	}
	if prewarm {
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
			defer cancel()
			if _, err := m.startInstance(ctx, f, false); err != nil && m.ctx.Err() == nil {
				fmt.Fprintf(m.log, "arrowd: function %s: a kept-warm instance: %v\n", f.def.Name, err)
			}
		}()
	}
}

// hopHeaders are not passed on by a proxy (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// invokeHTTP sends the request to an HTTP handler's instance and returns
// its response, bounded by the function's limit.
func (m *Manager) invokeHTTP(ctx context.Context, f *fn, inst *instance, req *Request) *Response {
	path := req.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	url := "http://127.0.0.1:" + strconv.Itoa(inst.port) + path
	if req.RawQuery != "" {
		url += "?" + req.RawQuery
	}
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	hreq, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(req.Body))
	if err != nil {
		return refusal(http.StatusBadRequest, "function %s: %v", f.def.Name, err)
	}
	for k, vs := range req.Header {
		hreq.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		hreq.Header.Del(h)
	}
	hreq.Host = "127.0.0.1"
	resp, err := http.DefaultTransport.RoundTrip(hreq)
	if err != nil {
		return refusal(http.StatusBadGateway, "function %s: the handler: %v", f.def.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.def.MaxBodyBytes+1))
	if err != nil {
		return refusal(http.StatusBadGateway, "function %s: the handler's response: %v", f.def.Name, err)
	}
	if int64(len(body)) > f.def.MaxBodyBytes {
		return refusal(http.StatusBadGateway, "function %s: the handler's response exceeds its limit of %d bytes", f.def.Name, f.def.MaxBodyBytes)
	}
	h := resp.Header.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	h.Del("Content-Length")
	return &Response{Status: resp.StatusCode, Header: h, Body: body}
}

// invokeStdio gives a handler of standard input the body and returns
// what it wrote to its standard output, once it exited.
func (m *Manager) invokeStdio(ctx context.Context, f *fn, inst *instance, req *Request) *Response {
	conn, br, err := m.b.AttachWith(ctx, inst.id, daemon.AttachOptions{StdinOnce: true, RunningOnly: true})
	if err != nil {
		return refusal(http.StatusBadGateway, "function %s: attach: %v", f.def.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	go func() {
		_, _ = conn.Write(req.Body)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	var out bytes.Buffer
	var errTail tailBuffer
	tooBig := false
	for {
		s, p, err := api.ReadFrame(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return refusal(http.StatusBadGateway, "function %s: the handler's output: %v", f.def.Name, err)
		}
		if s == api.StreamStderr {
			errTail.Write(p)
			continue
		}
		if int64(out.Len()+len(p)) > f.def.MaxBodyBytes {
			tooBig = true
			continue
		}
		out.Write(p)
	}
	w, err := m.b.Wait(ctx, inst.id)
	if err != nil {
		return refusal(http.StatusBadGateway, "function %s: the handler's end: %v", f.def.Name, err)
	}
	if tooBig {
		return refusal(http.StatusBadGateway, "function %s: the handler's response exceeds its limit of %d bytes", f.def.Name, f.def.MaxBodyBytes)
	}
	code := w.ExitCode
	if code != 0 {
		msg := fmt.Sprintf("function %s: the handler exited with status %d", f.def.Name, code)
		if t := strings.TrimSpace(errTail.String()); t != "" {
			msg += ": " + t
		}
		r := refusal(http.StatusInternalServerError, "%s", msg)
		r.ExitCode = &code
		return r
	}
	return &Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/octet-stream"}}, Body: out.Bytes(), ExitCode: &code}
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
}

func (t *tailBuffer) String() string { return string(t.b) }
