package dockerapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/logs"
)

// containerState is what the Server keeps for the container and exec
// endpoints.
type containerState struct {
	execs execStore
	// sweep is done once, at the first container request: see
	// sweepAutoRemove.
	sweep sync.Once
	// restarts are the containers a docker restart is restarting: their
	// auto-removers must not take the old run's end for the last one.
	restarts restarts
}

// restarts marks containers while docker restart restarts them. The old
// run ends inside Restart, before the new one is recorded; a remover that
// woke then and saw the container exited would remove (and kill) the new
// run, which dockerd avoids by holding AutoRemove off during a restart.
type restarts struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// begin marks id as restarting until end is called.
func (rs *restarts) begin(id string) (end func()) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = make(map[string]chan struct{})
	}
	if _, ok := rs.m[id]; ok {
		// Another restart of it is under way: the daemon serializes
		// them, and that one's end releases the removers.
		return func() {}
	}
	ch := make(chan struct{})
	rs.m[id] = ch
	return func() {
		rs.mu.Lock()
		delete(rs.m, id)
		rs.mu.Unlock()
		close(ch)
	}
}

// during returns a channel closed when id's restart ends, or nil when
// none is under way.
func (rs *restarts) during(id string) <-chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[id]
}

// containerRoutes are the container endpoints.
func (s *Server) containerRoutes() []route {
	rs := []route{
		{"POST /containers/create", s.containerCreate},
		{"GET /containers/json", s.containerList},
		{"POST /containers/prune", s.containerPrune},
		{"GET /containers/{id}/json", s.containerInspect},
		{"POST /containers/{id}/start", s.containerStart},
		{"POST /containers/{id}/stop", s.containerStop},
		{"POST /containers/{id}/kill", s.containerKill},
		{"POST /containers/{id}/restart", s.containerRestart},
		{"POST /containers/{id}/wait", s.containerWait},
		{"POST /containers/{id}/attach", s.containerAttach},
		{"GET /containers/{id}/logs", s.containerLogs},
		{"GET /containers/{id}/top", s.containerTop},
		{"GET /containers/{id}/stats", s.containerStats},
		{"POST /containers/{id}/rename", s.containerRename},
		{"POST /containers/{id}/resize", s.containerResize},
		{"POST /containers/{id}/pause", s.containerPause},
		{"POST /containers/{id}/unpause", s.containerUnpause},
		{"DELETE /containers/{id}", s.containerRemove},
		{"GET /containers/{id}/attach/ws", s.lacksHandler("attaching over a websocket: use POST /containers/{id}/attach")},
		{"GET /containers/{id}/archive", s.lacksHandler("copying files from a container (docker cp): mount a volume or bind a host directory (-v) instead")},
		{"HEAD /containers/{id}/archive", s.lacksHandler("copying files from a container (docker cp): mount a volume or bind a host directory (-v) instead")},
		{"PUT /containers/{id}/archive", s.lacksHandler("copying files into a container (docker cp): mount a volume or bind a host directory (-v) instead")},
		{"GET /containers/{id}/export", s.lacksHandler("exporting a container's file system (docker export)")},
		{"GET /containers/{id}/changes", s.lacksHandler("listing a container's file system changes (docker diff)")},
		{"POST /containers/{id}/update", s.lacksHandler("updating a container's resources (docker update): its VM's memory and CPUs are fixed when it starts; create it again")},
		{"POST /commit", s.lacksHandler("committing a container to an image (docker commit): build the image elsewhere and docker load it")},
		{"GET /containers/{id}/checkpoints", s.lacksHandler("checkpoints")},
		{"POST /containers/{id}/checkpoints", s.lacksHandler("checkpoints")},
		{"DELETE /containers/{id}/checkpoints/{checkpoint}", s.lacksHandler("checkpoints")},
	}
	for i, rt := range rs {
		h := rt.handler
		rs[i].handler = func(w http.ResponseWriter, r *http.Request) {
			s.ctr.sweep.Do(func() { s.sweepAutoRemove(context.WithoutCancel(r.Context())) })
			h(w, r)
		}
	}
	return rs
}

// sweepAutoRemove takes over the auto-removal of the containers whose
// remover (a goroutine of the server that started them) is gone: arrowd
// restarted while they ran, and its shims kept them running. Those that
// run get a remover again; those that ended meanwhile go now.
func (s *Server) sweepAutoRemove(ctx context.Context) {
	for _, a := range s.b.List(true) {
		if !extraOf(a.Config.Labels).AutoRemove {
			continue
		}
		switch stateOf(&a) {
		case container.StateCreated:
			// Never started: it stays until started, as in dockerd.
		case container.StateExited:
			if err := s.b.Remove(ctx, a.ID, false); err != nil && !errors.Is(err, daemon.ErrNotFound) {
				fmt.Fprintf(s.opts.Log, "dockerapi: auto-remove %.12s: %v\n", a.ID, err)
			}
		default:
			go s.autoRemove(ctx, a.ID)
		}
	}
}

// lacksHandler answers an endpoint Arrow does not have.
func (s *Server) lacksHandler(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { lacks(w, what) }
}

// getContainer finds a container by ID, ID prefix or name (with or
// without Docker's leading "/"); its error is Docker's 404.
func (s *Server) getContainer(ref string) (api.Arrow, error) {
	ref = strings.TrimPrefix(ref, "/")
	a, err := s.b.Get(ref)
	if errors.Is(err, daemon.ErrNotFound) {
		return api.Arrow{}, notFoundf("No such container: %s", ref)
	}
	return a, err
}

// containerCreate records a container: an arrow that is Created until
// started.
func (s *Server) containerCreate(w http.ResponseWriter, r *http.Request) {
	var req container.CreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	t := translator{
		image:     func(ref string) (imageInfo, error) { return s.lookupImage(r.Context(), ref) },
		freePorts: freePorts,
	}
	creq, warnings, err := t.translate(r.URL.Query().Get("name"), &req)
	if err != nil {
		writeErr(w, err)
		return
	}
	if p := r.URL.Query().Get("platform"); p != "" && p != "linux" && !strings.HasPrefix(p, "linux/") {
		writeErr(w, lacking("the platform %q: containers are Linux VMs", p))
		return
	}
	a, err := s.b.Create(r.Context(), creq)
	if err != nil {
		writeErr(w, err)
		return
	}
	if warnings == nil {
		warnings = []string{}
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: a.ID, Warnings: warnings})
}

// gatewayOf is the gateway of a bridge network, "" when there is none.
func (s *Server) gatewayOf(a *api.Arrow) string {
	if a.Endpoint == nil || a.Config.Network == "" || a.Config.Network == "user" || a.Config.Network == "none" {
		return ""
	}
	n, err := s.b.NetworkGet(a.Config.Network)
	if err != nil {
		return ""
	}
	return n.Gateway
}

func (s *Server) containerInspect(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	resp := inspectOf(&a, s.imageOf(r.Context(), s.openImages(), a.Config.Image), s.gatewayOf(&a))
	shortIDAlias(&a, &resp)
	resp.ExecIDs = s.ctr.execs.idsOf(a.ID)
	if boolParam(r, "size") {
		zero := int64(0)
		resp.SizeRw, resp.SizeRootFs = &zero, &zero
	}
	writeJSON(w, http.StatusOK, resp)
}

// shortIDAlias adds the container's short ID to its aliases on a bridge
// network, as API versions before 1.45 showed them, whatever the version:
// docker-compose 1.29 disconnects and connects again a container whose
// aliases lack it (to set its aliases, which Arrow set at create), and an
// arrow cannot leave its network (dockerd 1.45 and later put the short ID
// in DNSNames, where it is too).
func shortIDAlias(a *api.Arrow, resp *container.InspectResponse) {
	if len(a.ID) < 12 || a.Config.Network == "" || a.Config.Network == "user" || a.Config.Network == "none" {
		return
	}
	for _, es := range resp.NetworkSettings.Networks {
		if !slices.Contains(es.Aliases, a.ID[:12]) {
			es.Aliases = append(slices.Clone(es.Aliases), a.ID[:12])
		}
	}
}

func (s *Server) containerList(w http.ResponseWriter, r *http.Request) {
	f, err := parseDockerFilters(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	cf, err := newContainerFilter(f, containerFilterKeys)
	if err != nil {
		writeErr(w, err)
		return
	}
	limit := -1
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil {
			writeErr(w, invalidf("limit %q: want a number", v))
			return
		}
	}
	all := boolParam(r, "all") || limit > 0 || len(f["status"]) > 0 || len(f["exited"]) > 0
	st := s.openImages()
	if st != nil && len(f["ancestor"]) > 0 {
		if imgs, err := st.List(r.Context()); err == nil {
			cf.resolveAncestors(imgs)
		}
	}
	gateways := map[string]string{}
	now := time.Now()
	out := []container.Summary{}
	for _, a := range s.b.List(all) {
		img := s.imageOf(r.Context(), st, a.Config.Image)
		if !cf.match(&a, img.ID) {
			continue
		}
		gw, ok := gateways[a.Config.Network]
		if !ok {
			gw = s.gatewayOf(&a)
			gateways[a.Config.Network] = gw
		}
		out = append(out, summaryOf(&a, img, gw, now))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// containerStart starts a created or exited container; 304 when it runs.
func (s *Server) containerStart(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if r.URL.Query().Get("checkpoint") != "" {
		writeErr(w, lacking("starting from a checkpoint"))
		return
	}
	if st := stateOf(&a); st == container.StateRunning || st == container.StatePaused {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	x := extraOf(a.Config.Labels)
	started, err := s.b.Start(r.Context(), a.ID)
	if x.AutoRemove {
		// Whether the start succeeded or its run ended at once, the
		// container goes when it is no longer running.
		go s.autoRemove(context.WithoutCancel(r.Context()), a.ID)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	if a.Config.TTY && x.ConsoleSize[0] > 0 && x.ConsoleSize[1] > 0 && x.ConsoleSize[0] <= 0xffff && x.ConsoleSize[1] <= 0xffff {
		_ = s.b.Resize(r.Context(), started.ID, uint16(x.ConsoleSize[0]), uint16(x.ConsoleSize[1]))
	}
	w.WriteHeader(http.StatusNoContent)
}

// autoRemove removes a container once its run ends (HostConfig.AutoRemove).
// A restart (by the restart policy, or docker restart: see restarts) is a
// run that goes on: it waits for that one too.
func (s *Server) autoRemove(ctx context.Context, id string) {
	for {
		if _, err := s.b.Wait(ctx, id); err != nil {
			if errors.Is(err, daemon.ErrNotFound) {
				return
			}
			fmt.Fprintf(s.opts.Log, "dockerapi: auto-remove %.12s: wait: %v\n", id, err)
			return
		}
		if ch := s.ctr.restarts.during(id); ch != nil {
			select {
			case <-ch:
				continue // the restarted run is the one to wait for
			case <-ctx.Done():
				return
			}
		}
		a, err := s.b.Get(id)
		if err != nil {
			return // gone already
		}
		switch stateOf(&a) {
		case container.StateRunning, container.StatePaused, container.StateRestarting:
			continue
		}
		if err := s.b.Remove(ctx, id, true); err != nil && !errors.Is(err, daemon.ErrNotFound) {
			fmt.Fprintf(s.opts.Log, "dockerapi: auto-remove %.12s: %v\n", id, err)
		}
		return
	}
}

// stopTimeout is ?t, else the container's own stop timeout, else
// dockerd's 10 seconds.
func stopTimeout(r *http.Request, a *api.Arrow) (time.Duration, error) {
	v := r.URL.Query().Get("t")
	if v == "" {
		if a.Config.StopTimeout > 0 {
			return time.Duration(a.Config.StopTimeout * float64(time.Second)), nil
		}
		return 10 * time.Second, nil
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return 0, invalidf("t %q: want a number of seconds", v)
	case n < 0:
		// -1: wait for ever. Arrow bounds it by a day.
		return api.MaxTimeoutSeconds * time.Second, nil
	case n > api.MaxTimeoutSeconds:
		return 0, invalidf("t %d: at most %d seconds", n, api.MaxTimeoutSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// containerStop stops a container: 304 when it was not running.
func (s *Server) containerStop(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if sig := r.URL.Query().Get("signal"); sig != "" {
		n, err := api.ParseSignal(sig)
		if err != nil {
			writeErr(w, invalidf("%v", err))
			return
		}
		if n != syscall.SIGTERM {
			writeErr(w, lacking("stopping with %s: Arrow stops with SIGTERM, then SIGKILL (send another signal with kill)", n))
			return
		}
	}
	timeout, err := stopTimeout(r, &a)
	if err != nil {
		writeErr(w, err)
		return
	}
	if st := stateOf(&a); st == container.StateExited || st == container.StateCreated {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := s.b.Stop(r.Context(), a.ID, timeout); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerKill(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	sig := syscall.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		if sig, err = api.ParseSignal(v); err != nil {
			writeErr(w, invalidf("%v", err))
			return
		}
	}
	if st := stateOf(&a); st != container.StateRunning && st != container.StatePaused {
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot kill container: %s: container %s is not running", a.Name, a.ID))
		return
	}
	if err := s.b.Kill(r.Context(), a.ID, sig); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerRestart(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if sig := r.URL.Query().Get("signal"); sig != "" {
		if n, err := api.ParseSignal(sig); err != nil || n != syscall.SIGTERM {
			writeErr(w, lacking("restarting with the stop signal %q: Arrow stops with SIGTERM", sig))
			return
		}
	}
	timeout, err := stopTimeout(r, &a)
	if err != nil {
		writeErr(w, err)
		return
	}
	end := s.ctr.restarts.begin(a.ID)
	_, err = s.b.Restart(r.Context(), a.ID, timeout)
	end()
	if err != nil {
		writeErr(w, err)
		return
	}
	if extraOf(a.Config.Labels).AutoRemove && stateOf(&a) != container.StateRunning && stateOf(&a) != container.StatePaused {
		// Not running before, so no remover waits on it.
		go s.autoRemove(context.WithoutCancel(r.Context()), a.ID)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerRename(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	if !api.ValidName(name) {
		writeErr(w, invalidf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
		return
	}
	if err := s.b.Rename(r.Context(), a.ID, name); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseSize reads ?h and ?w, a terminal's rows and columns.
func parseSize(r *http.Request) (rows, cols uint16, err error) {
	h, err1 := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
	wd, err2 := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, invalidf("resize: want h and w, the terminal's rows and columns, from 0 to 65535")
	}
	return uint16(h), uint16(wd), nil
}

func (s *Server) containerResize(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	rows, cols, err := parseSize(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !a.Config.TTY {
		// dockerd ignores the size of a container without a TTY; the CLI
		// sends it whenever its own terminal is one.
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := s.b.Resize(r.Context(), a.ID, rows, cols); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) containerPause(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := s.b.Pause(r.Context(), a.ID); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerUnpause(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := s.b.Unpause(r.Context(), a.ID); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerRemove removes a container; ?v (its anonymous volumes) has
// nothing to do, as Arrow has no anonymous volumes: named ones stay, as
// in dockerd.
func (s *Server) containerRemove(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if boolParam(r, "link") {
		writeErr(w, lacking("legacy links (?link)"))
		return
	}
	force := boolParam(r, "force")
	if st := stateOf(&a); !force && (st == container.StateRunning || st == container.StatePaused || st == container.StateRestarting) {
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot remove container \"/%s\": container is %s: stop the container before removing or force remove", a.Name, st))
		return
	}
	if err := s.b.Remove(r.Context(), a.ID, force); err != nil {
		if errors.Is(err, daemon.ErrNotFound) {
			err = notFoundf("No such container: %s", r.PathValue("id"))
		}
		writeErr(w, err)
		return
	}
	s.ctr.execs.forgetContainer(a.ID)
	w.WriteHeader(http.StatusNoContent)
}

// containerPrune removes the containers that are not running.
func (s *Server) containerPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseDockerFilters(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	cf, err := newContainerFilter(f, []string{"label", "until"})
	if err != nil {
		writeErr(w, err)
		return
	}
	rep := container.PruneReport{ContainersDeleted: []string{}}
	for _, a := range s.b.List(true) {
		if st := stateOf(&a); st != container.StateExited && st != container.StateCreated || !cf.match(&a, "") {
			continue
		}
		if err := s.b.Remove(r.Context(), a.ID, false); err != nil {
			if errors.Is(err, daemon.ErrNotFound) || errors.Is(err, daemon.ErrConflict) {
				continue // gone, or started, meanwhile
			}
			writeErr(w, err)
			return
		}
		s.ctr.execs.forgetContainer(a.ID)
		rep.ContainersDeleted = append(rep.ContainersDeleted, a.ID)
	}
	writeJSON(w, http.StatusOK, rep)
}

// containerWait answers when the container reaches the condition:
// not-running (the default: at once if it is not running), next-exit (the
// end of its next run, even if it has not started: the docker CLI waits
// before it starts), removed. The status line goes out at once, as
// dockerd sends it, so that the client knows the wait is in place; the
// body comes when the wait ends.
func (s *Server) containerWait(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	cond := container.WaitCondition(r.URL.Query().Get("condition"))
	switch cond {
	case "", container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		writeErr(w, invalidf("invalid condition: %q: want not-running, next-exit or removed", cond))
		return
	}
	ctx := r.Context()
	// Subscribe before looking at the state, so that no end is missed
	// between the two.
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := s.b.Events(evctx)
	a, err = s.getContainer(a.ID)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	code, werr := s.waitFor(ctx, &a, cond, events)
	if ctx.Err() != nil {
		return
	}
	resp := container.WaitResponse{StatusCode: int64(code)}
	if werr != nil {
		resp.Error = &container.WaitExitError{Message: werr.Error()}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// waitFor waits for a (as it was after events was subscribed to) to reach
// cond, and returns the exit status of its run.
func (s *Server) waitFor(ctx context.Context, a *api.Arrow, cond container.WaitCondition, events <-chan api.Event) (int, error) {
	running := func(a *api.Arrow) bool {
		st := stateOf(a)
		return st == container.StateRunning || st == container.StatePaused || st == container.StateRestarting
	}
	if cond == "" || cond == container.WaitConditionNotRunning {
		if !running(a) {
			return a.ExitCode, nil
		}
		cond = container.WaitConditionNextExit
	}
	code := a.ExitCode
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case e, ok := <-events:
			if !ok {
				// Cut off (we lagged): look at the state, and follow it by
				// polling rather than lose the end.
				return s.pollWait(ctx, a, cond, running)
			}
			if e.ID != a.ID {
				continue
			}
			switch e.Type {
			case "die":
				if e.ExitCode != nil {
					code = *e.ExitCode
				}
				if cond == container.WaitConditionNextExit {
					return code, nil
				}
			case "destroy":
				if cond == container.WaitConditionRemoved {
					return code, nil
				}
				return code, errors.New("the container was removed")
			}
		}
	}
}

// pollWait is waitFor after the event stream cut us off: the state is
// polled until it says the condition holds.
func (s *Server) pollWait(ctx context.Context, a *api.Arrow, cond container.WaitCondition, running func(*api.Arrow) bool) (int, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		now, err := s.b.Get(a.ID)
		switch {
		case errors.Is(err, daemon.ErrNotFound):
			if cond == container.WaitConditionRemoved {
				return a.ExitCode, nil
			}
			return a.ExitCode, errors.New("the container was removed")
		case err != nil:
			return 0, err
		case cond == container.WaitConditionNextExit && !running(&now) && now.FinishedAt.After(a.FinishedAt):
			return now.ExitCode, nil
		}
		*a = now
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// errStopReading ends a log read early (until reached).
var errStopReading = errors.New("stop reading")

// logParams are the log selection of logs and attach.
type logParams struct {
	opts           logs.ReadOptions
	until          time.Time
	stdout, stderr bool
	timestamps     bool
}

func parseLogParams(r *http.Request) (logParams, error) {
	q := r.URL.Query()
	p := logParams{opts: logs.ReadOptions{Tail: -1, Follow: boolParam(r, "follow")},
		stdout: boolParam(r, "stdout"), stderr: boolParam(r, "stderr"), timestamps: boolParam(r, "timestamps")}
	now := time.Now()
	if v := q.Get("since"); v != "" && v != "0" {
		t, err := parseTimeParam(v, now)
		if err != nil {
			return p, invalidf("%v", err)
		}
		p.opts.Since = t
	}
	if v := q.Get("until"); v != "" && v != "0" {
		t, err := parseTimeParam(v, now)
		if err != nil {
			return p, invalidf("until: %v", err)
		}
		p.until = t
	}
	if v := q.Get("tail"); v != "" && v != "all" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return p, invalidf("tail %q: want a number of lines or all", v)
		}
		p.opts.Tail = n
		if n < 0 {
			p.opts.Tail = -1
		}
	}
	return p, nil
}

// writeLogs passes the container's log to out as p selects.
func (s *Server) writeLogs(ctx context.Context, a *api.Arrow, p logParams, out *streamWriter) error {
	if !p.until.IsZero() && p.opts.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.until)
		defer cancel()
	}
	err := s.b.Logs(ctx, a.ID, p.opts, func(e logs.Entry) error {
		if !p.until.IsZero() && e.Time.After(p.until) {
			return errStopReading
		}
		stream := byte(stdoutStream)
		if e.Stream == logs.Stderr {
			stream = stderrStream
		}
		if stream == stdoutStream && !p.stdout || stream == stderrStream && !p.stderr {
			return nil
		}
		line := e.Line
		if !e.Partial {
			line = append(line, '\n')
		}
		if p.timestamps {
			line = append([]byte(e.Time.UTC().Format(time.RFC3339Nano)+" "), line...)
		}
		return out.write(stream, line)
	})
	if errors.Is(err, errStopReading) || ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	p, err := parseLogParams(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !p.stdout && !p.stderr {
		writeErr(w, invalidf("Bad parameters: you must choose at least one stream"))
		return
	}
	w.Header().Set("Content-Type", streamContentType(r, a.Config.TTY))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	out := &streamWriter{w: w, raw: a.Config.TTY}
	if p.opts.Follow {
		out.flush = rc.Flush
	}
	if err := s.writeLogs(r.Context(), &a, p, out); err != nil {
		fmt.Fprintf(s.opts.Log, "dockerapi: logs %.12s: %v\n", a.ID, err)
	}
}

// containerAttach joins the client to the container's stdio over the
// hijacked connection: output framed (or raw with a TTY), input raw. An
// attach to a container that has not started yet is answered at once and
// joined at its start (docker run attaches, then starts), losing none of
// its output.
func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if k := r.URL.Query().Get("detachKeys"); k != "" {
		// The CLI sends detach keys only when its user set some.
		writeErr(w, lacking("detach keys: close the client's connection to detach"))
		return
	}
	stream, withLogs := boolParam(r, "stream"), boolParam(r, "logs")
	wantStdin := boolParam(r, "stdin")
	p := logParams{opts: logs.ReadOptions{Tail: -1}, stdout: boolParam(r, "stdout"), stderr: boolParam(r, "stderr")}
	if !stream && !withLogs {
		writeErr(w, invalidf("Bad parameters: you must choose at least one stream"))
		return
	}
	if wantStdin && !a.Config.Stdin {
		// dockerd accepts it and drops the input; so does Arrow.
		wantStdin = false
	}
	stdinOnce := wantStdin && extraOf(a.Config.Labels).StdinOnce
	var wait func(context.Context) (net.Conn, *bufio.Reader, error)
	cancel := func() {}
	if stream {
		// Registered before the client is answered: it may start the
		// container as soon as it has the answer.
		if wait, cancel, err = s.b.AttachNext(r.Context(), a.ID, stdinOnce); err != nil {
			writeErr(w, err)
			return
		}
	}
	conn, cbr, err := hijack(w, r, streamContentType(r, a.Config.TTY))
	if err != nil {
		cancel()
		return
	}
	defer conn.Close()
	out := &streamWriter{w: conn, raw: a.Config.TTY}
	if withLogs {
		if err := s.writeLogs(r.Context(), &a, p, out); err != nil {
			fmt.Fprintf(s.opts.Log, "dockerapi: attach %.12s: logs: %v\n", a.ID, err)
		}
	}
	if !stream {
		return
	}
	sconn, sbr, err := wait(r.Context())
	if err != nil {
		// Answered already: all the client can be told is the end of
		// the stream.
		fmt.Fprintf(s.opts.Log, "dockerapi: attach %.12s: %v\n", a.ID, err)
		return
	}
	defer sconn.Close()
	go func() {
		if !wantStdin {
			_, _ = io.Copy(io.Discard, cbr)
			return
		}
		_, _ = io.Copy(sconn, cbr)
		if stdinOnce {
			// The client's end of input is the container's (docker run
			// -i < file): the half-close passes it on.
			closeWrite(sconn)
		}
	}()
	for {
		st, payload, err := api.ReadFrame(sbr)
		if err != nil {
			return
		}
		if st == api.StreamStdout && !p.stdout || st == api.StreamStderr && !p.stderr {
			continue
		}
		if err := out.write(st, payload); err != nil {
			return
		}
	}
}
