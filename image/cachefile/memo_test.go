package cachefile

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMemoFileSum(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := func(content string) string {
		s := sha256.Sum256([]byte(content))
		return hex.EncodeToString(s[:])
	}
	m := Memo{Dir: filepath.Join(dir, "memo"), Prefix: ".sum-"}
	for _, tc := range []struct {
		name string
		memo Memo
	}{{"memoized", m}, {"zero memo", Memo{}}} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.memo.FileSum(file); err != nil || got != want("one") {
				t.Fatalf("FileSum = %q, %v", got, err)
			}
		})
	}
	ents, _ := os.ReadDir(m.Dir)
	if len(ents) != 1 || ents[0].Name()[:5] != ".sum-" {
		t.Fatalf("memo files: %v", ents)
	}
	// A memoized value stands while the identity does: proven by
	// planting a wrong one.
	planted := want("planted")
	if err := os.WriteFile(filepath.Join(m.Dir, ents[0].Name()), []byte(planted), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.FileSum(file); got != planted {
		t.Fatalf("FileSum = %q, want the memoized %q", got, planted)
	}
	// A changed file is a new identity: hashed again.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(file, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.FileSum(file); got != want("two") {
		t.Fatalf("after a change: FileSum = %q", got)
	}
	// A damaged memo is not believed.
	for _, e := range mustReadDir(t, m.Dir) {
		if err := os.WriteFile(filepath.Join(m.Dir, e.Name()), []byte("short"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := m.FileSum(file); got != want("two") {
		t.Fatalf("with a damaged memo: FileSum = %q", got)
	}
	if _, err := m.FileSum(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("FileSum of a missing file succeeded")
	}
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}
