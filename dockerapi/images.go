package dockerapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/storage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/run"
)

// imageRoutes are the image endpoints. A name may hold slashes
// (registry.example:5000/app:1, sent unescaped by the docker CLI), so
// the endpoints under /images/{name}/ are one pattern each method,
// dispatched by their last segment.
func (s *Server) imageRoutes() []route {
	return []route{
		{"GET /images/json", s.imageList},
		{"POST /images/load", s.imageLoad},
		{"POST /images/create", s.imagePull},
		{"POST /images/prune", s.imagePrune},
		{"GET /images/search", s.imageSearch},
		{"GET /images/get", s.imageSave},
		{"GET /images/{rest...}", s.imageGet},
		{"POST /images/{rest...}", s.imagePost},
		{"DELETE /images/{rest...}", s.imageDelete},
	}
}

// imageGet dispatches GET /images/{name}/json, /history and /get.
func (s *Server) imageGet(w http.ResponseWriter, r *http.Request) {
	rest := r.PathValue("rest")
	if n, ok := strings.CutSuffix(rest, "/json"); ok && n != "" {
		s.imageInspect(w, r, n)
		return
	}
	if n, ok := strings.CutSuffix(rest, "/history"); ok && n != "" {
		s.imageHistory(w, r, n)
		return
	}
	if n, ok := strings.CutSuffix(rest, "/get"); ok && n != "" {
		s.imageSave(w, r)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("page not found: Arrow does not serve GET /images/%s of the Docker Engine API", rest))
}

// imagePost dispatches POST /images/{name}/tag and /push.
func (s *Server) imagePost(w http.ResponseWriter, r *http.Request) {
	rest := r.PathValue("rest")
	if n, ok := strings.CutSuffix(rest, "/tag"); ok && n != "" {
		s.imageTag(w, r, n)
		return
	}
	if n, ok := strings.CutSuffix(rest, "/push"); ok && n != "" {
		lacks(w, "docker push: Arrow's image store keeps images flattened (each file once, not as layer tarballs), so it cannot upload them to a registry; push from where the image was built")
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("page not found: Arrow does not serve POST /images/%s of the Docker Engine API", rest))
}

// imageSave answers docker save, which Arrow cannot do cheaply.
func (s *Server) imageSave(w http.ResponseWriter, r *http.Request) {
	lacks(w, "docker save: Arrow's image store keeps images flattened (each file once, not their layer tarballs), so it cannot write an image back as the archive it was loaded from; keep the original archive, or save from where the image was built")
}

// imageSearch answers docker search.
func (s *Server) imageSearch(w http.ResponseWriter, r *http.Request) {
	lacks(w, "docker search: Arrow has no registry search; search on the registry's own site")
}

// openStore opens the image store, answering the error itself.
func (s *Server) openStore(w http.ResponseWriter) (*store.Store, bool) {
	if s.opts.Images == nil {
		lacks(w, "images on this daemon: it has no image store")
		return nil, false
	}
	st, err := s.opts.Images()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "image store: "+err.Error())
		return nil, false
	}
	return st, true
}

// imgWriteErr answers an error of the image endpoints: the store's and
// this file's sentinels, then writeErr's.
func imgWriteErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		// dockerd's message, which clients match ("No such image").
		msg := err.Error()
		if i := strings.Index(msg, "No such image"); i >= 0 {
			msg = msg[i:]
		}
		writeError(w, http.StatusNotFound, msg)
	case errors.Is(err, store.ErrAmbiguous), errors.Is(err, errBadReference), errors.Is(err, store.ErrInvalidName),
		errors.Is(err, errInvalidFilter):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, errImageConflict):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeErr(w, err)
	}
}

// errImageConflict marks an image removal refused: 409.
var errImageConflict = errors.New("conflict")

// imgSummary is the list entry of img.
func imgSummary(img store.Image) image.Summary {
	tags, digests := imgTags(img)
	return image.Summary{
		ID:          "sha256:" + img.ID,
		RepoTags:    tags,
		RepoDigests: digests,
		Created:     imgCreated(img).Unix(),
		Size:        img.Size,
		SharedSize:  -1,
		Containers:  -1,
		Labels:      nonNilLabels(img.Config.Labels),
	}
}

// imgCreated is when img was built, or else imported.
func imgCreated(img store.Image) time.Time {
	if img.Created != nil && !img.Created.IsZero() {
		return *img.Created
	}
	return img.Imported
}

func nonNilLabels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// imageList answers GET /images/json. Arrow's images have no
// intermediate layers of their own, so ?all lists the same images.
func (s *Server) imageList(w http.ResponseWriter, r *http.Request) {
	f, err := parseResFilters(r, "reference", "dangling", "label", "before", "since", "until")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	imgs, err := st.List(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	keep, err := imgListFilter(f, imgs, time.Now())
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	out := []image.Summary{}
	for _, img := range imgs {
		if !keep(img) {
			continue
		}
		sum := imgSummary(img)
		if pats := f["reference"]; len(pats) > 0 {
			// dockerd lists the tags the reference filter matched.
			sum.RepoTags = slices.DeleteFunc(sum.RepoTags, func(t string) bool {
				return !matchAny(pats, func(p string) bool { return refMatches(p, t) })
			})
		}
		out = append(out, sum)
	}
	writeJSON(w, http.StatusOK, out)
}

// imgListFilter compiles the filters of the list and prune endpoints.
func imgListFilter(f resFilters, imgs []store.Image, now time.Time) (func(store.Image) bool, error) {
	dangling, hasDangling, err := f.boolValue("dangling")
	if err != nil {
		return nil, err
	}
	var before, since, until time.Time
	for key, t := range map[string]*time.Time{"before": &before, "since": &since} {
		for _, ref := range f.values(key) {
			img, _, err := imgFind(imgs, ref)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", errInvalidFilter, key, err)
			}
			*t = imgCreated(img)
		}
	}
	for _, v := range f.values("until") {
		if until, err = parseUntil(v, now); err != nil {
			return nil, err
		}
	}
	return func(img store.Image) bool {
		tags, _ := imgTags(img)
		switch {
		case hasDangling && dangling != (len(img.Names) == 0),
			!matchLabelFilter(f["label"], img.Config.Labels, false),
			!matchLabelFilter(f["label!"], img.Config.Labels, true),
			!before.IsZero() && !imgCreated(img).Before(before),
			!since.IsZero() && !imgCreated(img).After(since),
			!until.IsZero() && !imgCreated(img).Before(until),
			!matchAny(f["reference"], func(p string) bool { return slices.ContainsFunc(tags, func(t string) bool { return refMatches(p, t) }) }):
			return false
		}
		return true
	}, nil
}

// refMatches reports whether the reference filter pattern p matches the
// familiar tag t, as dockerd matches: a glob against repo:tag or against
// the repository alone; a pattern that is a plain reference is
// normalised first (docker.io/library/busybox matches busybox:latest).
func refMatches(p, t string) bool {
	repo := t
	if i := strings.LastIndexByte(t, ':'); i > strings.LastIndexByte(t, '/') {
		repo = t[:i]
	}
	if ok, _ := path.Match(p, t); ok {
		return true
	}
	if ok, _ := path.Match(p, repo); ok {
		return true
	}
	if !strings.ContainsAny(p, "*?[") {
		if fp, ok := imgFamiliar(p); ok {
			hasTag := strings.LastIndexByte(p, ':') > strings.LastIndexByte(p, '/')
			return fp == t || !hasTag && strings.TrimSuffix(fp, ":latest") == repo
		}
	}
	return false
}

// parseUntil reads an until filter as dockerd does: Unix seconds (with
// a fraction), an RFC 3339 time or date, or a duration before now.
func parseUntil(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: until: %q is no timestamp or duration", errInvalidFilter, v)
}

// imageInspect answers GET /images/{name}/json.
func (s *Server) imageInspect(w http.ResponseWriter, r *http.Request, ref string) {
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	imgs, err := st.List(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	img, _, err := imgFind(imgs, ref)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	cfg, err := imgConfig(r.Context(), st, img)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, imgInspect(img, cfg))
}

// imgConfig reads img's config blob: what the record keeps and what it
// does not (history, author, Docker's extensions such as Healthcheck).
func imgConfig(ctx context.Context, st *store.Store, img store.Image) (dockerspec.DockerOCIImage, error) {
	var cfg dockerspec.DockerOCIImage
	b, err := st.ConfigBlob(ctx, img)
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("image %s: config: %w", img.ShortID(), err)
	}
	return cfg, nil
}

// imgInspect is the inspect answer of img, whose config is cfg.
func imgInspect(img store.Image, cfg dockerspec.DockerOCIImage) image.InspectResponse {
	tags, digests := imgTags(img)
	c := cfg.Config
	// The record's config is what runs use: the same, unless the
	// config blob could not say it.
	c.ImageConfig = img.Config
	layers := make([]string, 0, len(img.Layers))
	for _, l := range img.Layers {
		layers = append(layers, l.DiffID.String())
	}
	out := image.InspectResponse{
		ID:           "sha256:" + img.ID,
		RepoTags:     tags,
		RepoDigests:  digests,
		Created:      imgCreated(img).UTC().Format(time.RFC3339Nano),
		Author:       cfg.Author,
		Config:       &c,
		Architecture: img.Platform.Architecture,
		Variant:      img.Platform.Variant,
		Os:           img.Platform.OS,
		OsVersion:    img.Platform.OSVersion,
		Size:         img.Size,
		GraphDriver:  &storage.DriverData{Name: "arrow", Data: map[string]string{}},
		RootFS:       image.RootFS{Type: "layers", Layers: layers},
		// No Descriptor: the record keeps the manifest's digest, not
		// its size, and a descriptor must have both.
	}
	return out
}

// imageHistory answers GET /images/{name}/history from the config's
// history, newest first. Sizes are those of the compressed layer blobs as
// the manifest listed them: the store keeps files, not layers, so it
// knows no other size per layer.
func (s *Server) imageHistory(w http.ResponseWriter, r *http.Request, ref string) {
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	imgs, err := st.List(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	img, _, err := imgFind(imgs, ref)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	cfg, err := imgConfig(r.Context(), st, img)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, imgHistory(img, cfg))
}

// imgHistory builds the history of img from its config, newest first:
// each entry that made a layer takes the next layer's size, and the
// newest carries the image's ID and tags, as dockerd answers.
func imgHistory(img store.Image, cfg dockerspec.DockerOCIImage) []image.HistoryResponseItem {
	hist := cfg.History
	if len(hist) == 0 {
		// An image without history: one entry per layer.
		for range img.Layers {
			hist = append(hist, ocispec.History{})
		}
		if len(hist) == 0 {
			hist = []ocispec.History{{}}
		}
	}
	out := make([]image.HistoryResponseItem, 0, len(hist))
	layer := 0
	for _, h := range hist {
		item := image.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if !h.EmptyLayer && layer < len(img.Layers) {
			item.Size = img.Layers[layer].Size
			layer++
		}
		out = append(out, item)
	}
	slices.Reverse(out)
	out[0].ID = "sha256:" + img.ID
	out[0].Tags, _ = imgTags(img)
	return out
}

// imageTag answers POST /images/{name}/tag?repo=&tag=.
func (s *Server) imageTag(w http.ResponseWriter, r *http.Request, ref string) {
	if err := s.b.MayChangeImages(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	q := r.URL.Query()
	repo, tag := q.Get("repo"), q.Get("tag")
	if repo == "" {
		writeError(w, http.StatusBadRequest, "repository name must have at least one component: repo is empty")
		return
	}
	full := repo
	if tag != "" {
		if strings.HasPrefix(tag, "sha256:") || strings.ContainsAny(tag, ":@/") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid tag %q: refusing to tag by digest or with a path", tag))
			return
		}
		full += ":" + tag
	}
	newName, err := imgStoreName(full)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	imgs, err := st.List(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	img, _, err := imgFind(imgs, ref)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	if err := imgClaim(r.Context(), st, img.ID, newName); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// imgClaim gives the image id the name name (in the familiar form) and
// takes from every other image the other spellings of that name (an
// `arrow image pull` of index.docker.io/library/busybox:latest), so that
// one Docker name means one image. The image's own other spellings stay:
// arrowd finds an arrow's image by the exact name its config gives.
func imgClaim(ctx context.Context, st *store.Store, id, name string) error {
	if _, err := st.Tag(ctx, id, name); err != nil {
		return err
	}
	imgs, err := st.List(ctx)
	if err != nil {
		return err
	}
	var others []string
	for _, img := range imgs {
		if img.ID == id {
			continue
		}
		for _, n := range img.Names {
			if n != name && imgSameName(n, name) {
				others = append(others, n)
			}
		}
	}
	if len(others) == 0 {
		return nil
	}
	if _, _, err := st.Untag(ctx, others, false); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// imgUsers are the arrows (of arrows) whose image is img, running and
// not.
func imgUsers(arrows []api.Arrow, imgs []store.Image, img store.Image) (running, stopped []api.Arrow) {
	for _, a := range arrows {
		if a.Config.Image == "" {
			continue
		}
		found, _, err := imgFind(imgs, a.Config.Image)
		if err != nil || found.ID != img.ID {
			continue
		}
		if a.State == api.Running || a.State == api.Starting || a.State == api.Restarting {
			running = append(running, a)
		} else {
			stopped = append(stopped, a)
		}
	}
	return running, stopped
}

// imageDelete answers DELETE /images/{name}: a name of an image that has
// others is untagged; the image goes with its last name, or when named
// by ID. An image an arrow uses stays unless ?force (and even then while
// one runs), and so does a name an arrow's config names it by: the
// arrow would not find its image again. ?noprune changes nothing, since
// Arrow's images have no parent images to prune.
func (s *Server) imageDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.b.MayChangeImages(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	ref := r.PathValue("rest")
	force := boolParam(r, "force")
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	ctx := r.Context()
	imgs, err := st.List(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	img, how, err := imgFind(imgs, ref)
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	running, stopped := imgUsers(s.b.List(true), imgs, img)
	tags, _ := imgTags(img)
	var out []image.DeleteResponse
	untag := func(names []string) bool {
		_, _, err := st.Untag(ctx, names, false)
		if err != nil {
			writeErr(w, err)
			return false
		}
		return true
	}
	if how == byName {
		names := imgNamesFor(img, ref)
		if !force {
			for _, a := range slices.Concat(running, stopped) {
				if imgSameName(a.Config.Image, ref) {
					imgWriteErr(w, fmt.Errorf("%w: unable to remove repository reference %q (must force) - arrow %s (%s) names its image by it", errImageConflict, ref, a.Name, shortID(a.ID)))
					return
				}
			}
		}
		if len(img.Names) > len(names) {
			// Other names remain: only this one goes.
			if !untag(names) {
				return
			}
			f, _ := imgFamiliar(ref)
			writeJSON(w, http.StatusOK, []image.DeleteResponse{{Untagged: orRef(f, ref)}})
			return
		}
	} else if len(tags) > 1 && !force {
		imgWriteErr(w, fmt.Errorf("%w: unable to delete %s (must be forced) - image is referenced in multiple repositories", errImageConflict, img.ShortID()))
		return
	}
	// The image goes.
	switch {
	case len(running) > 0:
		imgWriteErr(w, fmt.Errorf("%w: unable to delete %s (cannot be forced) - image is being used by running %s", errImageConflict, img.ShortID(), arrowList(running)))
		return
	case len(stopped) > 0 && !force:
		imgWriteErr(w, fmt.Errorf("%w: unable to delete %s (must be forced) - image is being used by stopped %s", errImageConflict, img.ShortID(), arrowList(stopped)))
		return
	}
	for _, t := range tags {
		out = append(out, image.DeleteResponse{Untagged: t})
	}
	if len(img.Names) > 0 {
		_, removed, err := st.Untag(ctx, img.Names, true)
		if err != nil {
			writeErr(w, err)
			return
		}
		if !slices.ContainsFunc(removed, func(x store.Image) bool { return x.ID == img.ID }) {
			// Another client named it in between: it stays.
			writeJSON(w, http.StatusOK, out)
			return
		}
	} else if _, err := st.Remove(ctx, img.ID); err != nil {
		imgWriteErr(w, err)
		return
	}
	out = append(out, image.DeleteResponse{Deleted: "sha256:" + img.ID})
	s.pruneRootDisks(ctx)
	writeJSON(w, http.StatusOK, out)
}

// arrowList names arrows: "arrow web (0123456789ab)" or "arrows web
// (...), db (...)".
func arrowList(as []api.Arrow) string {
	parts := make([]string, 0, len(as))
	for _, a := range as {
		parts = append(parts, fmt.Sprintf("%s (%s)", a.Name, shortID(a.ID)))
	}
	if len(parts) == 1 {
		return "arrow " + parts[0]
	}
	return "arrows " + strings.Join(parts, ", ")
}

func orRef(f, ref string) string {
	if f != "" {
		return f
	}
	return ref
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// pruneRootDisks drops the root disks of images no longer stored, as
// `arrow image rm` does: they are rebuilt if the image comes back. A
// failure is logged, not answered: the image is gone either way.
func (s *Server) pruneRootDisks(ctx context.Context) int64 {
	if s.opts.Root == "" {
		return 0
	}
	st, err := run.PruneRootDisks(ctx, s.opts.Root, run.RootDiskMaxAge)
	if err != nil {
		fmt.Fprintf(s.opts.Log, "dockerapi: prune root disks: %v\n", err)
	}
	return st.Bytes
}

// imagePrune answers POST /images/prune: with dangling=true (the
// default) the images without a name, with dangling=false every image
// no arrow uses; then the store's unreferenced files and the root disks
// of removed images.
func (s *Server) imagePrune(w http.ResponseWriter, r *http.Request) {
	if err := s.b.MayChangeImages(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	f, err := parseResFilters(r, "dangling", "label", "label!", "until")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	if _, has, _ := f.boolValue("dangling"); !has {
		f["dangling"] = map[string]bool{"true": true}
	}
	if d, _, _ := f.boolValue("dangling"); !d {
		delete(f, "dangling") // every image, named or not
	}
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	ctx := r.Context()
	imgs, err := st.List(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	keep, err := imgListFilter(f, imgs, time.Now())
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	rep := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	arrows := s.b.List(true)
	for _, img := range imgs {
		if !keep(img) {
			continue
		}
		if running, stopped := imgUsers(arrows, imgs, img); len(running)+len(stopped) > 0 {
			continue
		}
		tags, _ := imgTags(img)
		if len(img.Names) > 0 {
			_, removed, err := st.Untag(ctx, img.Names, true)
			if err != nil || len(removed) == 0 {
				continue
			}
		} else if _, err := st.Remove(ctx, img.ID); err != nil {
			continue
		}
		for _, t := range tags {
			rep.ImagesDeleted = append(rep.ImagesDeleted, image.DeleteResponse{Untagged: t})
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, image.DeleteResponse{Deleted: "sha256:" + img.ID})
	}
	ps, err := st.Prune(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	rep.SpaceReclaimed = uint64(ps.Bytes) + uint64(s.pruneRootDisks(ctx))
	writeJSON(w, http.StatusOK, rep)
}

// registryKeychain is the credentials a pull uses: those the client sent
// (X-Registry-Auth), else none. arrowd's own Docker config is never
// read: its credentials are not the client's to use.
type registryKeychain struct{ auth authn.Authenticator }

// Resolve implements authn.Keychain.
func (k registryKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

// maxAuthHeader bounds X-Registry-Auth.
const maxAuthHeader = 64 << 10

// registryAuth decodes X-Registry-Auth: base64url JSON of AuthConfig.
func registryAuth(r *http.Request) (authn.Keychain, error) {
	h := r.Header.Get("X-Registry-Auth")
	if h == "" {
		return registryKeychain{authn.Anonymous}, nil
	}
	if len(h) > maxAuthHeader {
		return nil, fmt.Errorf("X-Registry-Auth: longer than %d bytes", maxAuthHeader)
	}
	b, err := base64.URLEncoding.DecodeString(h)
	if err != nil {
		if b, err = base64.RawURLEncoding.DecodeString(h); err != nil {
			return nil, fmt.Errorf("X-Registry-Auth: %w", err)
		}
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(b, &ac); err != nil {
		return nil, fmt.Errorf("X-Registry-Auth: %w", err)
	}
	if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return registryKeychain{authn.Anonymous}, nil
	}
	return registryKeychain{authn.FromConfig(authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})}, nil
}
