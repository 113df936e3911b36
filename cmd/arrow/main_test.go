package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/internal/modetest"
)

// TestDataRootPrivate: whatever command runs first makes the data root
// 0700, whatever the umask; a root of this user's with a looser mode is
// tightened; one owned by someone else, or not a directory, is refused
// before anything is written into it.
func TestDataRootPrivate(t *testing.T) {
	modetest.PermissiveUmask(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		root    string
		wantErr string // "" means the root ends 0700
	}{
		{"created", filepath.Join(base, "parent", "new"), ""},
		{"world-readable", mkdir("open", 0o755), ""},
		{"world-writable", mkdir("wide", 0o777), ""},
		{"too strict for its owner", mkdir("strict", 0o500), ""},
		{"already private", mkdir("private", 0o700), ""},
		{"not a directory", file, "not a directory"},
	}
	if os.Geteuid() == 0 {
		theirs := mkdir("theirs", 0o755)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name    string
			root    string
			wantErr string
		}{"owned by another user", theirs, "owned by uid 65534"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through the CLI: `arrow kernel ls` only reads, yet prepares
			// the root like every command that uses it.
			code := execute(context.Background(), []string{"--root", tt.root, "kernel", "ls"})
			err := privateRoot(tt.root)
			fi, statErr := os.Stat(tt.root)
			if statErr != nil {
				t.Fatal(statErr)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("privateRoot: %v, want an error saying %q", err, tt.wantErr)
				}
				if code == 0 {
					t.Error("the command ran on a refused data root")
				}
				if fi.IsDir() && fi.Mode().Perm() != 0o755 {
					t.Errorf("a refused root was changed to %v", fi.Mode().Perm())
				}
				return
			}
			if err != nil || code != 0 {
				t.Fatalf("privateRoot: %v, exit status %d", err, code)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("mode %v, want 0700", fi.Mode().Perm())
			}
		})
	}
	if fi, err := os.Stat(filepath.Join(base, "parent")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("a parent the root needed: %v %v, want 0755 (less the umask)", fi.Mode(), err)
	}
}

// TestDataRootNotForVersion: commands that do not use the data root leave
// it alone.
func TestDataRootNotForVersion(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if code := execute(context.Background(), []string{"--root", root, "version"}); code != 0 {
		t.Fatalf("version: exit status %d", code)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("version created the data root: %v", err)
	}
}
