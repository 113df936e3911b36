package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMemoSourceVersion(t *testing.T) {
	root := t.TempDir()
	status := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(status, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := 0
	version := "6.1.1-1"
	lookup := func(context.Context) (string, error) { calls++; return version, nil }

	// No kernels directory: asks every time, writes nothing.
	for i := 0; i < 2; i++ {
		if v, err := memoSourceVersion(root, status, lookup); err != nil || v != "6.1.1-1" {
			t.Fatalf("got %q, %v", v, err)
		}
	}
	if calls != 2 {
		t.Fatalf("%d lookups, want 2", calls)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("wrote into a root without kernels: %v", ents)
	}

	if err := os.MkdirAll(KernelsDir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	calls = 0
	for i := 0; i < 3; i++ {
		if v, _ := memoSourceVersion(root, status, lookup); v != "6.1.1-1" {
			t.Fatalf("got %q", v)
		}
	}
	if calls != 1 {
		t.Fatalf("%d lookups with an unchanged dpkg database, want 1", calls)
	}

	// dpkg's database changes (an upgrade): asked again, new version.
	version = "6.1.2-1"
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(status, []byte("ab"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(status, later, later); err != nil {
		t.Fatal(err)
	}
	if v, _ := memoSourceVersion(root, status, lookup); v != "6.1.2-1" || calls != 2 {
		t.Fatalf("after an upgrade: %q after %d lookups", v, calls)
	}

	// A failing lookup is not memoized.
	fail := func(context.Context) (string, error) { return "", errors.New("not installed") }
	if err := os.WriteFile(status, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := memoSourceVersion(root, status, fail); err == nil {
		t.Fatal("error lost")
	}
}
