package dockerapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/volume"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// Volumes are Arrow's named volumes (package volume) through the daemon:
// driver "local", scope "local". A volume created without a name gets
// Docker's 64-hex random name and Docker's anonymous label, which is what
// prune looks at from API 1.42 on.

// volAnonymousLabel marks a volume created without a name, as dockerd
// marks it: from API 1.42, prune removes only those unless all=true.
const volAnonymousLabel = "com.docker.volume.anonymous"

func (s *Server) volumeRoutes() []route {
	return []route{
		{"GET /volumes", s.volumeList},
		{"GET /volumes/{name}", s.volumeInspect},
		{"POST /volumes/create", s.volumeCreate},
		{"DELETE /volumes/{name}", s.volumeDelete},
		{"POST /volumes/prune", s.volumePrune},
	}
}

// volOf translates one of Arrow's volumes.
func volOf(v api.VolumeInfo) volume.Volume {
	out := volume.Volume{
		Name: v.Name, Driver: "local", Mountpoint: v.Mountpoint, Scope: "local",
		Labels: v.Labels, Options: map[string]string{},
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if !v.Created.IsZero() {
		out.CreatedAt = v.Created.Format(time.RFC3339)
	}
	return out
}

// volUnused reports whether no arrow names v and no VM mounts it.
func volUnused(v api.VolumeInfo) bool { return !v.InUse && len(v.Arrows) == 0 }

// volFilter compiles the list and prune filters. dangling is Docker's:
// a volume no container refers to.
func volFilter(f resFilters) (func(api.VolumeInfo) bool, error) {
	dangling, hasDangling, err := f.boolValue("dangling")
	if err != nil {
		return nil, err
	}
	return func(v api.VolumeInfo) bool {
		switch {
		case !matchAny(f["name"], func(p string) bool { return strings.Contains(v.Name, p) }),
			!matchAny(f["driver"], func(d string) bool { return d == "local" }),
			!matchLabelFilter(f["label"], v.Labels, false),
			!matchLabelFilter(f["label!"], v.Labels, true),
			hasDangling && dangling != volUnused(v):
			return false
		}
		return true
	}, nil
}

// volumeList answers GET /volumes.
func (s *Server) volumeList(w http.ResponseWriter, r *http.Request) {
	f, err := parseResFilters(r, "name", "label", "dangling", "driver")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	keep, err := volFilter(f)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	vs, err := s.b.VolumeList(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	out := volume.ListResponse{Volumes: []volume.Volume{}, Warnings: []string{}}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	for _, v := range vs {
		if keep(v) {
			out.Volumes = append(out.Volumes, volOf(v))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// volWriteErr answers a volume error: dockerd's "no such volume" for a
// missing one.
func volWriteErr(w http.ResponseWriter, name string, err error) {
	if errors.Is(err, daemon.ErrNotFound) {
		writeError(w, http.StatusNotFound, "get "+name+": no such volume")
		return
	}
	writeErr(w, err)
}

// volumeInspect answers GET /volumes/{name}.
func (s *Server) volumeInspect(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v, err := s.b.VolumeGet(r.Context(), name)
	if err != nil {
		volWriteErr(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, volOf(v))
}

// volumeCreate answers POST /volumes/create. Creating a volume that
// exists answers it, as dockerd does.
func (s *Server) volumeCreate(w http.ResponseWriter, r *http.Request) {
	var req volume.CreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	switch {
	case req.Driver != "" && req.Driver != "local":
		lacks(w, fmt.Sprintf("the volume driver %q: Arrow's volumes are local directories (driver local)", req.Driver))
		return
	case len(req.DriverOpts) > 0:
		keys := make([]string, 0, len(req.DriverOpts))
		for k := range req.DriverOpts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		lacks(w, fmt.Sprintf("volume driver options (%s): an Arrow volume is a directory under its data root, with no type, device or mount options", strings.Join(keys, ", ")))
		return
	case req.ClusterVolumeSpec != nil:
		lacks(w, "cluster volumes: Arrow has no swarm mode")
		return
	}
	labels := req.Labels
	if req.Name == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			writeErr(w, err)
			return
		}
		req.Name = hex.EncodeToString(b[:])
		labels = make(map[string]string, len(req.Labels)+1)
		for k, v := range req.Labels {
			labels[k] = v
		}
		labels[volAnonymousLabel] = ""
	}
	v, _, err := s.b.VolumeCreate(r.Context(), &api.VolumeCreateRequest{Name: req.Name, Labels: labels})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, volOf(v))
}

// volumeDelete answers DELETE /volumes/{name}. A volume an arrow names
// (running or not) or a VM mounts stays, force or not (409): Arrow has
// no way to take it from under them. force makes a missing volume no
// error, as docker volume rm -f.
func (s *Server) volumeDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.b.VolumeRemove(r.Context(), name)
	switch {
	case err == nil, errors.Is(err, daemon.ErrNotFound) && boolParam(r, "force"):
		w.WriteHeader(http.StatusNoContent)
	default:
		volWriteErr(w, name, err)
	}
}

// volumePrune answers POST /volumes/prune: the unused volumes; from API
// 1.42 only anonymous ones (created without a name) unless the filter
// all=true, as dockerd. Each is removed through the daemon, which keeps
// one an arrow took in between.
func (s *Server) volumePrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseResFilters(r, "label", "label!", "all")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	all, _, err := f.boolValue("all")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	delete(f, "all")
	keep, err := volFilter(f)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	onlyAnonymous := atLeast(r, "1.42") && !all
	vs, err := s.b.VolumeList(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	rep := volume.PruneReport{VolumesDeleted: []string{}}
	for _, v := range vs {
		if !volUnused(v) || !keep(v) {
			continue
		}
		if _, anon := v.Labels[volAnonymousLabel]; onlyAnonymous && !anon {
			continue
		}
		if err := s.b.VolumeRemove(r.Context(), v.Name); err != nil {
			fmt.Fprintf(s.opts.Log, "dockerapi: volume prune %s: %v\n", v.Name, err)
			continue
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, v.Name)
		rep.SpaceReclaimed += uint64(max(v.Size, 0))
	}
	writeJSON(w, http.StatusOK, rep)
}
