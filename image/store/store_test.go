package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// baseImage has two layers: files, links and metadata, then whiteouts.
func baseImage(t testing.TB) *memSource {
	return build(t, "test/base:1", imageSpec{
		config: ocispec.ImageConfig{
			Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin"},
			WorkingDir: "/srv", User: "1000:1000", ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Labels: map[string]string{"org.example": "yes"},
		},
		layers: [][]byte{
			tartest.Tar(t,
				tartest.Dir("bin"), tartest.Entry{Name: "bin/app", Type: tar.TypeReg, Body: "app binary", Mode: 0o4755, UID: 0, GID: 0},
				tartest.Hardlink("bin/app-alias", "bin/app"), tartest.Symlink("bin/sh", "app"), tartest.Symlink("usr", "."),
				tartest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o750, UID: 7, GID: 8},
				tartest.Entry{Name: "etc/conf", Type: tar.TypeReg, Body: "conf", Mode: 0o640, UID: 7, GID: 8, Xattrs: map[string]string{"user.tag": "v1"}},
				tartest.File("old/a", "a"), tartest.File("old/b", "b"), tartest.File("opq/lower", "lower"), tartest.File("same", "shared content"),
				tartest.Entry{Name: "dev/null", Type: tar.TypeChar},
			),
			tartest.Tar(t,
				tartest.File(".wh.old", ""), tartest.Dir("opq"), tartest.File("opq/.wh..wh..opq", ""), tartest.File("opq/upper", "upper"),
				tartest.File("srv/copy-of-same", "shared content"), tartest.File("usr/bin/through-link", "x"),
			),
		},
	})
}

func TestImportMaterialize(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	src := baseImage(t)
	img, err := s.Import(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	if img.Name() != "test/base:1" || img.Config.Entrypoint[0] != "/bin/app" || img.Config.User != "1000:1000" ||
		img.Platform.OS != "linux" || len(img.Layers) != 2 || img.Config.Labels["org.example"] != "yes" {
		t.Errorf("record %+v", img)
	}
	if _, ok := img.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Error("exposed ports lost")
	}
	for _, ref := range []string{"test/base:1", img.ID, "sha256:" + img.ID, img.ID[:6]} {
		if got, err := s.Get(ctx, ref); err != nil || got.ID != img.ID {
			t.Errorf("Get(%q): %v", ref, err)
		}
	}
	entries, err := s.Tree(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	byPath := map[string]Entry{}
	for _, e := range entries {
		paths = append(paths, e.Path+":"+string(e.Type))
		byPath[e.Path] = e
	}
	want := []string{"/:dir", "/bin:dir", "/bin/app:file", "/bin/app-alias:file", "/bin/sh:symlink", "/bin/through-link:file",
		"/dev:dir", "/etc:dir", "/etc/conf:file", "/opq:dir", "/opq/upper:file", "/same:file", "/srv:dir", "/srv/copy-of-same:file", "/usr:symlink"}
	if !slices.Equal(paths, want) {
		t.Errorf("tree:\n%v\nwant\n%v", paths, want)
	}
	if e := byPath["/bin/app-alias"]; e.Link != "/bin/app" || e.Digest != byPath["/bin/app"].Digest {
		t.Errorf("hard link %+v", e)
	}
	if e := byPath["/bin/app"]; e.Mode != 0o4755 || !e.ModTime.Equal(tartest.Time) {
		t.Errorf("app %+v", e)
	}
	if e := byPath["/etc/conf"]; e.UID != 7 || e.GID != 8 || e.Mode != 0o640 || string(e.Xattrs["user.tag"]) != "v1" {
		t.Errorf("conf %+v", e)
	}
	if e := byPath["/usr"]; e.Target != "." {
		t.Errorf("usr %+v", e)
	}
	if img.Size != int64(len("app binary")+len("conf")+len("upper")+2*len("shared content")+1) {
		t.Errorf("size %d", img.Size)
	}
	// The two copies of "shared content" and the hard link are one file.
	if got := dirEntries(t, s.path("files", "sha256")); len(got) != 5 {
		t.Errorf("files/: %d entries, want 5", len(got))
	}

	linked := filepath.Join(t.TempDir(), "linked")
	st, err := s.Materialize(ctx, img, linked, MaterializeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Linked == 0 {
		t.Errorf("nothing linked: %+v", st)
	}
	copied := filepath.Join(t.TempDir(), "copied")
	st, err = s.Materialize(ctx, img, copied, MaterializeOptions{Copy: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Linked != 0 || st.Copied != 6 {
		t.Errorf("copy stats %+v", st)
	}
	if a, b := tartest.Tree(t, linked, tartest.TreeOptions{Root: true, Stat: true}), tartest.Tree(t, copied, tartest.TreeOptions{Root: true, Stat: true}); a != b {
		t.Errorf("linked and copied trees differ:\n%s\n---\n%s", a, b)
	}
	var app, alias syscall.Stat_t
	syscall.Lstat(filepath.Join(copied, "bin/app"), &app)
	syscall.Lstat(filepath.Join(copied, "bin/app-alias"), &alias)
	if app.Ino != alias.Ino || app.Mode&0o7777 != 0o4755 {
		t.Errorf("copied hard link: inodes %d %d, mode %o", app.Ino, alias.Ino, app.Mode&0o7777)
	}
	if os.Geteuid() == 0 {
		var conf syscall.Stat_t
		syscall.Lstat(filepath.Join(copied, "etc/conf"), &conf)
		if conf.Uid != 7 || conf.Gid != 8 {
			t.Errorf("conf owner %d:%d", conf.Uid, conf.Gid)
		}
	}
	buf := make([]byte, 8)
	if n, err := syscall.Getxattr(filepath.Join(copied, "etc/conf"), "user.tag", buf); err != nil || string(buf[:n]) != "v1" {
		t.Errorf("xattr: %q %v", buf[:n], err)
	}
	if _, err := s.Materialize(ctx, img, copied, MaterializeOptions{}); err == nil {
		t.Error("Materialize into a non-empty directory succeeded")
	}
}

func TestImportVerifies(t *testing.T) {
	ok := func(t testing.TB) imageSpec {
		return imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("a", strings.Repeat("a", 5000))), tartest.Tar(t, tartest.File("b", "b"))}}
	}
	tests := []struct {
		name   string
		mutate func(t testing.TB, m *memSource)
		spec   func(t testing.TB) imageSpec
		want   error
	}{
		{"corrupt layer", func(t testing.TB, m *memSource) { corruptLayer(t, m, 0, func(b []byte) { b[len(b)/2] ^= 1 }) }, ok, ErrDigestMismatch},
		{"truncated layer", func(t testing.TB, m *memSource) { editLayer(t, m, 0, func(b []byte) []byte { return b[:len(b)-10] }) }, ok, ErrDigestMismatch},
		{"longer layer", func(t testing.TB, m *memSource) { editLayer(t, m, 1, func(b []byte) []byte { return append(b, 0) }) }, ok, ErrDigestMismatch},
		{"corrupt config", func(t testing.TB, m *memSource) {
			man := manifestOf(t, m)
			m.blobs[man.Config.Digest] = bytes.Replace(m.blobs[man.Config.Digest], []byte("amd64"), []byte("arm64"), 1)
		}, ok, ErrDigestMismatch},
		{"wrong diff id", func(t testing.TB, m *memSource) {
			man := manifestOf(t, m)
			var cfg ocispec.Image
			json.Unmarshal(m.blobs[man.Config.Digest], &cfg)
			cfg.RootFS.DiffIDs[1] = digest.SHA256.FromString("not it")
			setConfig(t, m, cfg)
		}, ok, ErrDigestMismatch},
		{"index", func(t testing.TB, m *memSource) {
			m.manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
		}, ok, ErrUnsupported},
		{"untyped index", func(t testing.TB, m *memSource) { m.manifest = []byte(`{"schemaVersion":2,"manifests":[]}`) }, ok, ErrUnsupported},
		{"windows", nil, func(t testing.TB) imageSpec { s := ok(t); s.os = "windows"; return s }, ErrUnsupported},
		{"not json", func(t testing.TB, m *memSource) { m.manifest = []byte("<html>") }, ok, ErrInvalidImage},
		{"layer type", func(t testing.TB, m *memSource) {
			m.manifest = bytes.Replace(m.manifest, []byte(ocispec.MediaTypeImageLayerGzip), []byte("application/vnd.oci.image.layer.v1.tar+encrypted"), 1)
		}, ok, ErrUnsupported},
		{"bad layer in a good blob", nil, func(t testing.TB) imageSpec {
			return imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("../escape", "x"))}}
		}, nil},
		{"missing blob", func(t testing.TB, m *memSource) { delete(m.blobs, manifestOf(t, m).Layers[1].Digest) }, ok, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			m := build(t, "test/bad", tc.spec(t))
			if tc.mutate != nil {
				tc.mutate(t, m)
			}
			_, err := s.Import(context.Background(), m, "")
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Import: %v, want %v", err, tc.want)
			}
			assertEmpty(t, s)
		})
	}
}

// assertEmpty checks that s holds no image, no file and no leftover.
func assertEmpty(t testing.TB, s *Store) {
	t.Helper()
	imgs, err := s.List(context.Background())
	if err != nil || len(imgs) != 0 {
		t.Errorf("List: %d images, %v", len(imgs), err)
	}
	for _, d := range []string{"tmp", "files/sha256", "images"} {
		if got := dirEntries(t, s.path(d)); len(got) != 0 {
			t.Errorf("%s: %v", d, got)
		}
	}
}

func manifestOf(t testing.TB, m *memSource) ocispec.Manifest {
	var man ocispec.Manifest
	if err := json.Unmarshal(m.manifest, &man); err != nil {
		t.Fatal(err)
	}
	return man
}

// corruptLayer changes layer i's blob in place, keeping its descriptor.
func corruptLayer(t testing.TB, m *memSource, i int, f func([]byte)) {
	d := manifestOf(t, m).Layers[i].Digest
	b := bytes.Clone(m.blobs[d])
	f(b)
	m.blobs[d] = b
}

// editLayer replaces layer i's blob, keeping its descriptor.
func editLayer(t testing.TB, m *memSource, i int, f func([]byte) []byte) {
	d := manifestOf(t, m).Layers[i].Digest
	m.blobs[d] = f(bytes.Clone(m.blobs[d]))
}

// setConfig replaces the config and points the manifest at it.
func setConfig(t testing.TB, m *memSource, cfg ocispec.Image) {
	man := manifestOf(t, m)
	b, _ := json.Marshal(cfg)
	d := digest.SHA256.FromBytes(b)
	m.blobs[d] = b
	man.Config.Digest, man.Config.Size = d, int64(len(b))
	m.manifest, _ = json.Marshal(man)
}

func TestNamesRemovePrune(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a := build(t, "a", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("common", "common"), tartest.File("only-a", "A"))}})
	b := build(t, "b", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("common", "common"), tartest.File("only-b", "B"))}})
	imgA, err := s.Import(ctx, a, "app:latest")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Import(ctx, a, "app:1"); err != nil || again.ID != imgA.ID || !slices.Equal(again.Names, []string{"app:1", "app:latest"}) {
		t.Fatalf("re-import: %+v %v", again.Names, err)
	}
	if a.opened.Load() != 0 {
		t.Errorf("re-import opened %d layers", a.opened.Load())
	}
	imgB, err := s.Import(ctx, b, "app:latest")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "app:latest"); got.ID != imgB.ID {
		t.Error("app:latest did not move to b")
	}
	if got, _ := s.Get(ctx, imgA.ID); !slices.Equal(got.Names, []string{"app:1"}) {
		t.Errorf("a's names %v", got.Names)
	}
	imgs, _ := s.List(ctx)
	if len(imgs) != 2 || imgs[0].ID != imgB.ID {
		t.Errorf("List: %v", imgs)
	}
	for _, tc := range []struct {
		ref  string
		want error
	}{{"nope", ErrNotFound}, {"", ErrNotFound}, {"abc", ErrNotFound}, {imgA.ID[:3], ErrNotFound}} {
		if _, err := s.Get(ctx, tc.ref); !errors.Is(err, tc.want) {
			t.Errorf("Get(%q): %v, want %v", tc.ref, err, tc.want)
		}
	}
	for _, name := range []string{"", "with space", "tab\t", strings.Repeat("x", 600)} {
		if _, err := s.Import(ctx, a, name); name != "" && !errors.Is(err, ErrInvalidName) {
			t.Errorf("Import(%q): %v", name, err)
		}
	}

	u, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Images != 2 || u.Files != 3 || u.ReclaimableBytes != 0 {
		t.Errorf("usage %+v", u)
	}
	if u.PerImage[1].UniqueBytes == 0 || u.PerImage[1].UniqueBytes >= u.PerImage[1].Size {
		t.Errorf("per image %+v", u.PerImage)
	}
	if _, err := s.Remove(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, imgA.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed image: %v", err)
	}
	if u2, _ := s.Usage(ctx); u2.ReclaimableBytes != u.PerImage[1].UniqueBytes {
		t.Errorf("reclaimable %d, want %d", u2.ReclaimableBytes, u.PerImage[1].UniqueBytes)
	}
	ps, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Files != 1 || ps.Blobs != 3 {
		t.Errorf("prune %+v", ps)
	}
	dst := filepath.Join(t.TempDir(), "b")
	if _, err := s.Materialize(ctx, imgB, dst, MaterializeOptions{}); err != nil {
		t.Fatalf("b after prune: %v", err)
	}
	if _, err := s.Materialize(ctx, imgA, filepath.Join(t.TempDir(), "a"), MaterializeOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Materialize of a removed image: %v", err)
	}
	if _, err := s.Remove(ctx, imgB.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

// TestDedupeLayerOrder: the same files in different layers and orders are
// stored once.
func TestDedupeLayerOrder(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	runtime := tartest.RandomFiles(1, "usr/lib/runtime", 16, 64<<10)
	app := tartest.RandomFiles(2, "app", 4, 16<<10)
	one := build(t, "one", imageSpec{layers: [][]byte{tartest.Tar(t, runtime...), tartest.Tar(t, app...)}})
	two := build(t, "two", imageSpec{layers: [][]byte{tartest.Tar(t, app...), tartest.Tar(t, runtime[:8]...), tartest.Tar(t, runtime[8:]...)}})
	for _, src := range []*memSource{one, two} {
		if _, err := s.Import(ctx, src, ""); err != nil {
			t.Fatal(err)
		}
	}
	u, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	content := int64(16*64<<10 + 4*16<<10)
	if u.Files != 20 || u.FileBytes != content {
		t.Errorf("files %d (%d bytes), want 20 (%d)", u.Files, u.FileBytes, content)
	}
	if u.UnsharedBytes < 2*content || u.StoredBytes > content+content/10 {
		t.Errorf("stored %d, unshared %d; content %d", u.StoredBytes, u.UnsharedBytes, content)
	}
}

func TestCancelImport(t *testing.T) {
	s := openStore(t)
	src := build(t, "big", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.RandomFiles(3, "data", 8, 256<<10)...), tartest.Tar(t, tartest.File("b", "b"))}})
	ctx, cancel := context.WithCancel(context.Background())
	src.wrap = func(r io.Reader) io.Reader { return &cancelAfter{r: r, n: 100 << 10, cancel: cancel} }
	if _, err := s.Import(ctx, src, ""); !errors.Is(err, context.Canceled) || errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Import: %v, want context.Canceled", err)
	}
	assertEmpty(t, s)
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	src.wrap = nil
	if _, err := s2.Import(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestConcurrentImports imports images from several goroutines at once:
// the locks are per open file, so this exercises them as processes would.
func TestConcurrentImports(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	shared := tartest.RandomFiles(4, "shared", 8, 32<<10)
	srcs := []*memSource{
		build(t, "x", imageSpec{layers: [][]byte{tartest.Tar(t, shared...)}}),
		build(t, "y", imageSpec{layers: [][]byte{tartest.Tar(t, shared...), tartest.Tar(t, tartest.File("y", "y"))}}),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			st, err := Open(s.Root())
			if err == nil {
				_, err = st.Import(ctx, srcs[i%2], []string{"x", "y"}[i%2]+":"+string(rune('0'+i)))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	imgs, err := s.List(ctx)
	if err != nil || len(imgs) != 2 {
		t.Fatalf("List: %d, %v", len(imgs), err)
	}
	for _, img := range imgs {
		if len(img.Names) != 4 {
			t.Errorf("%s: names %v", img.ShortID(), img.Names)
		}
	}
	if got := dirEntries(t, s.path("files", "sha256")); len(got) != 9 {
		t.Errorf("files: %d, want 9", len(got))
	}
	if got := dirEntries(t, s.path("tmp")); len(got) != 0 {
		t.Errorf("tmp: %v", got)
	}
}

func TestCheckTree(t *testing.T) {
	d := digest.SHA256.FromString("x")
	root := Entry{Path: "/", Type: TypeDir, Mode: 0o755}
	tests := []struct {
		name    string
		entries []Entry
		ok      bool
	}{
		{"fine", []Entry{root, {Path: "/a", Type: TypeDir}, {Path: "/a/f", Type: TypeFile, Digest: d}, {Path: "/a/g", Type: TypeFile, Digest: d, Link: "/a/f"}, {Path: "/s", Type: TypeSymlink, Target: "/a"}}, true},
		{"empty", nil, false},
		{"no root", []Entry{{Path: "/a", Type: TypeDir}}, false},
		{"unsorted", []Entry{root, {Path: "/b", Type: TypeDir}, {Path: "/a", Type: TypeDir}}, false},
		{"duplicate", []Entry{root, {Path: "/a", Type: TypeDir}, {Path: "/a", Type: TypeDir}}, false},
		{"dot-dot", []Entry{root, {Path: "/a/../b", Type: TypeDir}}, false},
		{"relative", []Entry{root, {Path: "a", Type: TypeDir}}, false},
		{"missing parent", []Entry{root, {Path: "/a/b", Type: TypeDir}}, false},
		{"parent is a symlink", []Entry{root, {Path: "/a", Type: TypeSymlink, Target: "/etc"}, {Path: "/a/b", Type: TypeFile, Digest: d}}, false},
		{"file without digest", []Entry{root, {Path: "/f", Type: TypeFile}}, false},
		{"link to later", []Entry{root, {Path: "/f", Type: TypeFile, Digest: d, Link: "/g"}, {Path: "/g", Type: TypeFile, Digest: d}}, false},
		{"empty target", []Entry{root, {Path: "/s", Type: TypeSymlink}}, false},
		{"bad mode", []Entry{root, {Path: "/d", Type: TypeDir, Mode: 0o170000}}, false},
		{"unknown type", []Entry{root, {Path: "/d", Type: "fifo"}}, false},
	}
	for _, tc := range tests {
		if err := checkTree(tc.entries); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestMaterializeOtherFS materializes onto another file system (tmpfs):
// files are copied.
func TestMaterializeOtherFS(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "arrow-store-test-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	defer os.RemoveAll(shm)
	var a, b syscall.Statfs_t
	syscall.Statfs(shm, &a)
	s := openStore(t)
	syscall.Statfs(s.Root(), &b)
	if a.Fsid == b.Fsid {
		t.Skip("/dev/shm is on the store's file system")
	}
	img, err := s.Import(context.Background(), baseImage(t), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Materialize(context.Background(), img, filepath.Join(shm, "rootfs"), MaterializeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Linked != 0 || st.Copied != 6 {
		t.Errorf("stats %+v", st)
	}
	if got, err := os.ReadFile(filepath.Join(shm, "rootfs/opq/upper")); err != nil || string(got) != "upper" {
		t.Errorf("opq/upper: %q %v", got, err)
	}
}
