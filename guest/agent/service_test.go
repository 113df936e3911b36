//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/arrowsys/arrow/guest"
)

// TestMakeServiceDirs: tmpfiles.d directories get their own owners (or
// keep theirs when unset) and modes ('-': 0755 when new, kept when the
// directory exists); the unit's Owned ones the service's user; '-'
// makes a failure no error, '=' replaces a file in the way.
func TestMakeServiceDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chown needs root, as arrow-init is")
	}
	base := t.TempDir()
	existing := filepath.Join(base, "existing")
	if err := os.Mkdir(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(existing, 5, 6); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "was-a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(base, "blocked")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	id := func(v uint32) *uint32 { return &v }
	dirs := []struct {
		dir            guest.ServiceDir
		mode, uid, gid uint32
	}{
		{guest.ServiceDir{Path: base + "/run/memcached", Mode: 0o755, UID: id(102), GID: id(110)}, 0o755, 102, 110},
		{guest.ServiceDir{Path: base + "/run/postgresql", Mode: 0o2775, UID: id(103), GID: id(104)}, 0o2775, 103, 104},
		{guest.ServiceDir{Path: base + "/log", Mode: 0o1775, GID: id(4)}, 0o1775, 0, 4},
		{guest.ServiceDir{Path: base + "/new-keep", KeepMode: true}, 0o755, 0, 0},
		{guest.ServiceDir{Path: existing, KeepMode: true, UID: id(7)}, 0o700, 7, 6},
		{guest.ServiceDir{Path: file, Mode: 0o700, Replace: true}, 0o700, 0, 0},
		{guest.ServiceDir{Path: base + "/run/redis", Mode: 0o2755, Owned: true}, 0o2755, 100, 101},
	}
	spec := &guest.Spec{Service: &guest.Service{}}
	spec.UID, spec.GID = 100, 101
	for _, d := range dirs {
		spec.Service.Dirs = append(spec.Service.Dirs, d.dir)
	}
	// A file in the way: ignored when optional ('-'), an error when not.
	spec.Service.Dirs = append(spec.Service.Dirs, guest.ServiceDir{Path: blocked + "/sub", Mode: 0o755, Optional: true})
	a := &agent{}
	if err := makeServiceDirs(a, spec); err != nil {
		t.Fatal(err)
	}
	spec.Service.Dirs = []guest.ServiceDir{{Path: blocked + "/sub", Mode: 0o755}}
	if err := makeServiceDirs(a, spec); err == nil {
		t.Error("a directory below a file: no error")
	}
	for _, d := range dirs {
		fi, err := os.Lstat(d.dir.Path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := uint32(st.Mode) & 0o7777; got != d.mode || st.Uid != d.uid || st.Gid != d.gid || !fi.IsDir() {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", d.dir.Path, got, st.Uid, st.Gid, d.mode, d.uid, d.gid)
		}
	}
}
