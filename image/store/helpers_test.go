package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// memSource is an image in memory.
type memSource struct {
	ref      string
	manifest []byte
	blobs    map[digest.Digest][]byte
	// wrap, when set, wraps every layer blob reader.
	wrap func(io.Reader) io.Reader
	// opened counts the layer blobs opened.
	opened atomic.Int32
}

func (m *memSource) Reference() string { return m.ref }

func (m *memSource) Manifest(context.Context) ([]byte, error) { return m.manifest, nil }

func (m *memSource) Blob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := m.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, fs.ErrNotExist)
	}
	var r io.Reader = bytes.NewReader(b)
	if d.MediaType != ocispec.MediaTypeImageConfig && m.wrap != nil {
		m.opened.Add(1)
		r = m.wrap(r)
	}
	return io.NopCloser(r), nil
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageSpec describes a test image.
type imageSpec struct {
	config ocispec.ImageConfig
	os     string
	layers [][]byte // uncompressed tars
}

// build makes a memSource of spec, with gzipped layers.
func build(t testing.TB, ref string, spec imageSpec) *memSource {
	t.Helper()
	m := &memSource{ref: ref, blobs: map[digest.Digest][]byte{}}
	cfg := ocispec.Image{Config: spec.config, RootFS: ocispec.RootFS{Type: "layers"}}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	if spec.os != "" {
		cfg.OS = spec.os
	}
	created := tartest.Time
	cfg.Created = &created
	man := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	man.SchemaVersion = 2
	for _, l := range spec.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.SHA256.FromBytes(l))
		blob := gz(t, l)
		d := digest.SHA256.FromBytes(blob)
		m.blobs[d] = blob
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(blob))})
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cd := digest.SHA256.FromBytes(cb)
	m.blobs[cd] = cb
	man.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))}
	if m.manifest, err = json.Marshal(man); err != nil {
		t.Fatal(err)
	}
	return m
}

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
