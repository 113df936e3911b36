package function

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/logs"
)

// Response headers of an invocation.
const (
	// HeaderStart says how the invocation's instance started: cold or
	// warm.
	HeaderStart = "X-Arrow-Function-Start"
	// HeaderExitCode is a handler of standard input's exit status.
	HeaderExitCode = "X-Arrow-Exit-Code"
)

// maxCreateBytes bounds a create request (a config, as arrowd's).
const maxCreateBytes = api.MaxRequestBytes

// Routes returns the functions' endpoints of arrowd's API, under /v1,
// for a mux in front of the daemon's own (api/openapi.yaml describes
// them).
func (m *Manager) Routes() map[string]http.Handler {
	v := "/" + api.Version
	return map[string]http.Handler{
		"POST " + v + "/functions":               http.HandlerFunc(m.handleCreate),
		"GET " + v + "/functions":                http.HandlerFunc(m.handleList),
		"GET " + v + "/functions/{name}":         http.HandlerFunc(m.handleGet),
		"DELETE " + v + "/functions/{name}":      http.HandlerFunc(m.handleRemove),
		"POST " + v + "/functions/{name}/invoke": http.HandlerFunc(m.handleInvoke),
		"GET " + v + "/functions/{name}/logs":    http.HandlerFunc(m.handleLogs),
	}
}

// InvokeHandler serves POST /function/NAME[/PATH] alone: the front door
// of --functions-addr. An HTTP handler sees /PATH ("/" without one).
func (m *Manager) InvokeHandler() http.Handler {
	mux := http.NewServeMux()
	invoke := func(w http.ResponseWriter, r *http.Request) {
		m.serveInvoke(w, r, r.PathValue("name"), "/"+r.PathValue("path"))
	}
	mux.HandleFunc("/function/{name}", invoke)
	mux.HandleFunc("/function/{name}/{path...}", invoke)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: invoke a function with POST /function/NAME")
	})
	return mux
}

func (m *Manager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.FunctionCreateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCreateBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxCreateBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return
	}
	f, err := m.Create(r.Context(), &req)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, m.List())
}

func (m *Manager) handleGet(w http.ResponseWriter, r *http.Request) {
	f, err := m.Get(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (m *Manager) handleRemove(w http.ResponseWriter, r *http.Request) {
	if err := m.Remove(r.Context(), r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Manager) handleInvoke(w http.ResponseWriter, r *http.Request) {
	m.serveInvoke(w, r, r.PathValue("name"), "/")
}

// serveInvoke reads the request's body, at most one byte over the
// function's limit, invokes and writes the response.
func (m *Manager) serveInvoke(w http.ResponseWriter, r *http.Request, name, path string) {
	max := int64(api.MaxFunctionBodyBytes)
	if f, err := m.get(name); err == nil {
		max = f.def.MaxBodyBytes
	}
	var body []byte
	if r.ContentLength > max {
		// Refused unread, as it would be read: Invoke says why.
		body = make([]byte, max+1)
	} else {
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, max+1)); err != nil {
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
	}
	resp := m.Invoke(r.Context(), name, &Request{Method: r.Method, Path: path, RawQuery: r.URL.RawQuery, Header: r.Header, Body: body})
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if resp.Start != "" {
		w.Header().Set(HeaderStart, resp.Start)
	}
	if resp.ExitCode != nil {
		w.Header().Set(HeaderExitCode, strconv.Itoa(*resp.ExitCode))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

func (m *Manager) handleLogs(w http.ResponseWriter, r *http.Request) {
	f, err := m.get(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	opts := logs.ReadOptions{Tail: -1}
	if s := r.URL.Query().Get("tail"); s != "" && s != "all" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("tail=%q: want a count", s))
			return
		}
		opts.Tail = n
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	_ = logs.Read(r.Context(), f.dir+"/log", opts, func(e logs.Entry) error {
		return enc.Encode(api.LogEntry{Time: e.Time, Stream: e.Stream.String(), Line: string(e.Line), Partial: e.Partial})
	})
}

// fail answers with the status err maps to.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, daemon.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid), errors.Is(err, daemon.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrExists), errors.Is(err, daemon.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, daemon.ErrForbidden):
		code = http.StatusForbidden
	}
	msg := err.Error()
	for _, s := range []error{ErrInvalid, daemon.ErrInvalid, daemon.ErrConflict, daemon.ErrForbidden, daemon.ErrNotFound} {
		msg = strings.ReplaceAll(msg, s.Error()+": ", "")
	}
	writeError(w, code, msg)
}

func jsonError(msg string) ([]byte, error) { return json.Marshal(api.Error{Message: msg}) }

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
