package run

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/image/store"
)

// testImage is a one-layer image with a user database.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range [][2]string{
		{"etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
		{"etc/group", "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"},
		{"bin/app", "#!/bin/sh\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(f[1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Cmd: []string{"/bin/app"}, User: "app"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestFindImage(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "app.tar")
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want := cfgName.Hex

	s, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	tests := []struct {
		name, ref string
		err       string // "" when the image is found
		named     string // a name it is then stored under
	}{
		{"layout directory", lay, "", "oci:" + lay},
		{"again: idempotent", lay, "", "oci:" + lay},
		{"relative layout", "./layout", "", "oci:" + lay},
		{"oci: transport", "oci:" + lay, "", "oci:" + lay},
		{"relative oci: transport", "oci:layout", "", "oci:" + lay},
		{"docker save tarball", archive, "", "docker-archive:" + archive},
		{"docker-archive: transport", "docker-archive:" + archive, "", "docker-archive:" + archive},
		{"store name", "docker-archive:" + archive, "", ""},
		{"ID prefix", want[:12], "", ""},
		{"missing path", "./nope", "no such file or directory", ""},
		{"not an image", "/etc", "oci layout /etc", ""},
		{"bad reference", "Not/A:Ref:", "not in the store, and not a registry reference", ""},
		{"unreachable registry", "127.0.0.1:1/x:y", "not in the store, and pulling it failed: pull 127.0.0.1:1/x:y: registry unreachable", ""},
		{"unreachable registry, explicit", "docker://127.0.0.1:1/x:y", "registry unreachable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findImage(ctx, s, tt.ref, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || ExitCode(err) != ExitArrowFailed {
					t.Fatalf("findImage(%s) = %v, exit %d; want error %q", tt.ref, err, ExitCode(err), tt.err)
				}
				return
			}
			if err != nil || got.ID != want {
				t.Fatalf("findImage(%s) = %s, %v; want %s", tt.ref, got.ID, err, want)
			}
			if tt.named != "" {
				if byName, err := s.Get(ctx, tt.named); err != nil || byName.ID != want {
					t.Errorf("not stored as %s: %v", tt.named, err)
				}
			}
		})
	}
	imgs, err := s.List(ctx)
	if err != nil || len(imgs) != 1 {
		t.Errorf("the store holds %d images, want 1 (%v)", len(imgs), err)
	}

	// The image's user database, read from the store.
	rec, _ := s.Get(ctx, want)
	db, err := storeUserDB(ctx, s, rec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := userCredentials(&Options{}, rec.Config.User, "image x", db)
	if err != nil || c.uid != 1000 || c.gid != 1000 || len(c.groups) != 1 || c.groups[0] != 10 || c.home != "/home/app" {
		t.Errorf("image user: %+v %v", c, err)
	}
	if _, err := userCredentials(&Options{Config: api.Config{User: "nobody"}}, rec.Config.User, "image x", db); err == nil ||
		ExitCode(err) != ExitArrowFailed || !strings.Contains(err.Error(), `--user "nobody": unknown user: no user "nobody"`) {
		t.Errorf("unknown --user: %v", err)
	}
}

func TestIsImageSource(t *testing.T) {
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	if err := os.MkdirAll(lay, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(lay, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		arg  string
		want bool
	}{
		{"oci:whatever", true},
		{"oci-archive:x.tar", true},
		{"docker-archive:x.tar", true},
		{"docker://busybox", true},
		{lay, true},
		{dir, false},
		{write("app.tar", tarBuf.Bytes(), 0o644), true},
		{write("app.tgz", []byte{0x1f, 0x8b, 8, 0}, 0o644), true},
		{write("exec.tar", tarBuf.Bytes(), 0o755), false},
		{write("script", []byte("#!/bin/sh\n"), 0o644), false},
		{"/bin/sh", false},
		{"busybox", false},
		{"/nonexistent", false},
	}
	for _, tt := range tests {
		if got := IsImageSource(tt.arg); got != tt.want {
			t.Errorf("IsImageSource(%s) = %v, want %v", tt.arg, got, tt.want)
		}
	}
}

func TestPruneRootDisks(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if st, err := PruneRootDisks(ctx, root, RootDiskMaxAge); err != nil || st.Images != 0 {
		t.Fatalf("no cache yet: %+v %v", st, err)
	}
	lay := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(testImage(t)); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ImagesDir(root))
	if err != nil {
		t.Fatal(err)
	}
	img, err := findImage(ctx, s, lay, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirDisksDir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	disk := func(dir, key string, age time.Duration) string {
		p := filepath.Join(dir, rootfs.ImageName(key))
		if err := os.WriteFile(p, []byte("disk"), 0o644); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		os.Chtimes(p, when, when)
		return p
	}
	mine := disk(RootDisksDir(root), img.Tree.Encoded(), time.Hour)
	orphan := disk(RootDisksDir(root), "gone", time.Hour)
	newDir := disk(dirDisksDir(root), "tree-new", time.Hour)
	oldDir := disk(dirDisksDir(root), "tree-old", 2*RootDiskMaxAge)

	st, err := PruneRootDisks(ctx, root, RootDiskMaxAge)
	if err != nil || st.Images != 2 {
		t.Errorf("prune: %+v %v", st, err)
	}
	for p, want := range map[string]bool{mine: true, orphan: false, newDir: true, oldDir: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
	// Once the image is removed, its disk goes too.
	if _, err := s.Remove(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := PruneRootDisks(ctx, root, RootDiskMaxAge); err != nil || st.Images != 1 {
		t.Errorf("after rm: %+v %v", st, err)
	}
	if _, err := os.Stat(mine); err == nil {
		t.Error("the removed image's disk is still there")
	}
}
