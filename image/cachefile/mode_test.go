package cachefile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/modetest"
)

func TestPrivateModes(t *testing.T) {
	modetest.PermissiveUmask(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	fresh := filepath.Join(base, "new", "cache")
	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{fresh, loose} {
		if err := PrivateDir(dir); err != nil {
			t.Fatal(err)
		}
		modetest.AssertPerm(t, dir, DirMode)
	}
	modetest.AssertPerm(t, filepath.Join(base, "new"), DirMode)

	notDir := filepath.Join(base, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(notDir); err == nil {
		t.Error("PrivateDir accepted a regular file")
	}

	// Everything the package writes itself is the owner's only.
	m := Memo{Dir: filepath.Join(base, "memo"), Prefix: ".v-"}
	m.Put("key", "value")
	if v, ok := m.Get("key"); !ok || v != "value" {
		t.Fatalf("memo: %q %v", v, ok)
	}
	modetest.AssertPerm(t, m.Dir, DirMode)
	modetest.AssertPerm(t, m.path("key"), FileMode)

	if err := WriteFile(filepath.Join(fresh, "f"), []byte("x"), FileMode); err != nil {
		t.Fatal(err)
	}
	modetest.AssertPerm(t, filepath.Join(fresh, "f"), FileMode)

	if !PruneDue(fresh, time.Hour) {
		t.Fatal("not due")
	}
	modetest.AssertPerm(t, filepath.Join(fresh, pruneStamp), FileMode)
}
