package dockerapi

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/arrowsys/arrow/image/oci"
	"github.com/arrowsys/arrow/image/store"
)

// Bounds on docker load, whose body is untrusted: the archive is written
// to a scratch directory under the data root (never memory), at most
// maxLoadBytes once decompressed; its manifest.json or index.json at most
// maxLoadJSON; at most maxLoadMembers members and maxLoadImages images.
// image/oci and image/store bound and verify the rest (configs, layers,
// digests) as for `arrow image import`.
const (
	maxLoadBytes   = 16 << 30
	maxLoadJSON    = 4 << 20
	maxLoadMembers = 100000
	maxLoadImages  = 256
	// loadScratchPrefix names the scratch directories in the data root;
	// one older than loadScratchMaxAge is what a killed arrowd left.
	loadScratchPrefix = ".docker-load-"
	loadScratchMaxAge = 24 * time.Hour
)

// Errors of an archive docker load refuses before it imports anything:
// 400 and 413.
var (
	errBadArchive    = errors.New("invalid image archive")
	errArchiveTooBig = errors.New("image archive too large")
)

// imageLoad answers POST /images/load (docker load): the body is a
// `docker save` tarball or an OCI archive, possibly gzip or zstd
// compressed. The answer is Docker's JSON message stream, "Loaded image:
// NAME" per name and "Loaded image ID: sha256:..." for an image without
// one; an archive refused before anything is imported is an error answer,
// an import that fails once the stream started an error in the stream.
// ?quiet changes nothing: Arrow sends no progress bars.
func (s *Server) imageLoad(w http.ResponseWriter, r *http.Request) {
	if err := s.b.MayChangeImages(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	if pl := r.URL.Query().Get("platform"); pl != "" && !isArrowPlatform(pl) {
		lacks(w, fmt.Sprintf("loading for platform %s: Arrow's guests are linux/amd64", pl))
		return
	}
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	if s.opts.Root == "" {
		lacks(w, "docker load on this daemon: it has no data root to receive the archive in")
		return
	}
	scratch, err := newLoadScratch(s.opts.Root)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer os.RemoveAll(scratch)
	p := newProgressStream(w)
	if code, err := loadImages(r.Context(), st, r.Body, scratch, maxLoadBytes, p); err != nil {
		p.fail(code, err)
	}
}

// isArrowPlatform reports whether a platform parameter (a string, or
// the JSON object API 1.48 sends) names linux/amd64.
func isArrowPlatform(pl string) bool {
	if strings.HasPrefix(pl, "{") {
		var p ocispec.Platform
		if json.Unmarshal([]byte(pl), &p) != nil {
			return false
		}
		return (p.OS == "" || p.OS == "linux") && (p.Architecture == "" || p.Architecture == "amd64")
	}
	return pl == "linux" || pl == "linux/amd64"
}

// newLoadScratch makes a scratch directory (0700) under root for one
// load, removing first those a killed daemon left a day ago or more.
func newLoadScratch(root string) (string, error) {
	old, _ := filepath.Glob(filepath.Join(root, loadScratchPrefix+"*"))
	for _, d := range old {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > loadScratchMaxAge {
			os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp(root, loadScratchPrefix)
	if err != nil {
		return "", fmt.Errorf("docker load: scratch directory: %w", err)
	}
	return dir, nil
}

// loadImages receives the archive body into scratch (limit bytes at most,
// decompressed), plans the load and imports each image into st, reporting
// to p. It returns the status for an error that came before the stream
// started.
func loadImages(ctx context.Context, st *store.Store, body io.Reader, scratch string, limit int64, p *progressStream) (int, error) {
	archive := filepath.Join(scratch, "archive.tar")
	if err := receiveArchive(body, archive, limit); err != nil {
		if errors.Is(err, errArchiveTooBig) {
			return http.StatusRequestEntityTooLarge, err
		}
		return http.StatusBadRequest, err
	}
	plan, err := planLoadFile(ctx, archive)
	if err != nil {
		return http.StatusBadRequest, err
	}
	if err := plan.load(ctx, st, archive, scratch, p); err != nil {
		// What the archive holds at fault is the client's; anything else
		// (the disk, the store) is the daemon's.
		for _, bad := range []error{errBadArchive, store.ErrDigestMismatch, store.ErrInvalidImage, store.ErrUnsupported, store.ErrTooLarge, store.ErrInvalidName} {
			if errors.Is(err, bad) {
				return http.StatusBadRequest, err
			}
		}
		return http.StatusInternalServerError, err
	}
	return http.StatusOK, nil
}

// receiveArchive writes the decompressed body to dst, failing past limit
// bytes of the body or of what it decompresses to (a compressed body
// can be larger than its content: empty gzip members, say).
func receiveArchive(body io.Reader, dst string, limit int64) error {
	rc, err := layer.Decompress(&boundedReader{r: body, left: limit})
	if err != nil {
		return fmt.Errorf("%w: %w", errBadArchive, err)
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(rc, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, errArchiveTooBig):
		return fmt.Errorf("%w: the request body is more than %d bytes", errArchiveTooBig, limit)
	case errors.Is(err, layer.ErrCorrupt):
		return fmt.Errorf("%w: %w", errBadArchive, err)
	case err != nil:
		return fmt.Errorf("docker load: receiving the archive: %w", err)
	case n > limit:
		return fmt.Errorf("%w: more than %d bytes", errArchiveTooBig, limit)
	case n == 0:
		return fmt.Errorf("%w: the request body is empty: send a docker save tarball or an OCI archive", errBadArchive)
	}
	return nil
}

// boundedReader fails with errArchiveTooBig past left bytes.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, errArchiveTooBig
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// loadEntry is one image of an archive.
type loadEntry struct {
	// tag picks it in the archive; "" when it is the only one.
	tag string
	// names are its names, in the form the store keeps (imgStoreName).
	names []string
}

// loadPlan is what an archive holds.
type loadPlan struct {
	// oci: an OCI image layout; else a docker save tarball.
	oci     bool
	entries []loadEntry
	// skipped says what of the archive is not loaded, for the stream.
	skipped []string
}

// planLoadFile reads the archive at p as planLoad.
func planLoadFile(ctx context.Context, p string) (loadPlan, error) {
	f, err := os.Open(p)
	if err != nil {
		return loadPlan{}, fmt.Errorf("docker load: %w", err)
	}
	defer f.Close()
	return planLoad(ctx, f)
}

// dockerSaveEntry is one entry of a docker save manifest.json: only the
// names are read here; image/oci reads and checks the rest.
type dockerSaveEntry struct {
	RepoTags []string
}

// planLoad reads the uncompressed archive r and says which images it
// holds under which names. A `docker save` tarball (manifest.json; Docker
// 25 and later write an OCI layout beside it) names its images by
// RepoTags; an OCI archive (oci-layout and index.json) by the
// io.containerd.image.name annotation of its index's entries, else by
// org.opencontainers.image.ref.name when that is a whole reference.
func planLoad(ctx context.Context, r io.Reader) (loadPlan, error) {
	tr := tar.NewReader(r)
	var manifest, index []byte
	haveLayout := false
	for n := 0; ; n++ {
		if n >= maxLoadMembers {
			return loadPlan{}, fmt.Errorf("%w: more than %d members", errBadArchive, maxLoadMembers)
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return loadPlan{}, err
			}
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return loadPlan{}, fmt.Errorf("%w: %w", errBadArchive, err)
		}
		var dst *[]byte
		switch path.Clean(strings.TrimPrefix(h.Name, "/")) {
		case "manifest.json":
			dst = &manifest
		case "index.json":
			dst = &index
		case "oci-layout":
			haveLayout = true
		}
		if dst == nil || *dst != nil || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxLoadJSON {
			return loadPlan{}, fmt.Errorf("%w: %s: larger than %d bytes", errBadArchive, h.Name, maxLoadJSON)
		}
		if *dst, err = io.ReadAll(io.LimitReader(tr, maxLoadJSON)); err != nil {
			return loadPlan{}, fmt.Errorf("%w: %s: %w", errBadArchive, h.Name, err)
		}
	}
	switch {
	case manifest != nil:
		return planDockerSave(manifest)
	case index != nil && haveLayout:
		return planOCI(index)
	}
	return loadPlan{}, fmt.Errorf("%w: neither a docker save tarball (no manifest.json) nor an OCI archive (no oci-layout and index.json)", errBadArchive)
}

func planDockerSave(raw []byte) (loadPlan, error) {
	var m []dockerSaveEntry
	if err := json.Unmarshal(raw, &m); err != nil {
		return loadPlan{}, fmt.Errorf("%w: manifest.json: %w", errBadArchive, err)
	}
	if err := checkImageCount(len(m)); err != nil {
		return loadPlan{}, err
	}
	var plan loadPlan
	for i, e := range m {
		le := loadEntry{}
		for _, t := range e.RepoTags {
			n, err := imgStoreName(t)
			if err != nil {
				return loadPlan{}, fmt.Errorf("%w: manifest.json: image %d: RepoTags: %w", errBadArchive, i, err)
			}
			le.names = append(le.names, n)
		}
		if len(e.RepoTags) > 0 {
			le.tag = e.RepoTags[0]
		} else if len(m) > 1 {
			return loadPlan{}, fmt.Errorf("%w: manifest.json: image %d has no RepoTags among %d images: Arrow loads an untagged image only from an archive of one", errBadArchive, i, len(m))
		}
		plan.entries = append(plan.entries, le)
	}
	return plan, nil
}

func planOCI(raw []byte) (loadPlan, error) {
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return loadPlan{}, fmt.Errorf("%w: index.json: %w", errBadArchive, err)
	}
	if err := checkImageCount(len(idx.Manifests)); err != nil {
		return loadPlan{}, err
	}
	plan := loadPlan{oci: true}
	byTag := map[string]int{}
	var unnamed []int
	for i, d := range idx.Manifests {
		ann := d.Annotations["io.containerd.image.name"]
		if ann == "" {
			// A bare tag ("latest", as skopeo writes) names nothing.
			if n := d.Annotations[ocispec.AnnotationRefName]; strings.ContainsAny(n, ":/") {
				ann = n
			}
		}
		if ann == "" {
			unnamed = append(unnamed, i)
			continue
		}
		n, err := imgStoreName(ann)
		if err != nil {
			return loadPlan{}, fmt.Errorf("%w: index.json: manifest %d: %w", errBadArchive, i, err)
		}
		if _, ok := byTag[ann]; ok {
			continue // the same name twice: one image, picked by platform
		}
		byTag[ann] = len(plan.entries)
		plan.entries = append(plan.entries, loadEntry{tag: ann, names: []string{n}})
	}
	switch {
	case len(plan.entries) == 0:
		// No names: one image (or one for the platform) without a name.
		plan.entries = []loadEntry{{}}
	case len(unnamed) > 0:
		// An unnamed entry beside named ones cannot be picked out of the
		// index: said in the stream, not dropped silently.
		plan.skipped = append(plan.skipped, fmt.Sprintf("Not loaded: index.json entries %v have no name beside named ones; Arrow loads an unnamed image only from an archive that holds nothing else", unnamed))
	}
	return plan, nil
}

func checkImageCount(n int) error {
	switch {
	case n == 0:
		return fmt.Errorf("%w: the archive lists no image", errBadArchive)
	case n > maxLoadImages:
		return fmt.Errorf("%w: the archive lists %d images, more than %d", errBadArchive, n, maxLoadImages)
	}
	return nil
}

// load imports the plan's images from the archive, reporting each to p.
func (plan loadPlan) load(ctx context.Context, st *store.Store, archive, scratch string, p *progressStream) error {
	for _, msg := range plan.skipped {
		p.line(msg)
	}
	layout := filepath.Join(scratch, "layout")
	if plan.oci {
		if err := unpackLayout(ctx, archive, layout); err != nil {
			return err
		}
		// The tar is no longer needed: free its space for the import.
		os.Remove(archive)
	}
	for i, e := range plan.entries {
		var src *oci.Image
		var err error
		if plan.oci {
			src, err = oci.FromLayout(ctx, layout, e.tag, oci.Options{})
		} else {
			src, err = oci.FromDockerArchive(ctx, archive, e.tag, oci.Options{})
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errBadArchive, err)
		}
		err = loadOne(ctx, st, src, e, fmt.Sprintf("%s%d", filepath.Base(scratch), i), p)
		src.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// unpackLayout unpacks the OCI archive at archive into dir.
func unpackLayout(ctx context.Context, archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer f.Close()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	if _, err := layer.Apply(ctx, dir, f, layer.Options{SkipOwners: true, MaxTotalSize: maxLoadBytes}); err != nil {
		return fmt.Errorf("%w: unpacking the OCI layout: %w", errBadArchive, err)
	}
	return nil
}

// loadOne imports src under e's names. An image without a name is
// imported under tmpName, which is then taken off: the store names every
// import, and Docker's untagged image has none.
func loadOne(ctx context.Context, st *store.Store, src *oci.Image, e loadEntry, tmpName string, p *progressStream) error {
	first := tmpName
	if len(e.names) > 0 {
		first = e.names[0]
	}
	rec, err := st.Import(ctx, src, first)
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	if len(e.names) == 0 {
		if _, _, err := st.Untag(ctx, []string{tmpName}, false); err != nil {
			return fmt.Errorf("docker load: %w", err)
		}
		p.line("Loaded image ID: sha256:" + rec.ID)
		return nil
	}
	for _, n := range e.names {
		if err := imgClaim(ctx, st, rec.ID, n); err != nil {
			return fmt.Errorf("docker load: %s: %w", n, err)
		}
		p.line("Loaded image: " + n)
	}
	return nil
}
