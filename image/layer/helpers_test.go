package layer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// snapshot describes every file below dir except skip (a path below dir),
// to tell whether anything changed.
func snapshot(t testing.TB, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return fs.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sandbox makes a parent directory holding bait files and an empty dst
// below it.
func sandbox(t testing.TB) (parent, dst string) {
	t.Helper()
	return sandboxIn(t, t.TempDir())
}

// sandboxIn is sandbox in parent, created if needed.
func sandboxIn(t testing.TB, parent string) (string, string) {
	t.Helper()
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(parent, "root")
	for _, d := range []string{dst, filepath.Join(parent, "etc"), filepath.Join(parent, "x")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "victim", "x/y"} {
		if err := os.WriteFile(filepath.Join(parent, f), []byte("bait"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return parent, dst
}
