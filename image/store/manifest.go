package store

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Limits on the metadata Import reads.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 8 << 20
	maxLayers       = 1024
)

// Docker's media types, for images pushed by Docker.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// ociNondistributable starts the media types of OCI's non-distributable
// layers: deprecated, but still found in older Windows-derived and vendor
// images; the source fetches them like any other blob.
const ociNondistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar"

// isLayerType reports whether Import applies layers of media type mt.
func isLayerType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		ociNondistributable, ociNondistributable + "+gzip", ociNondistributable + "+zstd",
		dockerLayer, dockerLayerGzip, dockerForeignGzip:
		return true
	}
	return false
}

// parseManifest parses and checks an image manifest (OCI or Docker schema
// 2).
func parseManifest(raw []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if len(raw) > maxManifestSize {
		return m, fmt.Errorf("%w: manifest of %d bytes", ErrTooLarge, len(raw))
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%w: manifest: %w", ErrInvalidImage, err)
	}
	switch m.MediaType {
	case ocispec.MediaTypeImageManifest, dockerManifest:
	case "":
		// Optional in OCI manifests; an index has "manifests" instead.
		var probe struct {
			Manifests json.RawMessage `json:"manifests"`
		}
		if json.Unmarshal(raw, &probe) == nil && probe.Manifests != nil {
			return m, fmt.Errorf("%w: an image index, not an image manifest (pick a platform)", ErrUnsupported)
		}
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		return m, fmt.Errorf("%w: an image index, not an image manifest (pick a platform)", ErrUnsupported)
	default:
		return m, fmt.Errorf("%w: manifest media type %q", ErrUnsupported, m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("%w: manifest schema version %d", ErrUnsupported, m.SchemaVersion)
	}
	switch m.Config.MediaType {
	case ocispec.MediaTypeImageConfig, dockerConfig:
	default:
		return m, fmt.Errorf("%w: config media type %q: not a container image", ErrUnsupported, m.Config.MediaType)
	}
	if err := checkDescriptor(m.Config, maxConfigSize); err != nil {
		return m, fmt.Errorf("config: %w", err)
	}
	if len(m.Layers) > maxLayers {
		return m, fmt.Errorf("%w: %d layers", ErrTooLarge, len(m.Layers))
	}
	for i, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return m, fmt.Errorf("%w: layer %d: media type %q", ErrUnsupported, i, l.MediaType)
		}
		if err := checkDescriptor(l, -1); err != nil {
			return m, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return m, nil
}

// checkDescriptor checks a descriptor's digest and size (at most max, when
// max is not negative).
func checkDescriptor(d ocispec.Descriptor, max int64) error {
	if err := validDigest(d.Digest); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalidImage)
	}
	if max >= 0 && d.Size > max {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, d.Size)
	}
	return nil
}

// parseConfig parses and checks an image config for a manifest with
// layers layers.
func parseConfig(raw []byte, layers int) (ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("%w: config: %w", ErrInvalidImage, err)
	}
	if c.OS != "linux" {
		return c, fmt.Errorf("%w: OS %q, not linux", ErrUnsupported, c.OS)
	}
	if c.RootFS.Type != "layers" {
		return c, fmt.Errorf("%w: config: rootfs type %q", ErrInvalidImage, c.RootFS.Type)
	}
	if len(c.RootFS.DiffIDs) != layers {
		return c, fmt.Errorf("%w: config lists %d layers, manifest %d", ErrInvalidImage, len(c.RootFS.DiffIDs), layers)
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := validDigest(d); err != nil {
			return c, fmt.Errorf("%w: config: layer %d: %w", ErrInvalidImage, i, err)
		}
	}
	return c, nil
}

// verifyBlob checks that b is the blob d describes.
func verifyBlob(what string, d ocispec.Descriptor, b []byte) error {
	if int64(len(b)) != d.Size {
		return fmt.Errorf("%w: %s %s: %d bytes, manifest says %d", ErrDigestMismatch, what, d.Digest, len(b), d.Size)
	}
	if got := digest.SHA256.FromBytes(b); got != d.Digest {
		return fmt.Errorf("%w: %s: got %s, manifest says %s", ErrDigestMismatch, what, got, d.Digest)
	}
	return nil
}
