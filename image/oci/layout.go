package oci

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/arrowsys/arrow/image/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Bounds on what finding an image in a layout reads. A layout (or the
// OCI archive it came in) is user input, and its JSON documents are read
// whole: each is bounded in size, and one lookup reads a bounded number of
// them, whatever the indexes say.
const (
	// maxIndexDepth bounds nested indexes.
	maxIndexDepth = 4
	// maxJSONBytes bounds index.json and each index, manifest and config
	// blob; real ones are a few kilobytes.
	maxJSONBytes = 4 << 20
	// maxDocuments bounds the indexes, manifests and configs read to pick
	// one image; a multi-platform image needs a handful.
	maxDocuments = 64
)

// Errors of hostile or broken layouts, wrapped with the digest at fault.
var (
	errIndexCycle = errors.New("index cycle: an index contains itself")
	errBudget     = fmt.Errorf("more than %d indexes, manifests and configs to read", maxDocuments)
	errTooLarge   = fmt.Errorf("JSON document larger than %d bytes", maxJSONBytes)
)

// FromLayout reads the OCI image layout directory dir. tag, when set,
// picks the images of index.json whose reference-name annotation is tag
// (or ends in ":"+tag); then the image for the platform is picked,
// through nested indexes. Index and manifest blobs are checked against
// their digests.
func FromLayout(ctx context.Context, dir, tag string, opts Options) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := readBounded(filepath.Join(dir, "index.json"), true, maxJSONBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("oci layout %s: %w: no index.json", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("oci layout %s: index.json: %w", dir, err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("oci layout %s: index.json: %w", dir, err)
	}
	descs := im.Manifests
	if tag != "" {
		descs = nil
		for _, d := range im.Manifests {
			// The OCI annotation, or containerd's.
			for _, a := range []string{ocispec.AnnotationRefName, "io.containerd.image.name"} {
				if n := d.Annotations[a]; n == tag || strings.HasSuffix(n, ":"+tag) {
					descs = append(descs, d)
					break
				}
			}
		}
		if len(descs) == 0 {
			return nil, fmt.Errorf("oci layout %s: %w: no image tagged %q", dir, ErrNotFound, tag)
		}
	}
	w := newWalker(layoutDocs{root: dir}, opts.platform())
	li, err := w.pick(ctx, descs, 0)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	li.root = dir
	if li.config == nil {
		if li.config, err = w.doc(ctx, li.manifest.Config); err != nil {
			return nil, fmt.Errorf("oci layout %s: image %s: config: %w", dir, li.desc.Digest, err)
		}
	}
	img, err := partial.CompressedToImage(li)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	ref := "oci:" + dir
	if tag != "" {
		ref += ":" + tag
	}
	return &Image{ref: ref, names: refNames(li.tops), img: img, want: li.desc.Digest}, nil
}

// refNames returns the image names that index.json's descriptors tops
// carry, as ctr, podman load and skopeo read them: containerd's
// io.containerd.image.name, else the OCI ref.name annotation when it is
// a whole reference ("app:1", "example.com/app:1"). A ref.name that is a
// bare tag ("1", "latest", as `skopeo copy oci:DIR:1` writes) names no
// image by itself.
func refNames(tops []v1.Descriptor) []string {
	var names []string
	for _, d := range tops {
		n := d.Annotations["io.containerd.image.name"]
		if n == "" {
			n = d.Annotations[ocispec.AnnotationRefName]
			repo, tag, ok := strings.Cut(n[strings.LastIndex(n, "/")+1:], ":")
			if !ok || repo == "" || tag == "" {
				n = ""
			}
		}
		if n != "" && store.ValidateName(n) == nil && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// docSource reads the JSON document a descriptor names.
type docSource interface {
	read(ctx context.Context, d v1.Descriptor) ([]byte, error)
}

// layoutDocs reads documents from a layout's blobs, checked against their
// digests.
type layoutDocs struct{ root string }

func (l layoutDocs) read(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := blobPath(l.root, d.Digest)
	if err != nil {
		return nil, err
	}
	raw, err := readBounded(p, false, maxJSONBytes)
	if err != nil {
		return nil, err
	}
	if got := digest.SHA256.FromBytes(raw); got.String() != d.Digest.String() {
		return nil, fmt.Errorf("%w: %s holds %s", store.ErrDigestMismatch, d.Digest, got)
	}
	return raw, nil
}

// walker picks the image for a platform through nested indexes, reading
// each document at most once and at most maxDocuments in all.
type walker struct {
	src  docSource
	plat v1.Platform
	left int // documents still allowed
	// onPath holds the indexes being walked, to refuse cycles; walked
	// holds those done with, and images those examined: a document that
	// many descriptors name is read and counted once.
	onPath, walked, images map[v1.Hash]bool
}

func newWalker(src docSource, plat v1.Platform) *walker {
	return &walker{
		src: src, plat: plat, left: maxDocuments,
		onPath: map[v1.Hash]bool{}, walked: map[v1.Hash]bool{}, images: map[v1.Hash]bool{},
	}
}

// doc reads the document d names, within the budgets.
func (w *walker) doc(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if w.left <= 0 {
		return nil, fmt.Errorf("%s: %w", d.Digest, errBudget)
	}
	w.left--
	if d.Size > maxJSONBytes {
		return nil, fmt.Errorf("%s of %d bytes: %w", d.Digest, d.Size, errTooLarge)
	}
	return w.src.read(ctx, d)
}

// pick finds the one image for the platform among descs.
func (w *walker) pick(ctx context.Context, descs []v1.Descriptor, depth int) (*layoutImage, error) {
	var matches []*layoutImage
	// top is the descriptor of descs that led to li: at depth 0 it is
	// one of index.json's, whose annotations name the image.
	add := func(li *layoutImage, top v1.Descriptor) {
		for _, m := range matches {
			if m.desc.Digest == li.desc.Digest {
				if depth == 0 {
					m.tops = append(m.tops, top)
				}
				return
			}
		}
		if depth == 0 {
			li.tops = append(li.tops, top)
		}
		matches = append(matches, li)
	}
	for _, d := range descs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if d.Platform != nil && !platformMatches(*d.Platform, w.plat) {
			continue
		}
		switch {
		case d.MediaType.IsIndex():
			if w.onPath[d.Digest] {
				return nil, fmt.Errorf("index %s: %w", d.Digest, errIndexCycle)
			}
			if w.walked[d.Digest] {
				// What it holds is already counted, but this
				// descriptor may name it too.
				if depth == 0 {
					for _, m := range matches {
						for _, t := range m.tops {
							if t.Digest == d.Digest {
								m.tops = append(m.tops, d)
								break
							}
						}
					}
				}
				continue
			}
			if depth >= maxIndexDepth {
				return nil, fmt.Errorf("indexes nested more than %d deep", maxIndexDepth)
			}
			raw, err := w.doc(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("index: %w", err)
			}
			var im v1.IndexManifest
			if err := json.Unmarshal(raw, &im); err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			w.onPath[d.Digest] = true
			li, err := w.pick(ctx, im.Manifests, depth+1)
			delete(w.onPath, d.Digest)
			w.walked[d.Digest] = true
			if errors.Is(err, ErrNoMatch) {
				continue
			}
			if err != nil {
				return nil, err
			}
			add(li, d)
		case d.MediaType.IsImage():
			if w.images[d.Digest] {
				for _, m := range matches {
					if m.desc.Digest == d.Digest && depth == 0 {
						m.tops = append(m.tops, d)
					}
				}
				continue
			}
			w.images[d.Digest] = true
			li, err := w.image(ctx, d)
			if err != nil {
				return nil, err
			}
			if li != nil {
				add(li, d)
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoMatch, w.plat.String())
	case 1:
		return matches[0], nil
	}
	return nil, fmt.Errorf("%w: %d images for %s; name one with :TAG", ErrAmbiguous, len(matches), w.plat.String())
}

// image reads the manifest d names and returns the image, or nil when it
// is for another platform.
func (w *walker) image(ctx context.Context, d v1.Descriptor) (*layoutImage, error) {
	raw, err := w.doc(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", d.Digest, err)
	}
	li := &layoutImage{desc: d, raw: raw, manifest: &m}
	if d.Platform == nil {
		// Not in the descriptor: the config says.
		if li.config, err = w.doc(ctx, m.Config); err != nil {
			return nil, fmt.Errorf("image %s: config: %w", d.Digest, err)
		}
		var cf v1.ConfigFile
		if err := json.Unmarshal(li.config, &cf); err != nil {
			return nil, fmt.Errorf("image %s: config: %w", d.Digest, err)
		}
		if p := cf.Platform(); p == nil || !platformMatches(*p, w.plat) {
			return nil, nil
		}
	}
	return li, nil
}

// layoutImage is an image of a layout whose manifest and config were read
// within the bounds and checked; its layers are opened when asked for.
type layoutImage struct {
	root string
	// tops are the descriptors of index.json that lead to the image.
	tops     []v1.Descriptor
	desc     v1.Descriptor
	raw      []byte
	manifest *v1.Manifest
	config   []byte
}

var _ partial.CompressedImageCore = (*layoutImage)(nil)

func (li *layoutImage) MediaType() (types.MediaType, error) { return li.desc.MediaType, nil }
func (li *layoutImage) RawManifest() ([]byte, error)        { return li.raw, nil }
func (li *layoutImage) RawConfigFile() ([]byte, error)      { return li.config, nil }

// LayerByDigest returns the config or a layer blob the manifest lists.
func (li *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == li.manifest.Config.Digest {
		return &layoutBlob{root: li.root, desc: li.manifest.Config}, nil
	}
	for _, d := range li.manifest.Layers {
		if h == d.Digest {
			return &layoutBlob{root: li.root, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer %s", li.desc.Digest, h)
}

// layoutBlob is a layer of a layoutImage. Its contents are not read here:
// the store checks them against the digest as it imports them.
type layoutBlob struct {
	root string
	desc v1.Descriptor
}

func (b *layoutBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *layoutBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *layoutBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *layoutBlob) Descriptor() (*v1.Descriptor, error) { return &b.desc, nil }
func (b *layoutBlob) Compressed() (io.ReadCloser, error) {
	p, err := blobPath(b.root, b.desc.Digest)
	if err != nil {
		return nil, err
	}
	return openRegular(p, false)
}

// blobPath is where a layout keeps the blob h. Only sha256 is taken, the
// digest whose hex v1.Hash has checked, so the path stays in the layout.
func blobPath(root string, h v1.Hash) (string, error) {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return "", fmt.Errorf("blob %q: unsupported digest (want sha256)", h.String())
	}
	return filepath.Join(root, "blobs", "sha256", h.Hex), nil
}

// openRegular opens p for reading if it is a regular file, without
// blocking on a FIFO planted in its place. Blobs are opened with follow
// false, refusing symlinks as the layout library does; the files a user
// names, and index.json, may be symlinks.
func openRegular(p string, follow bool) (*os.File, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(p, flags, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return f, nil
}

// readBounded reads the regular file p, refusing one over limit bytes.
func readBounded(p string, follow bool, limit int64) ([]byte, error) {
	f, err := openRegular(p, follow)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w", filepath.Base(p), errTooLarge)
	}
	return b, nil
}

// platformMatches reports whether have is the platform want: same OS and
// architecture, and the same variant when want names one.
func platformMatches(have, want v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

// archiveKind tells an OCI archive ("oci": it has an oci-layout file)
// from a `docker save` one ("docker").
func archiveKind(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("image archive: %w", err)
	}
	defer f.Close()
	r, err := layer.Decompress(f)
	if err != nil {
		return "", fmt.Errorf("image archive %s: %w", p, err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	docker := false
	for range 100000 {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("image archive %s: %w", p, err)
		}
		switch path.Clean(strings.TrimPrefix(h.Name, "/")) {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			docker = true
		}
	}
	if docker {
		return "docker", nil
	}
	return "", fmt.Errorf("image archive %s: %w: neither an OCI archive nor a docker-save tarball", p, ErrNotFound)
}

// ctxReadCloser stops reading once its context is done.
type ctxReadCloser struct {
	ctx context.Context
	rc  io.ReadCloser
}

// Read implements io.Reader.
func (c *ctxReadCloser) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.rc.Read(p)
}

// Close closes the blob.
func (c *ctxReadCloser) Close() error { return c.rc.Close() }
