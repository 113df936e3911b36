package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/image/oci"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/tartest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// rawLayout writes OCI layouts blob by blob, as a hostile one would be
// written, rather than through a library that only writes sane ones.
type rawLayout struct {
	t   testing.TB
	dir string
}

func newRawLayout(t testing.TB) *rawLayout {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return &rawLayout{t: t, dir: dir}
}

// put stores b as a blob and returns its descriptor.
func (l *rawLayout) put(mt types.MediaType, b []byte) v1.Descriptor {
	l.t.Helper()
	d := digest.SHA256.FromBytes(b)
	if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: d.Encoded()}}
}

func (l *rawLayout) index(children ...v1.Descriptor) v1.Descriptor {
	l.t.Helper()
	return l.put(types.OCIImageIndex, mustJSON(l.t, v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: children}))
}

// image stores an empty amd64 image whose config carries label and
// returns its manifest's descriptor, without a platform.
func (l *rawLayout) image(label string) v1.Descriptor {
	l.t.Helper()
	cfg := l.put(types.OCIConfigJSON, mustJSON(l.t, v1.ConfigFile{
		OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}},
		Config: v1.Config{Labels: map[string]string{"n": label}},
	}))
	return l.put(types.OCIManifestSchema1, mustJSON(l.t, v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfg, Layers: []v1.Descriptor{},
	}))
}

func (l *rawLayout) top(children ...v1.Descriptor) string {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, "index.json"), mustJSON(l.t, v1.IndexManifest{SchemaVersion: 2, Manifests: children}), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return l.dir
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLayoutHostile plays a user handing Arrow a crafted layout: each
// must fail with an error saying what is wrong, promptly, or (a diamond of
// shared indexes) succeed reading each document once.
func TestLayoutHostile(t *testing.T) {
	tests := []struct {
		name    string
		build   func(l *rawLayout) string
		wantErr string
	}{
		{"self-referencing index", func(l *rawLayout) string {
			// The blob a digest names cannot list that digest and still
			// match it: the digest check refuses it before any walk.
			self := l.index()
			b := mustJSON(t, v1.IndexManifest{SchemaVersion: 2, Manifests: []v1.Descriptor{self}})
			if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", self.Digest.Hex), b, 0o644); err != nil {
				t.Fatal(err)
			}
			return l.top(self)
		}, "digest mismatch"},
		{"cycle of two", func(l *rawLayout) string {
			// a lists b, and b's blob is rewritten to list a.
			b := l.index()
			a := l.index(b)
			raw := mustJSON(t, v1.IndexManifest{SchemaVersion: 2, Manifests: []v1.Descriptor{a}})
			if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", b.Digest.Hex), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			return l.top(a)
		}, "digest mismatch"},
		{"fan-out over the budget", func(l *rawLayout) string {
			var children []v1.Descriptor
			for i := range 100 {
				children = append(children, l.index(l.image(fmt.Sprint(i))))
			}
			return l.top(l.index(children...))
		}, "more than 64 indexes, manifests and configs"},
		{"many untagged images", func(l *rawLayout) string {
			var images []v1.Descriptor
			for i := range 40 {
				images = append(images, l.image(fmt.Sprint(i)))
			}
			return l.top(images...)
		}, "more than 64 indexes, manifests and configs"},
		{"diamond of shared indexes", func(l *rawLayout) string {
			// Three levels of 1000 references to one child: 10^9 walks
			// if shared children were walked each time they are named.
			d := l.index(l.image("only"))
			for range 3 {
				var same []v1.Descriptor
				for range 1000 {
					same = append(same, d)
				}
				d = l.index(same...)
			}
			return l.top(d)
		}, ""},
		{"nested too deep", func(l *rawLayout) string {
			d := l.index(l.image("deep"))
			for range 5 {
				d = l.index(d)
			}
			return l.top(d)
		}, "nested more than 4 deep"},
		{"oversized index", func(l *rawLayout) string {
			b := append(mustJSON(t, v1.IndexManifest{SchemaVersion: 2}), bytes.Repeat([]byte(" "), 5<<20)...)
			return l.top(l.put(types.OCIImageIndex, b))
		}, "larger than 4194304 bytes"},
		{"descriptor claims a huge size", func(l *rawLayout) string {
			d := l.index()
			d.Size = 1 << 40
			return l.top(d)
		}, "larger than 4194304 bytes"},
		{"oversized index.json", func(l *rawLayout) string {
			l.top()
			f, err := os.OpenFile(filepath.Join(l.dir, "index.json"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Write(bytes.Repeat([]byte(" "), 5<<20))
			return l.dir
		}, "larger than 4194304 bytes"},
		{"fifo for a blob", func(l *rawLayout) string {
			d := l.index()
			p := filepath.Join(l.dir, "blobs", "sha256", d.Digest.Hex)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return l.top(d)
		}, "not a regular file"},
		{"symlink for a blob", func(l *rawLayout) string {
			d := l.index()
			p := filepath.Join(l.dir, "blobs", "sha256", d.Digest.Hex)
			os.Remove(p)
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return l.top(d)
		}, "too many levels of symbolic links"},
		{"digest of another algorithm", func(l *rawLayout) string {
			d := l.index()
			d.Digest = v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("0", 128)}
			return l.top(d)
		}, "unsupported digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.build(newRawLayout(t))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			img, err := oci.FromLayout(ctx, dir, "", oci.Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := img.Manifest(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("FromLayout = %v, want %q", err, tc.wantErr)
			}
			if ctx.Err() != nil {
				t.Fatal("took to the deadline")
			}
			if tc.wantErr == "digest mismatch" && !errors.Is(err, store.ErrDigestMismatch) {
				t.Errorf("%v is not a store.ErrDigestMismatch", err)
			}
		})
	}
}

// dockerTar writes a docker-save style tarball of members.
func dockerTar(t testing.TB, members ...tartest.Entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docker.tar")
	if err := os.WriteFile(p, tartest.Tar(t, members...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dockerConfig is a minimal amd64 image config with no layers.
const dockerConfig = `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`

// TestDockerArchiveHostile plays a crafted docker-save tarball against
// FromDockerArchive: each must fail with an error saying what is wrong.
func TestDockerArchiveHostile(t *testing.T) {
	big := strings.Repeat(" ", 5<<20)
	tests := []struct {
		name    string
		members []tartest.Entry
		wantErr string
	}{
		{"sane", []tartest.Entry{tartest.File("c.json", dockerConfig), tartest.File("manifest.json", `[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]}]`)}, ""},
		{"oversized manifest.json", []tartest.Entry{tartest.File("c.json", dockerConfig), tartest.File("manifest.json", `[{"Config":"c.json"}]`+big)}, "larger than"},
		{"oversized config", []tartest.Entry{tartest.File("c.json", dockerConfig+big), tartest.File("manifest.json", `[{"Config":"c.json"}]`)}, "larger than"},
		{"config through a link to a big file", []tartest.Entry{tartest.File("big", big), tartest.Symlink("c.json", "big"), tartest.File("manifest.json", `[{"Config":"c.json"}]`)}, "larger than"},
		{"link loop", []tartest.Entry{tartest.Symlink("a", "b"), tartest.Symlink("b", "a"), tartest.File("manifest.json", `[{"Config":"a"}]`)}, "more than 16 links"},
		{"config outside", []tartest.Entry{tartest.File("manifest.json", `[{"Config":"../../etc/passwd"}]`)}, "leaves the archive"},
		{"missing layer", []tartest.Entry{tartest.File("c.json", dockerConfig), tartest.File("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`)}, "l.tar: not in the archive"},
		{"no manifest.json", []tartest.Entry{tartest.File("c.json", dockerConfig)}, "manifest.json: not in the archive"},
		{"manifest.json is a directory", []tartest.Entry{tartest.Dir("manifest.json")}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := dockerTar(t, tc.members...)
			img, err := oci.FromDockerArchive(context.Background(), p, "", oci.Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				img.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("FromDockerArchive = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzLayoutIndex reads a layout whose index.json and one nested index
// are arbitrary. "@nested" and "@image" in them stand for the digests of
// the nested index and of a real image, so the fuzzer can reach past the
// digest checks. Whatever they hold, FromLayout must return, without
// panicking, and an image it returns must be one the layout holds.
func FuzzLayoutIndex(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@image","size":1}]}`), []byte(`{}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@nested","size":1}]}`),
		[]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@image","platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@nested"},{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@nested"}]}`),
		[]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@nested"},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@image"}]}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@nested","annotations":{"org.opencontainers.image.ref.name":"x"}}]}`), []byte(`{"config":{"digest":"@image"}}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":-1}]}`), []byte(``))
	f.Add([]byte(`[]`), []byte(`null`))
	f.Fuzz(func(t *testing.T, index, nested []byte) {
		l := newRawLayout(t)
		img := l.image("fuzz")
		nested = bytes.ReplaceAll(nested, []byte("@image"), []byte(img.Digest.String()))
		nd := l.put(types.OCIImageIndex, nested)
		index = bytes.ReplaceAll(index, []byte("@image"), []byte(img.Digest.String()))
		index = bytes.ReplaceAll(index, []byte("@nested"), []byte(nd.Digest.String()))
		if err := os.WriteFile(filepath.Join(l.dir, "index.json"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tag := range []string{"", "x"} {
			got, err := oci.FromLayout(ctx, l.dir, tag, oci.Options{})
			if ctx.Err() != nil {
				t.Fatalf("FromLayout ran to the deadline: %v", err)
			}
			if err != nil {
				continue
			}
			raw, err := got.Manifest(ctx)
			if err != nil {
				t.Fatalf("picked an image whose manifest fails: %v", err)
			}
			if d := digest.SHA256.FromBytes(raw).Encoded(); d != img.Digest.Hex && d != nd.Digest.Hex {
				t.Fatalf("picked manifest %s, not in the layout", d)
			}
		}
	})
}

// FuzzDockerManifest reads a docker-save tarball whose manifest.json is
// arbitrary, beside a config, a layer and links to them. FromDockerArchive
// must return without panicking; an image it returns must have the
// archive's config (or fail when asked for its manifest).
func FuzzDockerManifest(f *testing.F) {
	f.Add([]byte(`[{"Config":"c.json","RepoTags":["example.com/a:1"],"Layers":["l/layer.tar"]}]`))
	f.Add([]byte(`[{"Config":"link.json","Layers":["l/layer.tar","l/layer.tar"]}]`))
	f.Add([]byte(`[{"Config":"c.json"},{"Config":"c.json","RepoTags":["b:2"]}]`))
	f.Add([]byte(`[{"Config":"loop","Layers":["../l/layer.tar"]}]`))
	f.Add([]byte(`[{"Config":"c.json","LayerSources":{"sha256:` + strings.Repeat("a", 64) + `":{"mediaType":"x","size":1,"digest":"sha256:` + strings.Repeat("b", 64) + `","urls":["http://127.0.0.1:1/"]}}}]`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	layerTar := string(tartest.Tar(f, tartest.File("hello", "hi\n")))
	var diffID v1.Hash
	{
		d := digest.SHA256.FromString(layerTar)
		diffID = v1.Hash{Algorithm: "sha256", Hex: d.Encoded()}
	}
	cfg := strings.Replace(dockerConfig, `"diff_ids":[]`, `"diff_ids":["`+diffID.String()+`"]`, 1)
	f.Fuzz(func(t *testing.T, manifest []byte) {
		p := dockerTar(t,
			tartest.File("c.json", cfg),
			tartest.Symlink("link.json", "c.json"),
			tartest.Symlink("loop", "loop"),
			tartest.File("l/layer.tar", layerTar),
			tartest.Entry{Name: "manifest.json", Type: tar.TypeReg, Body: string(manifest), Mode: 0o644},
		)
		for _, tag := range []string{"", "example.com/a:1"} {
			img, err := oci.FromDockerArchive(context.Background(), p, tag, oci.Options{})
			if err != nil {
				continue
			}
			raw, err := img.Manifest(context.Background())
			if err != nil {
				// The archive library checks layers against the config
				// lazily: an error now still fails the import.
				img.Close()
				continue
			}
			var m v1.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("accepted image's manifest: %v", err)
			}
			if want := digest.SHA256.FromString(cfg).Encoded(); m.Config.Digest.Hex != want {
				t.Fatalf("config %s, want the archive's %s", m.Config.Digest, want)
			}
			img.Close()
		}
	})
}
