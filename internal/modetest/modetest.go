// Package modetest helps tests of the modes Arrow gives its files: a
// permissive umask, so that modes must come from the code rather than
// from a umask that happens to take the group and other bits, and a check
// of a path's permission bits.
package modetest

import (
	"os"
	"syscall"
	"testing"
)

// PermissiveUmask clears the process's umask for the rest of t, and
// restores it after. (The umask is the process's: tests that call it must
// not run in parallel with tests that create files.)
func PermissiveUmask(t testing.TB) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

// AssertPerm fails t unless path's permission bits are want.
func AssertPerm(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
