package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/internal/modetest"
)

// TestBuildPrivate: the archive cache, its archives and its memos are the
// owner's only, whatever the umask; an archive an older Arrow left
// world-readable is tightened when it is used.
func TestBuildPrivate(t *testing.T) {
	modetest.PermissiveUmask(t)
	src, cache := t.TempDir(), filepath.Join(t.TempDir(), "initramfs")
	set, _ := testSet(t, src)
	b := &Builder{Dir: cache}
	ctx := context.Background()
	path, err := b.Build(ctx, set, initEntry(t, src))
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("cache directory: %v %v", fi.Mode(), err)
		}
		ents, err := os.ReadDir(cache)
		if err != nil || len(ents) < 2 { // the archive and arrow-init's memo
			t.Fatalf("cache holds %d entries, %v", len(ents), err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
			}
		}
	}
	check()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := b.Build(ctx, set, initEntry(t, src)); err != nil || again != path {
		t.Fatalf("rebuild: %s, %v", again, err)
	}
	check()
}
