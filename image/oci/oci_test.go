package oci_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/image/oci"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeLayout writes images to a new layout, tagged.
func writeLayout(t testing.TB, images map[string]v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for tag, img := range images {
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: tag})); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func importFrom(t testing.TB, s *store.Store, src string) store.Image {
	t.Helper()
	img, err := oci.Open(context.Background(), src, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	rec, err := s.Import(context.Background(), img, "")
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestBusybox imports a busybox image with its symlinks, materializes it
// and runs it.
func TestBusybox(t *testing.T) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("no /bin/busybox:", err)
	}
	l := newLayer(t, []tartest.Entry{
		tartest.Dir("bin"), {Name: "bin/busybox", Type: '0', Body: string(bb), Mode: 0o755},
		tartest.Symlink("bin/sh", "busybox"), tartest.Symlink("bin/ls", "busybox"), tartest.Symlink("bin/echo", "/bin/busybox"),
		tartest.Dir("usr"), tartest.Symlink("usr/bin", "../bin"), tartest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), tartest.Dir("tmp"),
	})
	dir := writeLayout(t, map[string]v1.Image{"busybox": newImage(t, "amd64", l)})
	s := openStore(t)
	rec := importFrom(t, s, "oci:"+dir+":busybox")
	if rec.Config.Entrypoint[0] != "/bin/sh" || rec.Platform.Architecture != "amd64" {
		t.Errorf("record %+v", rec)
	}
	dst := filepath.Join(t.TempDir(), "rootfs")
	if _, err := s.Materialize(context.Background(), rec, dst, store.MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"bin/sh", "bin/ls", "usr/bin"} {
		if fi, err := os.Lstat(filepath.Join(dst, link)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: not a symlink (%v)", link, err)
		}
	}
	out, err := exec.Command(filepath.Join(dst, "bin/sh"), "-c", "echo hello").CombinedOutput()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("bin/sh: %q %v", out, err)
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("chroot"); err == nil {
			out, err := exec.Command("chroot", dst, "/usr/bin/sh", "-c", "echo $(ls /bin)").CombinedOutput()
			if err != nil || string(out) != "busybox echo ls sh\n" {
				t.Errorf("in a chroot: %q %v", out, err)
			}
		}
	}
}

// TestDedupe imports two images carrying the same files in different
// layers and orders: the files are stored once.
func TestDedupe(t *testing.T) {
	runtimeA := tartest.RandomFiles(1, "usr/lib/python3", 24, 96<<10)
	runtimeB := tartest.RandomFiles(2, "usr/lib/python3/site", 8, 128<<10)
	app := tartest.RandomFiles(3, "app", 2, 64<<10)
	one := newImage(t, "amd64", newLayer(t, runtimeA), newLayer(t, runtimeB), newLayer(t, app))
	two := newImage(t, "amd64", newLayer(t, app), newLayer(t, runtimeB, tarball.WithCompression(compression.ZStd)), newLayer(t, runtimeA))
	dir := writeLayout(t, map[string]v1.Image{"one": one, "two": two})
	s := openStore(t)
	r1 := importFrom(t, s, "oci:"+dir+":one")
	r2 := importFrom(t, s, "oci:"+dir+":two")
	if r1.ID == r2.ID {
		t.Fatal("the two images have one ID")
	}
	u, err := s.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	content := int64(24*96<<10 + 8*128<<10 + 2*64<<10)
	t.Logf("content %d, stored %d, unshared %d", content, u.StoredBytes, u.UnsharedBytes)
	if u.Files != 34 || u.FileBytes != content {
		t.Errorf("files %d (%d bytes), want 34 (%d)", u.Files, u.FileBytes, content)
	}
	if u.StoredBytes < content || u.StoredBytes > content*105/100 {
		t.Errorf("stored %d bytes, want about %d", u.StoredBytes, content)
	}
	if u.UnsharedBytes < 2*content || u.UnsharedBytes > 2*content*105/100 {
		t.Errorf("unshared %d bytes, want about %d", u.UnsharedBytes, 2*content)
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, m := range []struct {
		img store.Image
		dst string
	}{{r1, a}, {r2, b}} {
		if _, err := s.Materialize(context.Background(), m.img, m.dst, store.MaterializeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if tartest.Tree(t, a, tartest.TreeOptions{Root: true, MaxContent: 32}) != tartest.Tree(t, b, tartest.TreeOptions{Root: true, MaxContent: 32}) {
		t.Error("the two images' trees differ")
	}
}

// TestLayers: whiteouts, opaque directories and hard links across layers,
// through a layout.
func TestLayers(t *testing.T) {
	lower := newLayer(t, []tartest.Entry{
		tartest.File("etc/hosts", "lower hosts"), tartest.File("etc/motd", "hi"), tartest.File("old/a", "a"), tartest.File("old/b", "b"),
		tartest.File("opq/lower", "lower"), tartest.File("bin/tool", "tool"), tartest.Hardlink("bin/tool2", "bin/tool"),
	})
	upper := newLayer(t, []tartest.Entry{
		tartest.File(".wh.old", ""), tartest.Dir("opq"), tartest.File("opq/.wh..wh..opq", ""), tartest.File("opq/upper", "upper"),
		tartest.File("etc/.wh.motd", ""), tartest.File("etc/hosts", "upper hosts"), tartest.Hardlink("bin/tool3", "bin/tool"),
	}, tarball.WithCompression(compression.ZStd))
	dir := writeLayout(t, map[string]v1.Image{"layers": newImage(t, "amd64", lower, upper)})
	s := openStore(t)
	rec := importFrom(t, s, dir)
	dst := filepath.Join(t.TempDir(), "rootfs")
	if _, err := s.Materialize(context.Background(), rec, dst, store.MaterializeOptions{Copy: true}); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{"./", "bin/", "bin/tool = tool", "bin/tool2 = tool", "bin/tool3 = tool",
		"etc/", "etc/hosts = upper hosts", "opq/", "opq/upper = upper"}, "\n")
	if got := tartest.Tree(t, dst, tartest.TreeOptions{Root: true, MaxContent: 32}); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
	fi2, _ := os.Stat(filepath.Join(dst, "bin/tool2"))
	fi3, _ := os.Stat(filepath.Join(dst, "bin/tool3"))
	if !os.SameFile(fi2, fi3) {
		t.Error("bin/tool2 and bin/tool3 are not one file")
	}
}

// cancelling cancels its context after n bytes of layers have been read.
type cancelling struct {
	*oci.Image
	n      int
	cancel func()
}

func (c *cancelling) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := c.Image.Blob(ctx, d)
	if err != nil || d.MediaType == ocispec.MediaTypeImageConfig {
		return rc, err
	}
	return &cancelReader{rc: rc, c: c}, nil
}

type cancelReader struct {
	rc io.ReadCloser
	c  *cancelling
}

func (r *cancelReader) Read(p []byte) (int, error) {
	if r.c.n <= 0 {
		r.c.cancel()
	}
	n, err := r.rc.Read(p[:min(len(p), 8192)])
	r.c.n -= n
	return n, err
}

func (r *cancelReader) Close() error { return r.rc.Close() }

// TestInterruptedImport cancels an import midway: nothing is listed,
// nothing is left, and importing again works.
func TestInterruptedImport(t *testing.T) {
	img := newImage(t, "amd64", newLayer(t, tartest.RandomFiles(4, "data", 16, 64<<10)), newLayer(t, tartest.RandomFiles(5, "more", 16, 64<<10)))
	dir := writeLayout(t, map[string]v1.Image{"big": img})
	s := openStore(t)
	src, err := oci.FromLayout(context.Background(), dir, "big", oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.Import(ctx, &cancelling{Image: src, n: 1 << 20, cancel: cancel}, "big"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import: %v, want context.Canceled", err)
	}
	s2, err := store.Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if imgs, err := s2.List(context.Background()); err != nil || len(imgs) != 0 {
		t.Errorf("List after cancel: %d images, %v", len(imgs), err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(left) != 0 {
		t.Errorf("left in tmp: %v", left)
	}
	if _, err := s2.Import(context.Background(), src, "big"); err != nil {
		t.Fatal(err)
	}
}

// TestDigestMismatch corrupts blobs of a layout: the import fails and
// nothing is recorded.
func TestDigestMismatch(t *testing.T) {
	img := newImage(t, "amd64", newLayer(t, tartest.RandomFiles(6, "data", 4, 32<<10)), newLayer(t, []tartest.Entry{tartest.File("x", "x")}))
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	mdig, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		blob    v1.Hash
		corrupt func([]byte) []byte
	}{
		{"layer byte flipped", m.Layers[0].Digest, func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"layer truncated", m.Layers[1].Digest, func(b []byte) []byte { return b[:len(b)-1] }},
		{"layer replaced", m.Layers[1].Digest, func(b []byte) []byte { return tartest.Tar(t, tartest.File("x", "y")) }},
		{"config edited", m.Config.Digest, func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"arch":"amd64"`, `"arch":"evil!"`, 1))
		}},
		{"manifest edited", mdig, func(b []byte) []byte { return append(b, ' ') }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLayout(t, map[string]v1.Image{"img": img})
			p := filepath.Join(dir, "blobs", tc.blob.Algorithm, tc.blob.Hex)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.corrupt(b), 0o644); err != nil {
				t.Fatal(err)
			}
			s := openStore(t)
			src, err := oci.Open(context.Background(), "oci:"+dir, oci.Options{})
			if err == nil {
				_, err = s.Import(context.Background(), src, "img")
			}
			if !errors.Is(err, store.ErrDigestMismatch) {
				t.Fatalf("got %v, want a digest mismatch", err)
			}
			t.Log(err)
			if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
				t.Error("an image was recorded")
			}
		})
	}
}

// TestPlatform picks images from an index by platform.
func TestPlatform(t *testing.T) {
	amd := newImage(t, "amd64", newLayer(t, []tartest.Entry{tartest.File("arch", "amd64")}))
	arm := newImage(t, "arm64", newLayer(t, []tartest.Entry{tartest.File("arch", "arm64")}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}
	// Two untagged single-platform images as well.
	if err := p.AppendImage(amd); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(newImage(t, "amd64", newLayer(t, []tartest.Entry{tartest.File("other", "x")}))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tag, arch string
		want      error
	}{
		{"multi", "", nil},
		{"multi", "arm64", nil},
		{"multi", "s390x", oci.ErrNoMatch},
		{"", "", oci.ErrAmbiguous},
		{"", "arm64", nil},
		{"nope", "", oci.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.tag+"/"+tc.arch, func(t *testing.T) {
			opts := oci.Options{}
			if tc.arch != "" {
				opts.Platform = v1.Platform{OS: "linux", Architecture: tc.arch}
			}
			img, err := oci.FromLayout(context.Background(), dir, tc.tag, opts)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("FromLayout: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			rec, err := openStore(t).Import(context.Background(), img, "x")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.arch
			if want == "" {
				want = "amd64"
			}
			if rec.Platform.Architecture != want || rec.Config.Labels["arch"] != want {
				t.Errorf("picked %s", rec.Platform.Architecture)
			}
		})
	}
}

// TestArchives imports the same image from a docker-save tarball and an
// OCI archive: one image, one ID.
func TestArchives(t *testing.T) {
	img := newImage(t, "amd64", newLayer(t, []tartest.Entry{tartest.File("etc/os-release", "ID=test\n"), tartest.Symlink("bin", "usr/bin"), tartest.File("usr/bin/app", "app")}))
	tmp := t.TempDir()
	dockerTar := filepath.Join(tmp, "docker.tar")
	tag, err := name.NewTag("example.com/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(dockerTar, tag, img); err != nil {
		t.Fatal(err)
	}
	dir := writeLayout(t, map[string]v1.Image{"app": img})
	ociTar := filepath.Join(tmp, "oci.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", ociTar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	s := openStore(t)
	var ids []string
	for _, src := range []string{dockerTar, "docker-archive:" + dockerTar + ":example.com/app:1", ociTar, "oci-archive:" + ociTar + ":app", dir} {
		rec := importFrom(t, s, src)
		ids = append(ids, rec.ID)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("IDs differ: %v", ids)
		}
	}
	imgs, _ := s.List(context.Background())
	if len(imgs) != 1 || len(imgs[0].Names) != 5 {
		t.Errorf("images %d, names %v", len(imgs), imgs[0].Names)
	}
	// A docker-save tarball names its image by its RepoTags, as docker
	// load and ctr import do.
	for _, src := range []string{dockerTar, "docker-archive:" + dockerTar + ":example.com/app:1"} {
		di, err := oci.Open(context.Background(), src, oci.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n := di.Names(); len(n) != 1 || n[0] != "example.com/app:1" {
			t.Errorf("%s: names %q, want the tarball's tag", src, n)
		}
		di.Close()
	}
	// The OCI archive was unpacked to a temporary directory, now gone.
	src, err := oci.Open(context.Background(), ociTar, oci.Options{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "arrow-oci-archive-*")); len(left) != 1 {
		t.Errorf("unpacked: %v", left)
	}
	src.Close()
	if left, _ := filepath.Glob(filepath.Join(tmp, "arrow-oci-archive-*")); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
}

func TestRegistryErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	// Port 1 on the loopback interface: refused at once, no registry
	// contacted.
	_, err := oci.FromRegistry(ctx, "127.0.0.1:1/arrow/test:latest", oci.Options{Insecure: true})
	if !errors.Is(err, oci.ErrUnreachable) {
		t.Errorf("got %v, want ErrUnreachable", err)
	}
	t.Log(err, time.Since(start))
	if _, err := oci.FromRegistry(ctx, "UPPER/Case:tag", oci.Options{}); err == nil {
		t.Error("a bad reference was accepted")
	}
	if _, err := oci.Open(ctx, "oci:/nonexistent/layout", oci.Options{}); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("missing layout: %v", err)
	}
}
