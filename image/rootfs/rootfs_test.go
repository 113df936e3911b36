package rootfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/image/cachefile"
	"golang.org/x/sys/unix"
)

func needMkfs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs not installed (erofs-utils)")
	}
}

// testTree writes a small tree with every kind of entry Build must keep.
func testTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "tmp"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "tmp"), 0o1777)) // os.Chmod ignores raw sticky and setuid bits
	must(os.WriteFile(filepath.Join(dir, "bin", "tool"), []byte("#!/bin/sh\necho tool\n"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "bin", "tool"), 0o4755))
	must(os.WriteFile(filepath.Join(dir, "etc", "os-release"), []byte("ID=test\n"), 0o644))
	must(os.Symlink("../etc/os-release", filepath.Join(dir, "bin", "link")))
	must(os.Link(filepath.Join(dir, "etc", "os-release"), filepath.Join(dir, "etc", "hard")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "etc", "os-release"), mtime, mtime))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(dir, "etc", "os-release"), 1234, 5678))
		must(unix.Lsetxattr(filepath.Join(dir, "bin", "tool"), "trusted.arrow", []byte("x"), 0))
	}
	must(unix.Lsetxattr(filepath.Join(dir, "etc", "os-release"), "user.arrow", []byte("yes"), 0))
	return dir
}

func TestBuildCaches(t *testing.T) {
	needMkfs(t)
	ctx := context.Background()
	src := testTree(t)
	cache := filepath.Join(t.TempDir(), "rootfs")
	img, err := Build(ctx, src, cache, "sha256:abc")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(img) != cache || filepath.Base(img) != ImageName("sha256:abc") || !strings.HasSuffix(img, ".erofs") {
		t.Errorf("image at %s", img)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("image mode %v, size %d", fi.Mode(), fi.Size())
	}
	ents, _ := os.ReadDir(cache)
	if len(ents) != 1 {
		t.Errorf("cache holds %d files, want the image alone", len(ents))
	}
	// A cached key is not rebuilt: the source is not even read.
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	again, err := Build(ctx, empty, cache, "sha256:abc")
	if err != nil || again != img {
		t.Fatalf("second Build = %s, %v; want %s", again, err, img)
	}
	if fi2, _ := os.Stat(img); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("the cached image was rewritten")
	}
	other, err := Build(ctx, empty, cache, "sha256:def")
	if err != nil || other == img {
		t.Fatalf("other key: %s, %v", other, err)
	}
}

func TestTreeKey(t *testing.T) {
	ctx := context.Background()
	src := testTree(t)
	k1, err := TreeKey(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := TreeKey(ctx, src); k2 != k1 {
		t.Fatal("key not stable")
	}
	changes := []struct {
		name   string
		change func(dir string) error
	}{
		{"content", func(d string) error { return os.WriteFile(filepath.Join(d, "bin", "tool"), []byte("other"), 0o755) }},
		{"mode", func(d string) error { return os.Chmod(filepath.Join(d, "etc", "os-release"), 0o600) }},
		{"new file", func(d string) error { return os.WriteFile(filepath.Join(d, "new"), nil, 0o644) }},
		{"removed file", func(d string) error { return os.Remove(filepath.Join(d, "etc", "hard")) }},
		{"symlink target", func(d string) error {
			l := filepath.Join(d, "bin", "link")
			if err := os.Remove(l); err != nil {
				return err
			}
			return os.Symlink("elsewhere", l)
		}},
		{"xattr", func(d string) error { return unix.Lsetxattr(filepath.Join(d, "etc"), "user.more", []byte("1"), 0) }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			before, err := TreeKey(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.change(src); err != nil {
				t.Fatal(err)
			}
			after, err := TreeKey(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			if after == before {
				t.Error("key unchanged")
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	big := t.TempDir()
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(big, strings.Repeat("f", 1+i%50)+string(rune('a'+i%26))+strings.Repeat("x", i/26)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := TreeKey(cctx, big); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled TreeKey: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	file := filepath.Join(src, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noTools := t.TempDir() // a PATH without mkfs.erofs
	tests := []struct {
		name            string
		src, cache, key string
		path            string // PATH, when set
		want            string
		wantIs          error
	}{
		{name: "no source", src: "", cache: t.TempDir(), key: "k", want: "no source"},
		{name: "missing source", src: filepath.Join(src, "missing"), cache: t.TempDir(), key: "k", want: "no such file"},
		{name: "source is a file", src: file, cache: t.TempDir(), key: "k", want: "not a directory"},
		{name: "no cache", src: src, cache: "", key: "k", want: "no cache directory"},
		{name: "NUL in key", src: src, cache: t.TempDir(), key: "a\x00b", want: "cache key"},
		{name: "huge key", src: src, cache: t.TempDir(), key: strings.Repeat("k", maxKeyLen+1), want: "cache key"},
		{name: "no mkfs.erofs", src: src, cache: t.TempDir(), key: "k", path: noTools, want: "apt-get install erofs-utils", wantIs: ErrNoMkfs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			_, err := Build(ctx, tt.src, tt.cache, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, want error with %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("%v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * staleAge)
	names := map[string]bool{ // name: whether it must survive
		cachefile.TempPrefix + "dead.erofs":   false,
		cachefile.TempPrefix + "locked.erofs": true,
		cachefile.TempPrefix + "young.erofs":  true,
		"image.erofs":                         true,
	}
	for name := range names {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if name != cachefile.TempPrefix+"young.erofs" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	f, err := os.Open(filepath.Join(dir, cachefile.TempPrefix+"locked.erofs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cachefile.RemoveStale(dir, staleAge, time.Now())
	for name, keep := range names {
		_, err := os.Stat(filepath.Join(dir, name))
		if (err == nil) != keep {
			t.Errorf("%s: kept %v, want %v", name, err == nil, keep)
		}
	}
}

// TestBuildPreserves mounts a built image and compares it with its tree.
func TestBuildPreserves(t *testing.T) {
	needMkfs(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting an image needs root")
	}
	src := testTree(t)
	img, err := Build(context.Background(), src, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "erofs", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount erofs here: %v: %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	for p, mode := range map[string]uint32{"tmp": unix.S_IFDIR | 0o1777, "bin/tool": unix.S_IFREG | 0o4755} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(mnt, p), &st); err != nil || st.Mode != mode {
			t.Errorf("%s: mode %o, %v; want %o", p, st.Mode, err, mode)
		}
	}
	paths := []string{"bin", "bin/tool", "bin/link", "etc", "etc/os-release", "etc/hard", "tmp", "fifo"}
	for _, p := range paths {
		var want, got unix.Stat_t
		if err := unix.Lstat(filepath.Join(src, p), &want); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(mnt, p), &got); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if want.Mode&unix.S_IFMT == unix.S_IFDIR {
			got.Size, want.Size = 0, 0 // directory sizes are each file system's own
		}
		if got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid || got.Size != want.Size {
			t.Errorf("%s: mode %o uid %d gid %d size %d, want %o %d %d %d", p, got.Mode, got.Uid, got.Gid, got.Size, want.Mode, want.Uid, want.Gid, want.Size)
		}
		if want.Mode&unix.S_IFMT == unix.S_IFREG && got.Mtim != want.Mtim {
			t.Errorf("%s: mtime %v, want %v", p, got.Mtim, want.Mtim)
		}
	}
	if target, err := os.Readlink(filepath.Join(mnt, "bin", "link")); err != nil || target != "../etc/os-release" {
		t.Errorf("symlink: %q, %v", target, err)
	}
	var a, b unix.Stat_t
	_ = unix.Lstat(filepath.Join(mnt, "etc", "os-release"), &a)
	_ = unix.Lstat(filepath.Join(mnt, "etc", "hard"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d and %d, %d links", a.Ino, b.Ino, a.Nlink)
	}
	for _, x := range []struct{ path, name, value string }{
		{"etc/os-release", "user.arrow", "yes"},
		{"bin/tool", "trusted.arrow", "x"},
	} {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(mnt, x.path), x.name, buf)
		if err != nil || string(buf[:n]) != x.value {
			t.Errorf("%s %s: %q, %v", x.path, x.name, buf[:max(n, 0)], err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "bin", "tool")); err != nil || string(b) != "#!/bin/sh\necho tool\n" {
		t.Errorf("content: %q, %v", b, err)
	}
}

func TestHoldOrBuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), ImageName("k"))
	for _, tc := range []struct {
		name   string
		build  func(calls int) error // called with the calls before it
		calls  int
		wantOK bool
		want   error
	}{
		{"built once", func(int) error { return os.WriteFile(path, []byte("img"), 0o644) }, 1, true, nil},
		{"pruned after its first build", func(n int) error {
			if n == 0 {
				return nil // as if pruned right after
			}
			return os.WriteFile(path, []byte("img"), 0o644)
		}, 2, true, nil},
		{"never there", func(int) error { return nil }, 2, false, os.ErrNotExist},
		{"build fails", func(int) error { return errors.New("mkfs failed") }, 1, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(path)
			calls := 0
			d, err := HoldOrBuild(path, func() error {
				err := tc.build(calls)
				calls++
				return err
			})
			if calls != tc.calls || (err == nil) != tc.wantOK || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("%d builds, err %v; want %d builds, ok %v", calls, err, tc.calls, tc.wantOK)
			}
			if d != nil {
				d.Close()
			}
		})
	}
	// Present already: no build.
	if err := os.WriteFile(path, []byte("img"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := HoldOrBuild(path, func() error { t.Fatal("built an image that was there"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}
