package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ent is one entry of a test layer.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	xattrs           map[string]string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func mktar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: testTime, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

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
	created := testTime
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

// randomFiles makes n files of size bytes of random content under dir,
// from seed.
func randomFiles(seed uint64, dir string, n, size int) []ent {
	r := rand.New(rand.NewPCG(seed, seed))
	var out []ent
	for i := range n {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out = append(out, file(fmt.Sprintf("%s/f%03d", dir, i), string(b)))
	}
	return out
}

// listTree describes the tree at dir as sorted lines.
func listTree(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.ModTime().Unix())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case !d.IsDir():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + digest.SHA256.FromBytes(b).Encoded()[:12]
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
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
