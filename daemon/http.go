package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/logs"
	"github.com/arrowsys/arrow/shim"
)

// route is one endpoint: a pattern as [http.ServeMux] takes it, and its
// handler. api/openapi.yaml describes every one (see openapi_test.go).
type route struct {
	pattern string
	handler http.Handler
}

// routes lists the daemon's endpoints, all but the catch-all 404.
func (d *Daemon) routes() []route {
	v := "/" + api.Version
	return []route{
		{"GET " + v + "/info", http.HandlerFunc(d.handleInfo)},
		{"POST " + v + "/arrows", http.HandlerFunc(d.handleCreate)},
		{"GET " + v + "/arrows", http.HandlerFunc(d.handleList)},
		{"GET " + v + "/arrows/{ref}", http.HandlerFunc(d.handleInspect)},
		{"DELETE " + v + "/arrows/{ref}", http.HandlerFunc(d.handleRemove)},
		{"POST " + v + "/arrows/{ref}/start", http.HandlerFunc(d.handleStart)},
		{"POST " + v + "/arrows/{ref}/stop", http.HandlerFunc(d.handleStop)},
		{"POST " + v + "/arrows/{ref}/restart", http.HandlerFunc(d.handleRestart)},
		{"POST " + v + "/arrows/{ref}/kill", http.HandlerFunc(d.handleKill)},
		{"POST " + v + "/arrows/{ref}/wait", http.HandlerFunc(d.handleWait)},
		{"GET " + v + "/arrows/{ref}/logs", http.HandlerFunc(d.handleLogs)},
		{"GET " + v + "/arrows/{ref}/attach", http.HandlerFunc(d.handleAttach)},
		{"POST " + v + "/arrows/{ref}/resize", http.HandlerFunc(d.handleResize)},
		{"POST " + v + "/arrows/{ref}/exec", http.HandlerFunc(d.handleExec)},
		{"POST " + v + "/arrows/{ref}/pause", http.HandlerFunc(d.handlePause)},
		{"POST " + v + "/arrows/{ref}/unpause", http.HandlerFunc(d.handleUnpause)},
		{"POST " + v + "/arrows/{ref}/rename", http.HandlerFunc(d.handleRename)},
		{"POST " + v + "/networks", http.HandlerFunc(d.handleNetworkCreate)},
		{"GET " + v + "/networks", http.HandlerFunc(d.handleNetworkList)},
		{"GET " + v + "/networks/{name}", http.HandlerFunc(d.handleNetworkInspect)},
		{"DELETE " + v + "/networks/{name}", http.HandlerFunc(d.handleNetworkRemove)},
		{"POST " + v + "/volumes", http.HandlerFunc(d.handleVolumeCreate)},
		{"GET " + v + "/volumes", http.HandlerFunc(d.handleVolumeList)},
		{"GET " + v + "/volumes/{name}", http.HandlerFunc(d.handleVolumeInspect)},
		{"DELETE " + v + "/volumes/{name}", http.HandlerFunc(d.handleVolumeRemove)},
		{"POST " + v + "/volumes/prune", http.HandlerFunc(d.handleVolumePrune)},
		{"POST " + v + "/snapshots", http.HandlerFunc(d.handleSnapshotCreate)},
		{"GET " + v + "/snapshots", http.HandlerFunc(d.handleSnapshotList)},
		{"GET " + v + "/snapshots/{name}", http.HandlerFunc(d.handleSnapshotInspect)},
		{"DELETE " + v + "/snapshots/{name}", http.HandlerFunc(d.handleSnapshotRemove)},
		{"GET " + v + "/pool", http.HandlerFunc(d.handlePool)},
		{"POST " + v + "/pool", http.HandlerFunc(d.handlePoolSet)},
		{"GET " + v + "/stats", http.HandlerFunc(d.handleStats)},
		{"GET " + v + "/events", http.HandlerFunc(d.handleEvents)},
		{"GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{})},
	}
}

// Handler returns the daemon's HTTP API (see api/openapi.yaml) and its
// Prometheus metrics at /metrics.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range d.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s: no such endpoint (the API is under /%s)", r.Method, r.URL.Path, api.Version))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Message: msg})
}

// fail answers with the status err maps to.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, errorMessage(err))
}

// errorMessage is err as a client reads it: without the sentinel that
// chose its status.
func errorMessage(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{ErrNotFound, ErrInvalid, ErrConflict, ErrForbidden} {
		if errors.Is(err, sentinel) {
			msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
		}
	}
	return msg
}

// decodeBody decodes a JSON request body strictly: bounded, known fields
// only, one value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "want Content-Type application/json")
		return false
	}
	body := http.MaxBytesReader(w, r.Body, api.MaxRequestBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", api.MaxRequestBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	// Nothing but white space may follow (More misses a stray '}' or ']').
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "malformed JSON body: more than one value")
		return false
	}
	return true
}

// timeoutParam reads ?t= (seconds), def when absent.
func timeoutParam(r *http.Request, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("t")
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 || n > 24*3600 {
		return 0, fmt.Errorf("%w: t=%q: want seconds from 0 to 86400", ErrInvalid, s)
	}
	return time.Duration(n * float64(time.Second)), nil
}

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func (d *Daemon) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.Info())
}

func (d *Daemon) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	a, err := d.Create(r.Context(), &req)
	if err != nil && a.ID == "" {
		fail(w, err)
		return
	}
	// Created, even if its start failed: the arrow says why (as docker
	// keeps a container whose start failed).
	writeJSON(w, http.StatusCreated, a)
}

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.List(boolParam(r, "all")))
}

func (d *Daemon) handleInspect(w http.ResponseWriter, r *http.Request) {
	a, err := d.Get(r.PathValue("ref"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (d *Daemon) handleRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.Remove(r.Context(), r.PathValue("ref"), boolParam(r, "force")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleStart(w http.ResponseWriter, r *http.Request) {
	a, err := d.StartExisting(r.Context(), r.PathValue("ref"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (d *Daemon) stopTimeout(r *http.Request) (time.Duration, error) {
	def := 10 * time.Second
	if a, err := d.Get(r.PathValue("ref")); err == nil && a.Config.StopTimeout > 0 {
		def = time.Duration(a.Config.StopTimeout * float64(time.Second))
	}
	return timeoutParam(r, def)
}

func (d *Daemon) handleStop(w http.ResponseWriter, r *http.Request) {
	t, err := d.stopTimeout(r)
	if err != nil {
		fail(w, err)
		return
	}
	if err := d.Stop(r.Context(), r.PathValue("ref"), t); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleRestart(w http.ResponseWriter, r *http.Request) {
	t, err := d.stopTimeout(r)
	if err != nil {
		fail(w, err)
		return
	}
	a, err := d.Restart(r.Context(), r.PathValue("ref"), t)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (d *Daemon) handleKill(w http.ResponseWriter, r *http.Request) {
	sig := syscall.SIGKILL
	if s := r.URL.Query().Get("signal"); s != "" {
		var err error
		if sig, err = api.ParseSignal(s); err != nil {
			fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
			return
		}
	}
	if err := d.Kill(r.Context(), r.PathValue("ref"), sig); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) handleWait(w http.ResponseWriter, r *http.Request) {
	if boolParam(r, "next") {
		d.handleWaitNext(w, r)
		return
	}
	res, err := d.Wait(r.Context(), r.PathValue("ref"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleWaitNext answers a wait for the next run's end (next=1): the
// headers once the wait is registered, the status, or an api.Error, once
// that run ended.
func (d *Daemon) handleWaitNext(w http.ResponseWriter, r *http.Request) {
	wait, err := d.OpenWaitNext(r.PathValue("ref"))
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	res, err := wait(r.Context())
	if err != nil {
		if r.Context().Err() != nil && boolParam(r, "lease") {
			// The client went before the run ended: a foreground
			// arrow run that is killed takes its VM along.
			d.endLeased(r.PathValue("ref"))
		}
		_ = json.NewEncoder(w).Encode(api.Error{Message: errorMessage(err)})
		return
	}
	_ = json.NewEncoder(w).Encode(res)
}

// handleLogs streams the arrow's log as JSON lines of api.LogEntry. With
// follow=1 it goes on until the arrow ends (and is not restarting) or the
// client goes.
func (d *Daemon) handleLogs(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if _, err := d.resolve(ref); err != nil {
		fail(w, err)
		return
	}
	q := r.URL.Query()
	opts := logs.ReadOptions{Tail: -1, Follow: boolParam(r, "follow")}
	if s := q.Get("tail"); s != "" && s != "all" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			fail(w, fmt.Errorf("%w: tail=%q: want a count", ErrInvalid, s))
			return
		}
		opts.Tail = n
	}
	if s := q.Get("since"); s != "" {
		t, err := api.ParseSince(s, time.Now())
		if err != nil {
			fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
			return
		}
		opts.Since = t
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	err := d.Logs(r.Context(), ref, opts, func(e logs.Entry) error {
		if err := enc.Encode(api.LogEntry{Time: e.Time, Stream: e.Stream.String(), Line: string(e.Line), Partial: e.Partial}); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && r.Context().Err() == nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: logs of %s: %v\n", ref, err)
	}
}

// followGrace lets a log reader catch the last lines of a run that ended.
const followGrace = 300 * time.Millisecond

// cancelWhenDone calls cancel once a is no longer running or restarting.
func (d *Daemon) cancelWhenDone(ctx context.Context, a *arrow, cancel func()) {
	for {
		d.mu.Lock()
		st, removed, changed := a.rec.State, a.removed, a.nextChangeLocked()
		d.mu.Unlock()
		if removed || st == api.Exited || st == api.Created {
			select {
			case <-time.After(followGrace):
			case <-ctx.Done():
			}
			cancel()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// handleAttach upgrades the connection and joins it to the shim's attach
// stream: output frames from the shim, raw input to it. An arrow that is
// not running is refused, unless next=1: then it is attached when it
// next starts, and the 101 goes out once the attach is registered, so
// that a client may then start the arrow and miss nothing (see
// attach.go). Such a wait ends with the arrow's start, its removal or the
// daemon; a client that leaves meanwhile is noticed only then (its
// half-closed input cannot tell it from one that sent all its input).
func (d *Daemon) handleAttach(w http.ResponseWriter, r *http.Request) {
	o := AttachOptions{StdinOnce: boolParam(r, "stdin_once"), RunningOnly: !boolParam(r, "next")}
	at, err := d.OpenAttach(r.Context(), r.PathValue("ref"), o)
	if err != nil {
		fail(w, err)
		return
	}
	conn, brw, ok := upgrade(w, "arrow-attach")
	if !ok {
		at.Cancel()
		return
	}
	defer conn.Close()
	sconn, sbr, err := at.Wait(d.ctx)
	if err != nil {
		return
	}
	defer sconn.Close()
	relay(conn, brw, sconn, sbr)
}

// handleResize sets the size of a TTY arrow's terminal.
func (d *Daemon) handleResize(w http.ResponseWriter, r *http.Request) {
	ws, err := shim.ParseSize(r.URL.Query())
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	if err := d.Resize(r.Context(), r.PathValue("ref"), ws.Rows, ws.Cols); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// relayUpgrade switches the client's connection to protocol upgrade and
// joins it to a stream the shim opened (sconn, read through sbr): the
// shim's frames to the client, the client's to the shim. The daemon
// checks neither direction: the shim owns both streams' framing, so one
// relay serves attach and exec alike. The client's end of its stream
// half-closes the shim's, which ends the shim's input (for exec, gives
// the process up) while the shim's remaining output still flows back.
func relayUpgrade(w http.ResponseWriter, proto string, sconn net.Conn, sbr *bufio.Reader) {
	conn, brw, ok := upgrade(w, proto)
	if !ok {
		return
	}
	defer conn.Close()
	relay(conn, brw, sconn, sbr)
}

// upgrade answers 101, switching to protocol proto, and hijacks the
// client's connection; false when the connection broke.
func upgrade(w http.ResponseWriter, proto string) (net.Conn, *bufio.ReadWriter, bool) {
	w.Header().Set("Content-Type", "application/vnd.arrow.stream")
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", proto)
	w.WriteHeader(http.StatusSwitchingProtocols)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, brw, err := rc.Hijack()
	if err != nil {
		return nil, nil, false
	}
	return conn, brw, true
}

// relay joins the client's connection (conn, read through brw) to the
// shim's stream as relayUpgrade says.
func relay(conn net.Conn, brw *bufio.ReadWriter, sconn net.Conn, sbr *bufio.Reader) {
	go func() {
		_, _ = io.Copy(sconn, brw)
		if cw, ok := sconn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(conn, sbr)
}

// handleStats answers one sample of every running arrow, or with
// stream=1 a sample every second as JSON lines.
func (d *Daemon) handleStats(w http.ResponseWriter, r *http.Request) {
	if !boolParam(r, "stream") {
		writeJSON(w, http.StatusOK, d.Stats(500*time.Millisecond))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for r.Context().Err() == nil {
		if enc.Encode(d.Stats(time.Second)) != nil || rc.Flush() != nil {
			return
		}
	}
}

// handleEvents streams events as JSON lines as they happen.
func (d *Daemon) handleEvents(w http.ResponseWriter, r *http.Request) {
	c := d.events.subscribe()
	defer d.events.unsubscribe(c)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case e, ok := <-c:
			if !ok {
				return
			}
			if enc.Encode(e) != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-d.ctx.Done():
			return
		}
	}
}

// handleExec runs a further process in a running arrow and upgrades the
// connection to its exec stream (see api.ExecStdin), joined to the shim's:
// the shim starts the process and relays its frames.
func (d *Daemon) handleExec(w http.ResponseWriter, r *http.Request) {
	var cfg api.ExecConfig
	if !decodeBody(w, r, &cfg) {
		return
	}
	sconn, sbr, err := d.Exec(r.Context(), r.PathValue("ref"), &cfg)
	if err != nil {
		fail(w, err)
		return
	}
	defer sconn.Close()
	relayUpgrade(w, "arrow-exec", sconn, sbr)
}
