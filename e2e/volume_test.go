package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/vm"
)

// needRoot skips tests that need virtiofsd, which needs root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("virtiofs shares need root")
	}
}

// readFile returns p's content, or "<missing>".
func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// worldWritable lets a QEMU jailed as nobody into dir (9p shares).
func worldWritable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		mode := os.FileMode(0o755)
		if d == dir {
			mode = 0o777
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVolumes shares host directories with guests running on an erofs
// root, over virtiofs and 9p, read-write and read-only.
func TestVolumes(t *testing.T) {
	env := newGuestEnv(t)
	img := testImage(t)
	drives := []vm.Drive{{Path: img, Serial: rootSerial, ReadOnly: true}}
	root := &guest.Root{Device: rootSerial, FSType: rootfs.FSType}
	tests := []struct {
		name     string
		fs       string
		readOnly bool
		target   string
		root     *guest.Root
		uid      uint32
		script   string
		wantOut  string
		wantErr  string                         // substring of stderr
		check    func(t *testing.T, dir string) // the host directory afterwards
		initFail string                         // substring of an expected init failure
	}{
		{name: "virtiofs round trip", fs: vm.ShareVirtiofs, target: "/data", root: root, uid: 1000,
			script:  "cat /data/from-host; echo from guest > /data/out; mkdir /data/sub; sync; echo synced",
			wantOut: "host says hi\nsynced\n",
			check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "out")); got != "from guest\n" {
					t.Errorf("host sees %q", got)
				}
				// virtiofsd creates files as the guest's user.
				for _, name := range []string{"out", "sub"} {
					fi, err := os.Stat(filepath.Join(dir, name))
					if err != nil {
						t.Fatal(err)
					}
					if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
						t.Errorf("%s owned by %d:%d on the host, want 1000:1000", name, st.Uid, st.Gid)
					}
				}
			}},
		{name: "virtiofs target created in the overlay", fs: vm.ShareVirtiofs, target: "/srv/deep/vol", root: root,
			script: "echo deep > /srv/deep/vol/out", check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "out")); got != "deep\n" {
					t.Errorf("host sees %q", got)
				}
			}},
		{name: "virtiofs read-only, even remounted read-write by root", fs: vm.ShareVirtiofs, readOnly: true, target: "/data", root: root,
			script: "echo bad > /data/from-host; echo bad > /data/new; mount -o remount,rw /data && echo remounted; " +
				"echo bad > /data/from-host; echo bad > /data/new; touch /data/from-host; cat /data/from-host",
			wantOut: "remounted\nhost says hi\n", wantErr: "Read-only file system",
			check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "from-host")); got != "host says hi\n" {
					t.Errorf("host file now %q", got)
				}
				if got := readFile(t, filepath.Join(dir, "new")); got != "<missing>" {
					t.Errorf("guest created a file: %q", got)
				}
			}},
		{name: "9p round trip", fs: vm.Share9P, target: "/data", root: root,
			script: "cat /data/from-host; echo over 9p > /data/out; sync", wantOut: "host says hi\n",
			check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "out")); got != "over 9p\n" {
					t.Errorf("host sees %q", got)
				}
			}},
		{name: "9p read-only, even remounted read-write by root", fs: vm.Share9P, readOnly: true, target: "/data", root: root,
			script:  "mount -o remount,rw /data; echo bad > /data/from-host; echo bad > /data/new; cat /data/from-host",
			wantOut: "host says hi\n", wantErr: "Read-only file system",
			check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "from-host")); got != "host says hi\n" {
					t.Errorf("host file now %q", got)
				}
				if got := readFile(t, filepath.Join(dir, "new")); got != "<missing>" {
					t.Errorf("guest created a file: %q", got)
				}
			}},
		{name: "missing mount point on a read-only root", fs: vm.Share9P, target: "/missing",
			root:     &guest.Root{Device: rootSerial, FSType: rootfs.FSType, ReadOnly: true},
			script:   "true",
			initFail: "volume vol on /missing: mount point /missing is missing and the root file system is read-only"},
		{name: "mount point on a read-only root", fs: vm.ShareVirtiofs, target: "/data",
			root:   &guest.Root{Device: rootSerial, FSType: rootfs.FSType, ReadOnly: true},
			script: "echo rw > /data/out", check: func(t *testing.T, dir string) {
				if got := readFile(t, filepath.Join(dir, "out")); got != "rw\n" {
					t.Errorf("host sees %q", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fs == vm.ShareVirtiofs {
				needRoot(t)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "from-host"), []byte("host says hi\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.fs == vm.Share9P {
				worldWritable(t, dir)
			} else if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			spec := guest.Spec{
				Args:   []string{"sh", "-c", tt.script},
				UID:    tt.uid,
				GID:    tt.uid,
				Root:   tt.root,
				Mounts: []guest.Mount{{Tag: "vol", Target: tt.target, FSType: tt.fs, ReadOnly: tt.readOnly}},
			}
			shares := []vm.Share{{Tag: "vol", Path: dir, ReadOnly: tt.readOnly, FS: tt.fs}}
			e := env
			if tt.fs == vm.Share9P {
				// 9p is what a caller who is not root gets, and such a
				// caller runs unjailed (--no-jail): QEMU serves the
				// share itself and sees no host directory in a jail.
				e.jail = nil
			}
			r := e.boot(t, drives, shares, spec, nil)
			if !r.gotStatus {
				t.Fatalf("no exit status; wait: %v\nconsole:\n%s", r.waitErr, r.console)
			}
			if tt.initFail != "" {
				if r.status.Reason != guest.InitFailed || !strings.Contains(r.status.Message, tt.initFail) {
					t.Fatalf("status %+v, want an init failure with %q", r.status, tt.initFail)
				}
				return
			}
			if r.status.Reason != guest.Exited {
				t.Fatalf("status %+v; stderr %q", r.status, r.stderr)
			}
			if r.stdout != tt.wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, tt.wantOut)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q, want %q in it", r.stderr, tt.wantErr)
			}
			if r.waitErr != nil {
				t.Errorf("QEMU: %v", r.waitErr)
			}
			if tt.check != nil {
				tt.check(t, dir)
			}
		})
	}
}

// TestVolumeSurvivesKill kills the VM the moment the guest says its data
// is synced: the data must be on the host.
func TestVolumeSurvivesKill(t *testing.T) {
	needRoot(t)
	env := newGuestEnv(t)
	img := testImage(t)
	dir := t.TempDir()
	spec := guest.Spec{
		Args:   []string{"sh", "-c", "echo persisted > /data/f && sync && echo synced && sleep 600"},
		Root:   &guest.Root{Device: rootSerial, FSType: rootfs.FSType},
		Mounts: []guest.Mount{{Tag: "vol", Target: "/data", FSType: vm.ShareVirtiofs}},
	}
	killed := false
	r := env.boot(t, []vm.Drive{{Path: img, Serial: rootSerial, ReadOnly: true}},
		[]vm.Share{{Tag: "vol", Path: dir, FS: vm.ShareVirtiofs}}, spec,
		func(m *vm.Machine, out string) {
			if !killed && strings.Contains(out, "synced") {
				killed = true
				_ = m.Kill()
			}
		})
	if !killed || r.gotStatus {
		t.Fatalf("killed %v, status %+v; stdout %q stderr %q", killed, r.status, r.stdout, r.stderr)
	}
	if got := readFile(t, filepath.Join(dir, "f")); got != "persisted\n" {
		t.Fatalf("host sees %q after the kill", got)
	}
}

// TestVirtiofsdFailure checks that a virtiofsd that fails, at start or
// under a running guest, ends the VM with an explanation instead of a
// guest hanging on its file system.
func TestVirtiofsdFailure(t *testing.T) {
	needRoot(t)
	env := newGuestEnv(t)
	img := testImage(t)
	drives := []vm.Drive{{Path: img, Serial: rootSerial, ReadOnly: true}}
	spec := guest.Spec{
		Args:   []string{"sh", "-c", "echo ready; sleep 1; ls /data; echo listed"},
		Root:   &guest.Root{Device: rootSerial, FSType: rootfs.FSType},
		Mounts: []guest.Mount{{Tag: "vol", Target: "/data", FSType: vm.ShareVirtiofs}},
	}
	shares := []vm.Share{{Tag: "vol", Path: t.TempDir(), FS: vm.ShareVirtiofs}}

	t.Run("at start", func(t *testing.T) {
		fake := filepath.Join(t.TempDir(), "virtiofsd")
		if err := os.WriteFile(fake, []byte("#!/bin/sh\necho fake virtiofsd gives up >&2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		e := env
		e.virtiofsd = fake
		r := e.boot(t, drives, shares, spec, nil)
		if r.gotStatus || r.waitErr == nil || !strings.Contains(r.waitErr.Error(), "fake virtiofsd gives up") {
			t.Fatalf("status %+v (%v), wait error %v", r.status, r.gotStatus, r.waitErr)
		}
	})
	t.Run("under a running guest", func(t *testing.T) {
		before := processesNamed(t, "virtiofsd")
		killed := false
		t0 := time.Now()
		r := env.boot(t, drives, shares, spec, func(m *vm.Machine, out string) {
			if killed || !strings.Contains(out, "ready") {
				return
			}
			killed = true
			for pid := range processesNamed(t, "virtiofsd") {
				if !before[pid] {
					n, _ := strconv.Atoi(pid)
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		})
		if !killed || r.gotStatus || strings.Contains(r.stdout, "listed") {
			t.Fatalf("killed %v, status %+v, stdout %q", killed, r.status, r.stdout)
		}
		if r.waitErr == nil || !strings.Contains(r.waitErr.Error(), "virtiofsd for share vol") {
			t.Fatalf("wait error %v", r.waitErr)
		}
		t.Logf("noticed after %v: %v", time.Since(t0), r.waitErr)
		if d := time.Since(t0); d > 30*time.Second {
			t.Errorf("took %v to notice", d)
		}
	})
}
