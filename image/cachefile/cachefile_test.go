package cachefile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPublishAndStale(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "a.img")

	tmp, err := Create(dir, ".img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString("content"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(final); err == nil {
		t.Fatal("visible before it is published")
	}
	// A locked temporary file survives a stale sweep, however old.
	RemoveStale(dir, 0, time.Now().Add(time.Hour))
	if _, err := os.Stat(tmp.Name()); err != nil {
		t.Fatalf("a file being written was removed: %v", err)
	}
	if err := tmp.Publish(final, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(final); err != nil || string(b) != "content" {
		t.Fatalf("published %q, %v", b, err)
	}
	if fi, _ := os.Stat(final); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}

	// A killed writer's leftover: unlocked; removed once old enough.
	left := filepath.Join(dir, TempPrefix+"dead.img")
	if err := os.WriteFile(left, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	RemoveStale(dir, time.Minute, time.Now())
	if _, err := os.Stat(left); err != nil {
		t.Fatal("a fresh leftover was removed")
	}
	RemoveStale(dir, time.Minute, time.Now().Add(time.Hour))
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatal("an old leftover was kept")
	}
	if _, err := os.Stat(final); err != nil {
		t.Fatal("a published file was removed")
	}

	ab, err := Create(dir, ".img")
	if err != nil {
		t.Fatal(err)
	}
	ab.Abort()
	if _, err := os.Stat(ab.Name()); !os.IsNotExist(err) {
		t.Fatal("aborted file kept")
	}
}

func TestPruneDue(t *testing.T) {
	dir := t.TempDir()
	if !PruneDue(dir, time.Hour) {
		t.Fatal("a cache never pruned is not due")
	}
	if PruneDue(dir, time.Hour) {
		t.Fatal("due again right after")
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, pruneStamp), old, old); err != nil {
		t.Fatal(err)
	}
	if !PruneDue(dir, time.Hour) {
		t.Fatal("not due an hour after")
	}
	if PruneDue(dir, time.Hour) {
		t.Fatal("the stamp was not renewed")
	}
}
