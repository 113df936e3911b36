package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/internal/modetest"
)

// TestBuildPrivate: the cache directory and the disks in it are the
// owner's only, whatever the umask, and a disk an older Arrow left
// world-readable is tightened when it is used.
func TestBuildPrivate(t *testing.T) {
	needMkfs(t)
	modetest.PermissiveUmask(t)
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
		modetest.AssertPerm(t, cache, 0o700)
		modetest.AssertPerm(t, img, 0o600)

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
