package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseManifest feeds arbitrary manifests and configs to the parsers
// Import runs on what a registry sends: they must not panic, and what they
// accept must be usable.
func FuzzParseManifest(f *testing.F) {
	m := build(f, "seed", imageSpec{layers: [][]byte{tartest.Tar(f, tartest.File("a", "a"))}})
	man := manifestOf(f, m)
	f.Add(m.manifest, m.blobs[man.Config.Digest])
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:`+digest.SHA256.FromString("").Encoded()+`","size":2},"layers":[]}`),
		[]byte(`{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), []byte(`{}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha512:00","size":-1},"layers":[{"digest":"sha256:zz"}]}`), []byte(`{"os":"windows"}`))
	f.Fuzz(func(t *testing.T, manifest, config []byte) {
		m, err := parseManifest(manifest)
		if err != nil {
			return
		}
		if validDigest(m.Config.Digest) != nil || m.Config.Size < 0 || len(m.Layers) > maxLayers {
			t.Fatalf("accepted a bad manifest: %+v", m)
		}
		for _, l := range m.Layers {
			if validDigest(l.Digest) != nil || l.Size < 0 || !isLayerType(l.MediaType) {
				t.Fatalf("accepted a bad layer: %+v", l)
			}
		}
		cfg, err := parseConfig(config, len(m.Layers))
		if err != nil {
			return
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			t.Fatal("diff IDs do not match the layers")
		}
		if _, err := json.Marshal(Image{Config: cfg.Config, Platform: ocispec.Platform{OS: cfg.OS}}); err != nil {
			t.Fatalf("accepted config cannot be recorded: %v", err)
		}
	})
}

// FuzzImport imports an image whose only layer is arbitrary bytes (with
// the right digests, as a hostile registry would serve it): the import
// either fails leaving nothing behind, or records a valid tree that
// Materialize recreates.
func FuzzImport(f *testing.F) {
	f.Add(tartest.Tar(f, tartest.Dir("a"), tartest.File("a/f", "x"), tartest.Hardlink("a/g", "a/f"), tartest.Symlink("s", "a"), tartest.File("s/h", "through")))
	f.Add(gz(f, tartest.Tar(f, tartest.File("etc/hosts", "h"), tartest.File("etc/.wh.hosts", ""), tartest.File("\xff\xfe", "not utf-8"), tartest.Symlink("l\x80", "\xc3"))))
	f.Add(tartest.Tar(f, tartest.Entry{Name: "x", Type: tar.TypeReg, Body: "x", Mode: 0o7777, UID: 1 << 30, Xattrs: map[string]string{"user.\xff": "v", "user.ok": ""}}))
	f.Add(tartest.Tar(f, tartest.Symlink("up", ".."), tartest.File("up/escape", "x")))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := layer.Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		diffID, err := digest.SHA256.FromReader(rc)
		rc.Close()
		if err != nil {
			return
		}
		m := &memSource{ref: "fuzz", blobs: map[digest.Digest][]byte{}}
		ld := digest.SHA256.FromBytes(data)
		m.blobs[ld] = data
		cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}}
		cfg.OS = "linux"
		cb, _ := json.Marshal(cfg)
		cd := digest.SHA256.FromBytes(cb)
		m.blobs[cd] = cb
		man := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))},
			Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: ld, Size: int64(len(data))}}}
		man.SchemaVersion = 2
		m.manifest, _ = json.Marshal(man)

		s, err := OpenWithOptions(filepath.Join(t.TempDir(), "images"), Options{Layer: layer.Options{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxEntries: 512}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := s.Import(context.Background(), m, "")
		if err != nil {
			assertEmpty(t, s)
			return
		}
		entries, err := s.Tree(context.Background(), img)
		if err != nil {
			t.Fatalf("tree of an imported image: %v", err)
		}
		dst := filepath.Join(t.TempDir(), "rootfs")
		if _, err := s.Materialize(context.Background(), img, dst, MaterializeOptions{Copy: len(data)%2 == 0}); err != nil {
			t.Fatalf("materialize: %v", err)
		}
		for _, e := range entries {
			fi, err := os.Lstat(filepath.Join(dst, e.Path))
			if err != nil {
				t.Fatalf("%q not materialized: %v", e.Path, err)
			}
			switch e.Type {
			case TypeDir:
				if !fi.IsDir() {
					t.Fatalf("%q is not a directory", e.Path)
				}
			case TypeFile:
				if !fi.Mode().IsRegular() || fi.Size() != e.Size {
					t.Fatalf("%q: %v %d bytes, want a file of %d", e.Path, fi.Mode(), fi.Size(), e.Size)
				}
			case TypeSymlink:
				if target, err := os.Readlink(filepath.Join(dst, e.Path)); err != nil || target != e.Target {
					t.Fatalf("%q: link to %q (%v), want %q", e.Path, target, err, e.Target)
				}
			}
		}
	})
}
