package vm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFuseOptEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/srv/data", "/srv/data"},
		{"/srv/a,b", `/srv/a\,b`},
		{`/srv/a\b`, `/srv/a\\b`},
		{`/a\,b`, `/a\\\,b`},
	}
	for _, tt := range tests {
		if got := fuseOptEscape(tt.in); got != tt.want {
			t.Errorf("fuseOptEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestVhostUserPair(t *testing.T) {
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "arrow-vhost-*"))
	l, c, err := vhostUserPair()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer c.Close()
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "arrow-vhost-*"))
	if len(after) != len(before) {
		t.Errorf("socket directory left behind: %v", after)
	}
	// The connection waits in the backlog for whoever holds the listener.
	nfd, _, err := unix.Accept(int(l.Fd()))
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer unix.Close(nfd)
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if n, err := unix.Read(nfd, buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// One connection only: the name is gone.
	lfd := int(l.Fd())
	if err := unix.SetNonblock(lfd, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := unix.Accept(lfd); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("second accept: %v, want EAGAIN", err)
	}
}

func TestReadOnlyView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces)")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// A mount below the share must be read-only too.
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	defer unix.Unmount(sub, unix.MNT_DETACH)
	type result struct{ top, below error }
	res := make(chan result, 1)
	go onPrivateThread(func() {
		if err := readOnlyView(dir); err != nil {
			res <- result{err, err}
			return
		}
		res <- result{
			os.WriteFile(filepath.Join(dir, "f"), nil, 0o644),
			os.WriteFile(filepath.Join(sub, "f"), nil, 0o644),
		}
	})
	r := <-res
	if !errors.Is(r.top, unix.EROFS) || !errors.Is(r.below, unix.EROFS) {
		t.Fatalf("writes in the read-only view: %v, %v; want EROFS", r.top, r.below)
	}
	// The rest of the host is not affected.
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatalf("host write: %v", err)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), nil, 0o644); err != nil {
		t.Fatalf("host write below: %v", err)
	}
	// Nor is the process's main thread, whose namespace /proc/self shows.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mounts), dir); n != 1 {
		t.Errorf("%d mounts of %s in the host's namespace, want 1 (the test's tmpfs)", n, dir)
	}
}

func TestResolveShares(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real,dir")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want, err string
	}{
		{real, real, ""},
		{link, real, ""},
		{file, "", "not a directory"},
		{filepath.Join(dir, "missing"), "", "no such file"},
	}
	for _, tt := range tests {
		got, err := resolveShares([]Share{{Tag: "t", Path: tt.path, FS: ShareVirtiofs}})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || got[0].Path != tt.want {
			t.Errorf("%s: %v, %v; want %s", tt.path, got, err, tt.want)
		}
	}
}

func TestOpenDrive(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		d        Drive
		wantMode int
		err      string
	}{
		{Drive{Path: img, ReadOnly: true}, unix.O_RDONLY, ""},
		{Drive{Path: img}, unix.O_RDWR, ""},
		{Drive{Path: dir, ReadOnly: true}, 0, "not a file"},
		{Drive{Path: filepath.Join(dir, "missing"), ReadOnly: true}, 0, "no such file"},
	}
	for _, tt := range tests {
		f, err := openDrive(tt.d)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: error %v, want %q", tt.d, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tt.d, err)
			continue
		}
		// QEMU's /dev/fdset lookup matches the access mode it opens with.
		fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		f.Close()
		if err != nil || fl&unix.O_ACCMODE != tt.wantMode {
			t.Errorf("%+v: flags %#o, %v; want access mode %#o", tt.d, fl, err, tt.wantMode)
		}
	}
}

func TestOnPrivateThread(t *testing.T) {
	// Whichever thread the goroutine starts on, f runs elsewhere than on
	// the main thread.
	for i := 0; i < 20; i++ {
		tid := make(chan int, 1)
		go onPrivateThread(func() { tid <- unix.Gettid() })
		if got := <-tid; got == unix.Getpid() {
			t.Fatal("ran on the main thread")
		}
	}
}
