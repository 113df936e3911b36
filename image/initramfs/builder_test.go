package initramfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
)

// testSet is a small closure of host files made in dir.
func testSet(t *testing.T, dir string) (*closure.Set, map[string]string) {
	t.Helper()
	files := map[string]string{"/usr/bin/app": "#!/bin/sh\necho app\n", "/usr/share/app/data": "data"}
	s := closure.NewSet()
	for p, content := range files {
		src := filepath.Join(dir, filepath.Base(p))
		if _, err := os.Stat(src); err != nil {
			if err := os.WriteFile(src, []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := s.Add(closure.File{Path: p, Source: src, Mode: fi.Mode(), Size: fi.Size(),
			ModTime: fi.ModTime(), ChangeTime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec), Inode: st.Ino, Device: uint64(st.Dev)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(closure.File{Path: "/bin", Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"}); err != nil {
		t.Fatal(err)
	}
	return s, files
}

func initEntry(t *testing.T, dir string) Entry {
	t.Helper()
	p := filepath.Join(dir, "arrow-init")
	if _, err := os.Stat(p); err != nil {
		if err := os.WriteFile(p, []byte("\x7fELF fake init"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Entry{Path: "/init", Source: p, Mode: 0o755}
}

// archives lists the archives in the cache directory.
func archives(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".cpio") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	src, cache := t.TempDir(), filepath.Join(t.TempDir(), "initramfs")
	set, files := testSet(t, src)
	b := &Builder{Dir: cache}
	ctx := context.Background()
	path, err := b.Build(ctx, set, initEntry(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != cache || !strings.HasSuffix(path, ".cpio") {
		t.Errorf("archive at %s", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs := readArchive(t, data)
	m := byName(rs)
	for p, content := range files {
		if r, ok := m[p[1:]]; !ok || string(r.data) != content || r.mode != 0o100755 {
			t.Errorf("%s: %s %q", p, describe(r), r.data)
		}
	}
	want := map[string]uint32{
		"dev": 0o40755, "proc": 0o40555, "sys": 0o40555, "tmp": 0o41777, "run": 0o40755,
		"etc": 0o40755, "root": 0o40700, "dev/console": 0o20600, "init": 0o100755,
		"usr": 0o40755, "usr/share": 0o40755, "usr/share/app": 0o40755, "bin": 0o120777,
	}
	for name, mode := range want {
		if r, ok := m[name]; !ok || r.mode != mode {
			t.Errorf("%s: %s, want mode %o", name, describe(r), mode)
		}
	}
	if c := m["dev/console"]; c.rmajor != 5 || c.rminor != 1 {
		t.Errorf("console: %s", describe(c))
	}
	if string(m["init"].data) != "\x7fELF fake init" {
		t.Errorf("init: %q", m["init"].data)
	}
	// Directories before their contents, every parent present.
	seen := map[string]bool{}
	for _, r := range rs {
		if d := filepath.Dir(r.name); d != "." && !seen[d] {
			t.Errorf("%s before its parent %s", r.name, d)
		}
		seen[r.name] = true
		if r.uid != 0 || r.gid != 0 {
			t.Errorf("%s owned by %d:%d", r.name, r.uid, r.gid)
		}
	}
}

func TestBuildCache(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	set, _ := testSet(t, src)
	b := &Builder{Dir: cache}
	ctx := context.Background()
	init := initEntry(t, src)
	first, err := b.Build(ctx, set, init)
	if err != nil {
		t.Fatal(err)
	}
	fi1, _ := os.Stat(first)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(first, old, old); err != nil {
		t.Fatal(err)
	}

	// Same inputs: the same archive, untouched.
	second, err := b.Build(ctx, set, init)
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(second)
	if second != first || !fi2.ModTime().Equal(old) || !os.SameFile(fi1, fi2) {
		t.Errorf("cache hit rewrote the archive: %s (%v) vs %s (%v)", first, fi1.ModTime(), second, fi2.ModTime())
	}
	if n := len(archives(t, cache)); n != 1 {
		t.Errorf("%d archives", n)
	}

	// A changed source file (same size, new mtime) is a new archive.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(src, "data"), []byte("DATA"), 0o755); err != nil {
		t.Fatal(err)
	}
	set2, _ := testSet(t, src) // re-resolved, as every run does
	third, err := b.Build(ctx, set2, init)
	if err != nil {
		t.Fatal(err)
	}
	if third == first {
		t.Error("a changed file reused the archive")
	}
	// A set built without identities is keyed by a fresh stat.
	bare := closure.NewSet()
	if err := bare.Add(closure.File{Path: "/x", Source: filepath.Join(src, "data"), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	k1, err := b.Build(ctx, bare, init)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(src, "data"), []byte("XXXX"), 0o644); err != nil {
		t.Fatal(err)
	}
	k2, err := b.Build(ctx, bare, init)
	if err != nil {
		t.Fatal(err)
	}
	if k1 == k2 {
		t.Error("a changed file of an identity-less set reused the archive")
	}

	// A changed /init (content) is a new archive; the same content under a
	// new inode is not.
	third2, _ := b.Build(ctx, set2, init)
	if err := os.WriteFile(init.Source, []byte("\x7fELF another init"), 0o755); err != nil {
		t.Fatal(err)
	}
	fourth, err := b.Build(ctx, set2, init)
	if err != nil {
		t.Fatal(err)
	}
	if fourth == third2 {
		t.Error("a changed /init reused the archive")
	}
	copyPath := filepath.Join(src, "init-copy")
	if err := os.WriteFile(copyPath, []byte("\x7fELF another init"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The key includes the source path, so use a rename onto the same path.
	if err := os.Rename(copyPath, init.Source); err != nil {
		t.Fatal(err)
	}
	fifth, err := b.Build(ctx, set2, init)
	if err != nil {
		t.Fatal(err)
	}
	if fifth != fourth {
		t.Error("the same /init content under a new inode rebuilt the archive")
	}
}

func TestBuildAtomic(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	set, _ := testSet(t, src)
	b := &Builder{Dir: cache}
	ctx := context.Background()
	init := initEntry(t, src)

	// A failure mid-write leaves neither an archive nor a temporary file.
	bad := closure.NewSet()
	if err := bad.Add(closure.File{Path: "/a", Source: filepath.Join(src, "data"), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if err := bad.Add(closure.File{Path: "/z", Source: filepath.Join(src, "vanished"), Mode: 0o644, Inode: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, bad, init); err == nil {
		t.Fatal("built an archive of a missing file")
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), sumPrefix) {
		t.Errorf("left behind: %v", ents)
	}

	// A cancelled build writes nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Build(cancelled, set, init); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
	if n := len(archives(t, cache)); n != 0 {
		t.Errorf("%d archives after failures", n)
	}

	// Concurrent builds of one key: one complete archive, no temporary.
	var wg sync.WaitGroup
	paths := make([]string, 4)
	errs := make([]error, 4)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = b.Build(ctx, set, init)
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("build %d: %s, %v", i, paths[i], errs[i])
		}
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cachefile.TempPrefix) {
			t.Errorf("temporary file %s left", e.Name())
		}
	}
	data, _ := os.ReadFile(paths[0])
	readArchive(t, data) // complete, or this fails
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead := mk(cachefile.TempPrefix+"dead.tmp", time.Hour)
	young := mk(cachefile.TempPrefix+"young.tmp", time.Second)
	busy := mk(cachefile.TempPrefix+"busy.tmp", time.Hour)
	archive := mk("0123.cpio", time.Hour)
	f, err := os.Open(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cachefile.RemoveStale(dir, staleAge, time.Now())
	for p, want := range map[string]bool{dead: false, young: true, busy: true, archive: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func TestBuildPlan(t *testing.T) {
	src := t.TempDir()
	init := initEntry(t, src)
	b := &Builder{Dir: t.TempDir()}
	ctx := context.Background()

	// Extras replace set files and base entries; parents are made.
	s := closure.NewSet()
	if err := s.Add(closure.File{Path: "/init", Mode: fs.ModeSymlink | 0o777, Target: "/bin/sh"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(closure.File{Path: "/tmp", Mode: fs.ModeDir | 0o700}); err != nil {
		t.Fatal(err)
	}
	p, err := b.Build(ctx, s, init, Entry{Path: "/a/b/c", Mode: 0o600}, Entry{Path: "/etc", Mode: fs.ModeDir | 0o700})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	m := byName(readArchive(t, data))
	for name, mode := range map[string]uint32{"init": 0o100755, "tmp": 0o41777, "a": 0o40755, "a/b": 0o40755, "a/b/c": 0o100600, "etc": 0o40700} {
		if m[name].mode != mode {
			t.Errorf("%s: %s, want mode %o", name, describe(m[name]), mode)
		}
	}

	// A file where a directory must be is an error.
	if _, err := b.Build(ctx, s, init, Entry{Path: "/dev/console/x", Mode: 0o600}); err == nil {
		t.Error("built an entry below a device node")
	}
	if _, err := b.Build(ctx, s, Entry{Path: "relative", Mode: 0o600}); err == nil {
		t.Error("built a relative extra entry")
	}
	if _, err := (&Builder{}).Build(ctx, s); err == nil {
		t.Error("built without a directory")
	}
}

// BenchmarkBuild measures an `arrow run` of python3: resolving the closure
// and building (cold: a new archive each time) or finding (warm) its
// initramfs.
func BenchmarkBuild(b *testing.B) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	init := Entry{Path: "/init", Source: "/usr/bin/python3.11", Mode: 0o755} // a few MB, like arrow-init
	resolve := func() *closure.Set {
		s, err := (&closure.Resolver{Root: "/"}).Resolve(ctx, "/usr/bin/python3", nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			if _, err := (&Builder{Dir: dir}).Build(ctx, resolve(), init); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		bl := &Builder{Dir: b.TempDir()}
		if _, err := bl.Build(ctx, resolve(), init); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := bl.Build(ctx, resolve(), init); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestPrune(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	set, _ := testSet(t, src)
	b := &Builder{Dir: cache}
	p, err := b.Build(context.Background(), set, initEntry(t, src))
	if err != nil {
		t.Fatal(err)
	}
	n, size, err := b.Usage()
	if fi, _ := os.Stat(p); err != nil || n != 1 || size != fi.Size() {
		t.Fatalf("Usage = %d, %d, %v", n, size, err)
	}
	if removed, _, err := b.Prune(time.Hour); err != nil || removed != 0 {
		t.Fatalf("Prune removed %d recent files: %v", removed, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		os.Chtimes(filepath.Join(cache, e.Name()), old, old)
	}
	removed, freed, err := b.Prune(time.Hour)
	if err != nil || removed != 2 || freed < size {
		t.Fatalf("Prune = %d, %d, %v; want the archive and the sum", removed, freed, err)
	}
	if n, _, _ := b.Usage(); n != 0 {
		t.Errorf("%d archives left", n)
	}
	if n, _, err := (&Builder{Dir: filepath.Join(cache, "none")}).Usage(); n != 0 || err != nil {
		t.Errorf("missing directory: %d, %v", n, err)
	}
}

// TestBuildOwners: the closure's owners reach the archive and the tree a
// root disk is made of: a state directory stays its daemon's.
func TestBuildOwners(t *testing.T) {
	src, cache := t.TempDir(), filepath.Join(t.TempDir(), "initramfs")
	set := closure.NewSet()
	for _, f := range []closure.File{
		{Path: "/var/lib/redis", Mode: fs.ModeDir | 0o750, UID: 103, GID: 111},
		{Path: "/var/log/nginx", Mode: fs.ModeDir | 0o755, UID: 0, GID: 4},
	} {
		if err := set.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	path, err := (&Builder{Dir: cache}).Build(context.Background(), set, initEntry(t, src))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(readArchive(t, data))
	if r := m["var/lib/redis"]; r.uid != 103 || r.gid != 111 || r.mode != 0o40750 {
		t.Errorf("var/lib/redis: %s", describe(r))
	}
	if r := m["var/log/nginx"]; r.uid != 0 || r.gid != 4 {
		t.Errorf("var/log/nginx: %s", describe(r))
	}
	if os.Geteuid() != 0 {
		return // only root can give a tree's files away
	}
	tree := filepath.Join(t.TempDir(), "root")
	if err := WriteTree(context.Background(), set, tree); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(tree, "var/lib/redis"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 103 || st.Gid != 111 || fi.Mode().Perm() != 0o750 {
		t.Errorf("tree's var/lib/redis: %v %d:%d", fi.Mode(), st.Uid, st.Gid)
	}
}
