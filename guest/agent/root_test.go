//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

func TestMountOrder(t *testing.T) {
	tests := []struct {
		targets []string
		want    []string
	}{
		{[]string{"/a/b/c", "/a", "/a/b"}, []string{"/a", "/a/b", "/a/b/c"}},
		{[]string{"/data/x", "/data-2", "/data"}, []string{"/data-2", "/data", "/data/x"}},
		{[]string{"/z", "/y"}, []string{"/z", "/y"}}, // siblings keep their order
		{nil, nil},
	}
	for _, tt := range tests {
		var ms []guest.Mount
		for _, target := range tt.targets {
			ms = append(ms, guest.Mount{Target: target})
		}
		var got []string
		for _, m := range mountOrder(ms) {
			got = append(got, m.Target)
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("mountOrder(%q) = %q, want %q", tt.targets, got, tt.want)
		}
	}
}

func TestEnsureDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		readOnly bool
		want     string // error substring; "" for success
	}{
		{"existing directory", dir, false, ""},
		{"existing directory, read-only root", dir, true, ""},
		{"created", filepath.Join(dir, "proc"), false, ""},
		{"missing on a read-only root", filepath.Join(dir, "sys"), true, "root file system is read-only"},
		{"a file", file, false, "is a file, not a directory"},
		{"a symbolic link", link, false, "is a symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ensureDir(tt.path, 0o555, tt.readOnly)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(tt.path)
				if err != nil || !fi.IsDir() {
					t.Fatalf("%s: %v, %v", tt.path, fi, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ensureDir = %v, want %q", err, tt.want)
			}
		})
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "proc"), &st); err != nil || st.Mode&0o7777 != 0o555 {
		t.Errorf("created with mode %o, %v; want 555", st.Mode&0o7777, err)
	}
}

func TestRemoveTree(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a/b/c", "d"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"init", "a/b/c/file", "d/file"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "a", "link")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// Another device's files (a mount point) would be left alone: with a
	// device number no file has, nothing goes.
	removeTree(dir, st.Dev+1)
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Fatalf("removed files of another device: %d left", len(ents))
	}
	removeTree(dir, st.Dev)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatalf("followed a symbolic link: %v", err)
	}
}

func TestFindDeviceTimesOut(t *testing.T) {
	t0 := time.Now()
	_, err := findDevice("/dev/arrow-no-such-disk", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `no block device "/dev/arrow-no-such-disk"`) {
		t.Fatalf("findDevice = %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	// A /dev path that is not a block device does not count.
	if dev, _ := lookupDevice("/dev/null"); dev != "" {
		t.Errorf("lookupDevice(/dev/null) = %q", dev)
	}
}
