package modetest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestPermissiveUmask(t *testing.T) {
	t.Run("cleared", func(t *testing.T) {
		PermissiveUmask(t)
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		AssertPerm(t, p, 0o666)
	})
	// Restored after the subtest: a new file loses the umask's bits again.
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := filepath.Join(t.TempDir(), "g")
	if err := os.WriteFile(p, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	AssertPerm(t, p, 0o644)
}

// TestAssertPermFails checks the check: a wrong mode fails the test.
func TestAssertPermFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	ft := &testing.T{}
	done := make(chan struct{})
	go func() { defer close(done); AssertPerm(ft, p, 0o644) }()
	<-done
	if !ft.Failed() {
		t.Error("AssertPerm passed a 0600 file as 0644")
	}
}
