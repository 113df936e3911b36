//go:build linux

package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prog, path, want string
		err              bool
	}{
		{"tool", "/nonexistent:" + dir, exe, false},
		{"data", dir, "", true}, // not executable: skipped like a shell does
		{"tool", "", "", true},
		{"/abs/anything", "", "/abs/anything", false}, // with a slash: as given
		{"./rel", dir, "./rel", false},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.prog, tt.path)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("lookPath(%q, %q) = %q, %v", tt.prog, tt.path, got, err)
		}
	}
}

func TestEnvValue(t *testing.T) {
	env := []string{"A=1", "PATH=/a", "B=", "PATH=/b"}
	if v := envValue(env, "PATH"); v != "/b" {
		t.Errorf("PATH = %q, want the last one", v)
	}
	if !hasEnv(env, "B") || hasEnv(env, "C") || hasEnv(env, "PAT") {
		t.Error("hasEnv")
	}
}

func TestStartFailure(t *testing.T) {
	tests := []struct {
		err  error
		want guest.ExitReason
	}{
		{fmt.Errorf("x: %w", exec.ErrNotFound), guest.NotFound},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: unix.ENOENT}, guest.NotFound},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: unix.EACCES}, guest.NotExecutable},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: unix.ENOEXEC}, guest.NotExecutable},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: unix.ENOMEM}, guest.InitFailed},
	}
	for _, tt := range tests {
		if got := startFailure("/x", tt.err); got.Reason != tt.want || got.Message == "" {
			t.Errorf("%v: %+v, want %s", tt.err, got, tt.want)
		}
	}
}
