package cachefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// permissiveUmask clears the umask for the test: modes must come from the
// code, not from a umask that happens to take the group and other bits.
func permissiveUmask(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestPrivateModes(t *testing.T) {
	permissiveUmask(t)
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
		assertMode(t, dir, DirMode)
	}
	assertMode(t, filepath.Join(base, "new"), DirMode)

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
	assertMode(t, m.Dir, DirMode)
	assertMode(t, m.path("key"), FileMode)

	if err := WriteFile(filepath.Join(fresh, "f"), []byte("x"), FileMode); err != nil {
		t.Fatal(err)
	}
	assertMode(t, filepath.Join(fresh, "f"), FileMode)

	if !PruneDue(fresh, time.Hour) {
		t.Fatal("not due")
	}
	assertMode(t, filepath.Join(fresh, pruneStamp), FileMode)
}
