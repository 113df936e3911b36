package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/arrowsys/arrow/image/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxIndexDepth bounds nested indexes.
const maxIndexDepth = 4

// FromLayout reads the OCI image layout directory dir. tag, when set,
// picks the images of index.json whose reference-name annotation is tag
// (or ends in ":"+tag); then the image for the platform is picked,
// through nested indexes. Index and manifest blobs are checked against
// their digests.
func FromLayout(ctx context.Context, dir, tag string, opts Options) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("oci layout %s: %w: no index.json", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
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
	img, desc, err := pick(ctx, idx, descs, opts.platform(), 0)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	ref := "oci:" + dir
	if tag != "" {
		ref += ":" + tag
	}
	return &Image{ref: ref, img: img, want: desc.Digest}, nil
}

// pick finds the one image for the platform among descs.
func pick(ctx context.Context, idx v1.ImageIndex, descs []v1.Descriptor, plat v1.Platform, depth int) (v1.Image, v1.Descriptor, error) {
	type found struct {
		img  v1.Image
		desc v1.Descriptor
	}
	var matches []found
	seen := make(map[v1.Hash]bool)
	for _, d := range descs {
		if err := ctx.Err(); err != nil {
			return nil, d, err
		}
		if d.Platform != nil && !platformMatches(*d.Platform, plat) {
			continue
		}
		switch {
		case d.MediaType.IsIndex():
			if depth >= maxIndexDepth {
				return nil, d, fmt.Errorf("indexes nested more than %d deep", maxIndexDepth)
			}
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, d, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			if err := checkDigest(child, d.Digest); err != nil {
				return nil, d, fmt.Errorf("index: %w", err)
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, d, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			img, desc, err := pick(ctx, child, cm.Manifests, plat, depth+1)
			if errors.Is(err, ErrNoMatch) {
				continue
			}
			if err != nil {
				return nil, d, err
			}
			if !seen[desc.Digest] {
				seen[desc.Digest] = true
				matches = append(matches, found{img, desc})
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, d, fmt.Errorf("image %s: %w", d.Digest, err)
			}
			if d.Platform == nil {
				// Not in the descriptor: the config says.
				cf, err := img.ConfigFile()
				if err != nil {
					return nil, d, fmt.Errorf("image %s: config: %w", d.Digest, err)
				}
				if p := cf.Platform(); p == nil || !platformMatches(*p, plat) {
					continue
				}
			}
			if !seen[d.Digest] {
				seen[d.Digest] = true
				matches = append(matches, found{img, d})
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, v1.Descriptor{}, fmt.Errorf("%w: %s", ErrNoMatch, plat.String())
	case 1:
		return matches[0].img, matches[0].desc, nil
	}
	return nil, v1.Descriptor{}, fmt.Errorf("%w: %d images for %s; name one with :TAG", ErrAmbiguous, len(matches), plat.String())
}

// checkDigest checks a manifest or index against its digest.
func checkDigest(m interface{ RawManifest() ([]byte, error) }, want v1.Hash) error {
	raw, err := m.RawManifest()
	if err != nil {
		return err
	}
	if got := digest.SHA256.FromBytes(raw); got.String() != want.String() {
		return fmt.Errorf("%w: %s holds %s", store.ErrDigestMismatch, want, got)
	}
	return nil
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
