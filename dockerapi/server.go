package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/common"

	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/image/store"
)

// The API versions served: from dockerd's own minimum to the docker CLI
// of the development machines (28.x speaks 1.50).
const (
	MinVersion = "1.24"
	MaxVersion = "1.50"
)

// Options configure a [Server].
type Options struct {
	// Backend is arrowd.
	Backend Backend
	// Images opens the image store (at the daemon's data root) for the
	// image endpoints; it is called per request, so that a store
	// another Arrow command changed is seen as it is now.
	Images func() (*store.Store, error)
	// Version is Arrow's version, reported by /version.
	Version string
	// Root is the daemon's data root, reported by /info.
	Root string
	// Log receives diagnostics the client is not told.
	Log io.Writer
}

// Server answers the Docker Engine API.
type Server struct {
	b    Backend
	opts Options
	mux  *http.ServeMux
	// ctr is the state of the container and exec endpoints
	// (containers.go).
	ctr containerState
}

// New returns a Server over opts.Backend.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	s := &Server{b: opts.Backend, opts: opts, mux: http.NewServeMux()}
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, rt.handler)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("page not found: Arrow does not serve %s %s of the Docker Engine API", r.Method, r.URL.Path))
	})
	return s
}

// route is one endpoint: a pattern as [http.ServeMux] takes it, without
// the version prefix, and its handler.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// ServeHTTP strips and checks the version prefix, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Api-Version", MaxVersion)
	h.Set("Docker-Experimental", "false")
	h.Set("Ostype", "linux")
	h.Set("Server", "Arrow/"+s.opts.Version+" (linux)")
	if v, rest, ok := splitVersion(r.URL.Path); ok {
		if err := checkVersion(v); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		r = r.Clone(r.Context())
		r.URL.Path = rest
		r.URL.RawPath = ""
		r = r.WithContext(context.WithValue(r.Context(), versionKey{}, v))
	}
	s.mux.ServeHTTP(w, r)
}

type versionKey struct{}

// versionOf is the API version the request asked for: MaxVersion when its
// path named none.
func versionOf(r *http.Request) string {
	if v, ok := r.Context().Value(versionKey{}).(string); ok {
		return v
	}
	return MaxVersion
}

// splitVersion splits /v1.47/containers/json into "1.47" and
// /containers/json.
func splitVersion(path string) (v, rest string, ok bool) {
	if !strings.HasPrefix(path, "/v") {
		return "", path, false
	}
	end := strings.IndexByte(path[1:], '/')
	if end < 0 {
		return "", path, false
	}
	v = path[2 : end+1]
	if _, _, ok := parseVersion(v); !ok {
		return "", path, false
	}
	return v, path[end+1:], true
}

// parseVersion parses MAJOR.MINOR.
func parseVersion(v string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(v, ".")
	if !found || len(a) > 3 || len(b) > 3 {
		return 0, 0, false
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(a)
	minor, err2 = strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil && major >= 0 && minor >= 0
}

// versionLess reports whether a < b; both valid versions.
func versionLess(a, b string) bool {
	amaj, amin, _ := parseVersion(a)
	bmaj, bmin, _ := parseVersion(b)
	return amaj < bmaj || amaj == bmaj && amin < bmin
}

// atLeast reports whether the request's API version is v or newer.
func atLeast(r *http.Request, v string) bool { return !versionLess(versionOf(r), v) }

func checkVersion(v string) error {
	switch {
	case versionLess(v, MinVersion):
		return fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, MinVersion)
	case versionLess(MaxVersion, v):
		return fmt.Errorf("client version %s is too new. Maximum supported API version is %s", v, MaxVersion)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in Docker's error shape.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, common.ErrorResponse{Message: msg})
}

// errNotImplemented marks what Arrow lacks: answered 501 with its message.
var errNotImplemented = errors.New("not implemented by Arrow")

// writeErr answers err with the status dockerd gives the same condition:
// the daemon's sentinels map as they do on arrowd's own API.
func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, daemon.ErrNotFound), errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, daemon.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, daemon.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, daemon.ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, errNotImplemented):
		code = http.StatusNotImplemented
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	msg := err.Error()
	for _, sentinel := range []error{daemon.ErrNotFound, daemon.ErrInvalid, daemon.ErrConflict, daemon.ErrForbidden} {
		if errors.Is(err, sentinel) {
			msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
		}
	}
	writeError(w, code, msg)
}

// lacks answers an endpoint or option Arrow does not have: 501, saying
// what is missing.
func lacks(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotImplemented, "Arrow does not support "+what)
}

// decodeBody decodes a JSON request body, bounded. Unknown fields are
// allowed: clients of every version send what their version has.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, maxRequestBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxRequestBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

// maxRequestBytes bounds a JSON request body.
const maxRequestBytes = 1 << 20

func boolParam(r *http.Request, name string) bool {
	s := r.URL.Query().Get(name)
	v, err := strconv.ParseBool(s)
	return err == nil && v || s == "yes"
}
