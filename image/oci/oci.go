// Package oci reads container images from where they are found: OCI image
// layout directories, OCI archives, `docker save` tarballs and registries.
// An *Image is a store.ImageSource; the store verifies every blob against
// its digest when it imports it. This package checks the manifest's own
// digest against the index or reference that names it where there is one,
// and picks the wanted platform (linux/amd64 by default) from an index.
package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/arrowsys/arrow/image/store"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Errors of this package, wrapped with context; test for them with
// errors.Is. A manifest that does not match its digest is an error wrapping
// store.ErrDigestMismatch.
var (
	// ErrUnreachable: the registry could not be contacted.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNotFound: the image is not where the reference says.
	ErrNotFound = errors.New("image not found")
	// ErrNoMatch: no image in the index is for the wanted platform.
	ErrNoMatch = errors.New("no image for the platform")
	// ErrAmbiguous: the layout or archive holds several images; name one
	// with a tag.
	ErrAmbiguous = errors.New("several images match")
)

// Options tune how images are found. The zero value is fine.
type Options struct {
	// Platform is the platform to pick from an index: Arrow's guests'
	// linux/amd64 when OS is empty.
	Platform v1.Platform
	// Keychain gives registry credentials (authn.DefaultKeychain, which
	// reads Docker's config, when nil).
	Keychain authn.Keychain
	// Transport is the HTTP transport for registries (remote's default
	// when nil).
	Transport http.RoundTripper
	// Insecure allows registries over plain HTTP.
	Insecure bool
	// TempDir is where OCI archives are unpacked (os.TempDir() when
	// empty).
	TempDir string
}

func (o Options) platform() v1.Platform {
	if o.Platform.OS == "" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	return o.Platform
}

// Image is an image found by one of this package's functions. Close it
// when done.
type Image struct {
	ref string
	// names are the names the source gives the image (see Names).
	names []string
	img   v1.Image
	// want is the digest the manifest must have, when one is known.
	want    v1.Hash
	cleanup func() error
}

var _ store.ImageSource = (*Image)(nil)

// Reference says where the image comes from.
func (i *Image) Reference() string { return i.ref }

// Names returns the names an OCI layout or archive gives the image in its
// index (its reference-name annotations; see refNames), nil when it gives
// none. `arrow image import` names the image by the first.
func (i *Image) Names() []string { return i.names }

// Manifest returns the image manifest, checked against the digest that
// named it when there is one.
func (i *Image) Manifest(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := i.img.RawManifest()
	if err != nil {
		return nil, classify(err)
	}
	if i.want != (v1.Hash{}) {
		if got := digest.SHA256.FromBytes(raw); got.String() != i.want.String() {
			return nil, fmt.Errorf("%w: got %s, the index says %s", store.ErrDigestMismatch, got, i.want)
		}
	}
	return raw, nil
}

// Blob opens the config or a layer blob, as the manifest lists it.
func (i *Image) Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := v1.NewHash(desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("blob digest: %w", err)
	}
	m, err := i.img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", classify(err))
	}
	if h == m.Config.Digest {
		raw, err := i.img.RawConfigFile()
		if err != nil {
			return nil, classify(err)
		}
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	l, err := i.img.LayerByDigest(h)
	if err != nil {
		return nil, classify(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, classify(err)
	}
	return &ctxReadCloser{ctx: ctx, rc: rc}, nil
}

// Close releases what the image holds (an unpacked archive).
func (i *Image) Close() error {
	if i.cleanup == nil {
		return nil
	}
	err := i.cleanup()
	i.cleanup = nil
	return err
}

// Open finds the image src names:
//
//	oci:DIR[:TAG]             an OCI image layout directory
//	oci-archive:FILE[:TAG]    an OCI image layout in a tar file
//	docker-archive:FILE[:TAG] a `docker save` tarball
//	docker://REF              an image in a registry
//	PATH                      an existing layout directory or archive
//	REF                       anything else: an image in a registry
//
// TAG picks one image when there are several (the layout's
// org.opencontainers.image.ref.name annotation, or the docker-save tag).
func Open(ctx context.Context, src string, opts Options) (*Image, error) {
	transport, rest, ok := strings.Cut(src, ":")
	switch {
	case ok && transport == "oci":
		p, tag := splitTag(rest)
		return FromLayout(ctx, p, tag, opts)
	case ok && transport == "oci-archive":
		p, tag := splitTag(rest)
		return FromOCIArchive(ctx, p, tag, opts)
	case ok && transport == "docker-archive":
		p, tag := splitTag(rest)
		return FromDockerArchive(ctx, p, tag, opts)
	case strings.HasPrefix(src, "docker://"):
		return FromRegistry(ctx, strings.TrimPrefix(src, "docker://"), opts)
	}
	if fi, err := os.Stat(src); err == nil {
		if fi.IsDir() {
			return FromLayout(ctx, src, "", opts)
		}
		kind, err := archiveKind(src)
		if err != nil {
			return nil, err
		}
		if kind == "oci" {
			return FromOCIArchive(ctx, src, "", opts)
		}
		return FromDockerArchive(ctx, src, "", opts)
	}
	return FromRegistry(ctx, src, opts)
}

// splitTag splits "PATH:TAG" at the first colon after which PATH exists
// (a tag may hold colons and slashes: "example.com:5000/app:1"); s is
// all path when it exists or no prefix does.
func splitTag(s string) (string, string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// FromRegistry finds the image ref (such as "alpine:3.20" or
// "ghcr.io/org/app@sha256:...") in its registry, picking the platform from
// an index. ctx also bounds the later reads of the image's blobs.
func FromRegistry(ctx context.Context, ref string, opts Options) (*Image, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(opts.platform()), remote.WithAuthFromKeychain(kc)}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	img, err := remote.Image(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Name(), classify(err))
	}
	out := &Image{ref: r.Name(), img: img}
	if d, ok := r.(name.Digest); ok {
		// By digest: the manifest (unless an index was resolved) must
		// have it.
		if mt, err := img.MediaType(); err == nil && mt.IsImage() {
			if h, err := v1.NewHash(d.DigestStr()); err == nil {
				out.want = h
			}
		}
	}
	return out, nil
}

// classify tags network failures with ErrUnreachable and missing images
// with ErrNotFound.
func classify(err error) error {
	var (
		oe *net.OpError
		de *net.DNSError
		ue *url.Error
		te *transport.Error
	)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &oe), errors.As(err, &de), errors.Is(err, syscall.ECONNREFUSED),
		errors.As(err, &ue) && ue.Timeout():
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case errors.As(err, &te) && (te.StatusCode == http.StatusNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// FromDockerArchive reads a `docker save` tarball; tag picks an image when
// it holds several.
func FromDockerArchive(ctx context.Context, path, tag string, opts Options) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: tag %q: %w", path, tag, err)
		}
		t = &nt
	}
	if err := checkDockerFile(ctx, path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("docker archive %s: %w: %w", path, ErrNotFound, err)
		}
		return nil, fmt.Errorf("docker archive %s: %w", path, err)
	}
	img, err := tarball.ImageFromPath(path, t)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("docker archive %s: %w: %w", path, ErrNotFound, err)
		}
		return nil, fmt.Errorf("docker archive %s: %w", path, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: config: %w", path, err)
	}
	if p := cf.Platform(); p != nil && !platformMatches(*p, opts.platform()) {
		return nil, fmt.Errorf("docker archive %s: %w: image is %s, want %s", path, ErrNoMatch, p, opts.platform().String())
	}
	ref := "docker-archive:" + path
	if tag != "" {
		ref += ":" + tag
	}
	return &Image{ref: ref, img: img, names: dockerNames(path, tag)}, nil
}

// dockerNames are the names a docker-save tarball gives the image it
// holds (its RepoTags, as docker load and ctr take them), or tag when the
// caller picked the image by it; nil when the tarball holds several
// images or names none that the store accepts.
func dockerNames(path, tag string) []string {
	if tag != "" {
		return []string{tag}
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil || len(m) != 1 {
		return nil
	}
	var names []string
	for _, t := range m[0].RepoTags {
		if store.ValidateName(t) == nil {
			names = append(names, t)
		}
	}
	return names
}

// FromOCIArchive reads an OCI image layout packed in a tar file (possibly
// compressed), unpacking it to a temporary directory that Close removes.
func FromOCIArchive(ctx context.Context, path, tag string, opts Options) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("oci archive: %w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("oci archive: %w", err)
	}
	defer f.Close()
	dir, err := os.MkdirTemp(opts.TempDir, "arrow-oci-archive-")
	if err != nil {
		return nil, fmt.Errorf("oci archive %s: %w", path, err)
	}
	fail := func(err error) (*Image, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("oci archive %s: %w", path, err)
	}
	r, err := layer.Decompress(f)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	if _, err := layer.Apply(ctx, dir, r, layer.Options{SkipOwners: true}); err != nil {
		return fail(err)
	}
	img, err := FromLayout(ctx, dir, tag, opts)
	if err != nil {
		return fail(err)
	}
	img.ref = "oci-archive:" + path
	if tag != "" {
		img.ref += ":" + tag
	}
	img.cleanup = func() error { return os.RemoveAll(dir) }
	return img, nil
}
