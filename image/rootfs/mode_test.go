package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestBuildPrivate: the cache directory and the disks in it are the
// owner's only, whatever the umask, and a disk an older Arrow left
// world-readable is tightened when it is used.
func TestBuildPrivate(t *testing.T) {
	needMkfs(t)
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	src := testTree(t)
	root := t.TempDir()
	for _, cache := range []string{
		filepath.Join(root, "rootfs"),
		filepath.Join(root, "rootfs", "closures"),
		filepath.Join(root, "rootfs", "dirs"),
	} {
		img, err := Build(ctx, src, cache, "sha256:"+filepath.Base(cache))
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{cache: 0o700, img: 0o600} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
			}
		}

		if err := os.Chmod(img, 0o644); err != nil {
			t.Fatal(err)
		}
		again, err := Build(ctx, src, cache, "sha256:"+filepath.Base(cache))
		if err != nil || again != img {
			t.Fatalf("rebuild: %s, %v", again, err)
		}
		if fi, err := os.Stat(img); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("a cached world-readable disk was not tightened: %v %v", fi.Mode(), err)
		}
	}
}
