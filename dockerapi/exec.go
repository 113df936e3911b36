package dockerapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// Docker's exec is two requests: create records what to run under an
// ID, start runs it. Arrow's is one (Backend.Exec), so the server keeps
// the execs created and not yet forgotten: at most maxExecs, each
// forgotten execKeep after it ends (dockerd keeps them until their
// container goes; clients inspect an exec right after it ends).
const (
	maxExecs = 1024
	execKeep = 10 * time.Minute
)

// execStore holds the execs; its zero value is empty and ready.
type execStore struct {
	mu sync.Mutex
	m  map[string]*execEntry
}

// execEntry is one exec: its config and, once started, its state.
type execEntry struct {
	id          string
	containerID string
	cfg         api.ExecConfig
	req         container.ExecCreateRequest
	created     time.Time

	// Under execStore.mu:
	started bool
	running bool
	ended   time.Time
	exit    *int
	// control writes control frames to the running exec's stream
	// (resize); nil when it does not run.
	control func(stream byte, v any) error
}

// add records e under a new ID, forgetting what has ended long enough
// ago; it fails when maxExecs are kept and none may be forgotten.
func (st *execStore) add(e *execEntry, now time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.m == nil {
		st.m = map[string]*execEntry{}
	}
	for id, x := range st.m {
		if !x.ended.IsZero() && now.Sub(x.ended) > execKeep || !x.started && now.Sub(x.created) > execKeep {
			delete(st.m, id)
		}
	}
	if len(st.m) >= maxExecs {
		// Forget the oldest ended one rather than refuse.
		var oldest *execEntry
		for _, x := range st.m {
			if !x.ended.IsZero() && (oldest == nil || x.ended.Before(oldest.ended)) {
				oldest = x
			}
		}
		if oldest == nil {
			return &apiError{daemon.ErrConflict, fmt.Sprintf("too many execs (%d) created and not ended: start or let some end first", maxExecs)}
		}
		delete(st.m, oldest.id)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("exec ID: %w", err)
	}
	e.id = hex.EncodeToString(b)
	st.m[e.id] = e
	return nil
}

// get finds an exec by ID.
func (st *execStore) get(id string) (*execEntry, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if e, ok := st.m[id]; ok {
		return e, nil
	}
	return nil, notFoundf("No such exec instance: %s", id)
}

// idsOf lists the execs of a container (inspect's ExecIDs); nil for none.
func (st *execStore) idsOf(containerID string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for id, e := range st.m {
		if e.containerID == containerID && (e.running || !e.started) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// forgetContainer forgets a removed container's execs.
func (st *execStore) forgetContainer(containerID string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, e := range st.m {
		if e.containerID == containerID {
			delete(st.m, id)
		}
	}
}

// execRoutes are the exec endpoints.
func (s *Server) execRoutes() []route {
	return []route{
		{"POST /containers/{id}/exec", s.execCreate},
		{"POST /exec/{id}/start", s.execStart},
		{"POST /exec/{id}/resize", s.execResize},
		{"GET /exec/{id}/json", s.execInspect},
	}
}

// execConfigOf translates an exec's create request.
func execConfigOf(req *container.ExecCreateRequest) (api.ExecConfig, error) {
	switch {
	case req.Privileged:
		return api.ExecConfig{}, lacking("privileged execs (Privileged): each container is a VM with its own kernel")
	case req.DetachKeys != "":
		return api.ExecConfig{}, lacking("detach keys: close the client's connection to detach")
	case len(req.Cmd) == 0:
		return api.ExecConfig{}, invalidf("No exec command specified")
	}
	c := api.ExecConfig{Cmd: req.Cmd, Env: setEnv(req.Env), User: req.User, WorkingDir: req.WorkingDir, TTY: req.Tty, Stdin: req.AttachStdin}
	if req.ConsoleSize != nil && req.Tty {
		if req.ConsoleSize[0] > 0xffff || req.ConsoleSize[1] > 0xffff {
			return api.ExecConfig{}, invalidf("ConsoleSize %v: want at most 65535 rows and columns", *req.ConsoleSize)
		}
		c.Rows, c.Cols = uint16(req.ConsoleSize[0]), uint16(req.ConsoleSize[1])
	}
	if err := c.Validate(); err != nil {
		return api.ExecConfig{}, invalidf("%v", err)
	}
	return c, nil
}

func (s *Server) execCreate(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var req container.ExecCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	cfg, err := execConfigOf(&req)
	if err != nil {
		writeErr(w, err)
		return
	}
	if st := stateOf(&a); st != container.StateRunning {
		if st == container.StatePaused {
			writeError(w, http.StatusConflict, fmt.Sprintf("container %s is paused, unpause the container before exec", a.ID))
			return
		}
		writeError(w, http.StatusConflict, fmt.Sprintf("container %s is not running", a.ID))
		return
	}
	e := &execEntry{containerID: a.ID, cfg: cfg, req: req, created: time.Now()}
	if err := s.ctr.execs.add(e, e.created); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: e.id})
}

func (s *Server) execInspect(w http.ResponseWriter, r *http.Request) {
	e, err := s.ctr.execs.get(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	s.ctr.execs.mu.Lock()
	resp := container.ExecInspectResponse{
		ID:          e.id,
		Running:     e.running,
		ExitCode:    e.exit,
		OpenStdin:   e.req.AttachStdin,
		OpenStdout:  e.req.AttachStdout,
		OpenStderr:  e.req.AttachStderr,
		CanRemove:   !e.ended.IsZero(),
		ContainerID: e.containerID,
		ProcessConfig: &container.ExecProcessConfig{
			Tty:        e.cfg.TTY,
			Entrypoint: e.cfg.Cmd[0],
			Arguments:  nilToEmpty(e.cfg.Cmd[1:]),
			User:       e.cfg.User,
		},
	}
	s.ctr.execs.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) execResize(w http.ResponseWriter, r *http.Request) {
	e, err := s.ctr.execs.get(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	rows, cols, err := parseSize(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.ctr.execs.mu.Lock()
	control, tty := e.control, e.cfg.TTY
	s.ctr.execs.mu.Unlock()
	switch {
	case !tty:
		// As dockerd: the size of an exec without a TTY means nothing.
		w.WriteHeader(http.StatusOK)
		return
	case control == nil:
		writeError(w, http.StatusConflict, fmt.Sprintf("exec %s is not running", e.id))
		return
	}
	if err := control(api.ExecResize, api.ExecSize{Rows: rows, Cols: cols}); err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("exec %s: resize: %v", e.id, err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// execStart runs a created exec: detached, in the background; else over
// the hijacked connection, as attach.
func (s *Server) execStart(w http.ResponseWriter, r *http.Request) {
	e, err := s.ctr.execs.get(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var req container.ExecStartRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.ctr.execs.mu.Lock()
	if e.started {
		s.ctr.execs.mu.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("exec %s has already been started", e.id))
		return
	}
	e.started = true
	cfg := e.cfg
	s.ctr.execs.mu.Unlock()
	if req.ConsoleSize != nil && cfg.TTY && req.ConsoleSize[0] <= 0xffff && req.ConsoleSize[1] <= 0xffff && req.ConsoleSize[0] > 0 {
		cfg.Rows, cfg.Cols = uint16(req.ConsoleSize[0]), uint16(req.ConsoleSize[1])
	}
	if req.Detach {
		// Nothing reads its input: dockerd gives a detached exec none.
		cfg.Stdin = false
	}
	ctx := context.WithoutCancel(r.Context())
	sconn, sbr, err := s.b.Exec(ctx, e.containerID, &cfg)
	if err != nil {
		s.ctr.execs.mu.Lock()
		e.started = false
		s.ctr.execs.mu.Unlock()
		writeErr(w, err)
		return
	}
	var wmu sync.Mutex
	control := func(stream byte, v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return api.WriteExecControl(sconn, stream, v)
	}
	s.ctr.execs.mu.Lock()
	e.running, e.control = true, control
	s.ctr.execs.mu.Unlock()

	if req.Detach {
		w.WriteHeader(http.StatusOK)
		go func() {
			defer sconn.Close()
			code, err := relayExecOutput(sbr, nil, io.Discard)
			s.execEnded(e, code, err)
		}()
		return
	}
	defer sconn.Close()
	conn, cbr, err := hijack(w, r, streamContentType(r, cfg.TTY))
	if err != nil {
		s.execEnded(e, 0, err)
		return
	}
	defer conn.Close()
	out := &streamWriter{w: conn, raw: cfg.TTY}
	go func() {
		if !cfg.Stdin {
			_, _ = io.Copy(io.Discard, cbr)
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := cbr.Read(buf)
			if n > 0 {
				wmu.Lock()
				werr := api.WriteFrame(sconn, api.ExecStdin, buf[:n])
				wmu.Unlock()
				if werr != nil {
					return
				}
			}
			if err != nil {
				// The client's end of input is the process's.
				wmu.Lock()
				_ = api.WriteExecStdinClose(sconn)
				wmu.Unlock()
				return
			}
		}
	}()
	code, err := relayExecOutput(sbr, out, nil)
	s.execEnded(e, code, err)
}

// execEnded records how an exec ended.
func (s *Server) execEnded(e *execEntry, code int, err error) {
	if err != nil {
		fmt.Fprintf(s.opts.Log, "dockerapi: exec %.12s: %v\n", e.id, err)
	}
	s.ctr.execs.mu.Lock()
	defer s.ctr.execs.mu.Unlock()
	e.running, e.control, e.ended = false, nil, time.Now()
	e.exit = &code
}

// relayExecOutput passes the exec stream's output to out (or, when out is
// nil, to discard) until its exit frame, and returns the exit status: as
// docker exec gives it; 125 when the stream ended without one (Arrow
// failed).
func relayExecOutput(r *bufio.Reader, out *streamWriter, discard io.Writer) (int, error) {
	for {
		st, p, err := api.ReadExecFrame(r, api.StreamStdout, api.StreamStderr, api.StreamExit)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("exec stream ended without an exit status")
			}
			return 125, err
		}
		switch st {
		case api.StreamExit:
			var x api.ExecExit
			if err := api.DecodeExecControl(p, &x); err != nil {
				return 125, err
			}
			if x.Error != "" && out != nil {
				_ = out.write(stderrStream, []byte("arrow: "+x.Error+"\n"))
			}
			return x.ExitCode, nil
		default:
			if out == nil {
				_, _ = discard.Write(p)
				continue
			}
			if err := out.write(st, p); err != nil {
				// The client went: the process is given up as the
				// daemon's stream closes.
				return 125, fmt.Errorf("client: %w", err)
			}
		}
	}
}

// execCollect runs cmd in the container and returns its output and exit
// status (for top).
func (s *Server) execCollect(ctx context.Context, id string, cmd []string) (stdout, stderr []byte, code int, err error) {
	sconn, sbr, err := s.b.Exec(ctx, id, &api.ExecConfig{Cmd: cmd})
	if err != nil {
		return nil, nil, 0, err
	}
	defer sconn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = sconn.SetReadDeadline(dl)
	}
	var o, e bytes.Buffer
	for {
		st, p, err := api.ReadExecFrame(sbr, api.StreamStdout, api.StreamStderr, api.StreamExit)
		if err != nil {
			return o.Bytes(), e.Bytes(), 0, fmt.Errorf("exec %s: %w", cmd[0], err)
		}
		switch st {
		case api.StreamStdout:
			if o.Len() < 4<<20 {
				o.Write(p)
			}
		case api.StreamStderr:
			if e.Len() < 64<<10 {
				e.Write(p)
			}
		case api.StreamExit:
			var x api.ExecExit
			if err := api.DecodeExecControl(p, &x); err != nil {
				return o.Bytes(), e.Bytes(), 0, err
			}
			if x.Error != "" {
				e.WriteString(x.Error)
			}
			return o.Bytes(), e.Bytes(), x.ExitCode, nil
		}
	}
}
