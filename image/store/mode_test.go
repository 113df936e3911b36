package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/internal/modetest"
)

// TestOpenPrivate: the store's rule for modes is that its root is 0700,
// set with chmod on every Open whatever the umask, and its directories
// 0700 when it creates them; the files inside keep the modes of the
// image's files (materialized trees hard link them), reachable only
// through that root.
func TestOpenPrivate(t *testing.T) {
	modetest.PermissiveUmask(t)
	for _, existing := range []os.FileMode{0, 0o755, 0o777} {
		root := filepath.Join(t.TempDir(), "images")
		if existing != 0 {
			if err := os.Mkdir(root, existing); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Open(root); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"", "blobs", "blobs/sha256", "files", "files/sha256", "images", "tmp"} {
			fi, err := os.Stat(filepath.Join(root, d))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("root made %v: %s is %v, want 0700", existing, filepath.Join("images", d), fi.Mode().Perm())
			}
		}
	}
}
