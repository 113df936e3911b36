package closure

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests resolve real programs of the host (a Debian system); each
// skips when what it needs is not installed.

func needFile(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s: %v", p, err)
	}
}

// hostResolve resolves program on the host.
func hostResolve(t testing.TB, program string, includes ...string) (*Set, error) {
	t.Helper()
	r := &Resolver{Root: "/", Path: "/usr/local/bin:/usr/bin:/bin"}
	return r.Resolve(context.Background(), program, includes)
}

// hasRegular reports whether the set has a regular file whose path ends
// with suffix.
func hasRegular(s *Set, suffix string) bool {
	for _, f := range s.Files() {
		if f.Mode.IsRegular() && strings.HasSuffix(f.Path, suffix) {
			return true
		}
	}
	return false
}

// checkSet checks invariants of any resolved set: parents are directories
// of the set, symlinks resolve within the set, regular files have sources.
func checkSet(t *testing.T, s *Set) {
	t.Helper()
	for _, f := range s.Files() {
		if d := filepath.Dir(f.Path); d != "/" {
			if p, ok := s.Lookup(d); !ok || !p.IsDir() {
				t.Errorf("%s: parent %s is %+v", f.Path, d, p)
			}
		}
		switch {
		case f.Mode.IsRegular():
			if f.Source == "" || f.Inode == 0 {
				t.Errorf("%s: no source or identity: %+v", f.Path, f)
			}
		case f.IsSymlink():
			if f.Target == "" {
				t.Errorf("%s: symlink without target", f.Path)
			}
		}
	}
}

// resolvesInSet follows p through the set's symlinks to a regular file.
func resolvesInSet(s *Set, p string) bool {
	for i := 0; i < 40; i++ {
		// Resolve parents that are symlinks in the set.
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		cur := "/"
		for j, c := range parts {
			next := filepath.Join(cur, c)
			f, ok := s.Lookup(next)
			if !ok {
				return false
			}
			if f.IsSymlink() {
				t := f.Target
				if !filepath.IsAbs(t) {
					t = filepath.Join(cur, t)
				}
				p = filepath.Join(append([]string{t}, parts[j+1:]...)...)
				goto again
			}
			cur = next
		}
		if f, ok := s.Lookup(cur); ok && f.Mode.IsRegular() {
			return true
		}
		return false
	again:
	}
	return false
}

func TestHostClosures(t *testing.T) {
	tests := []struct {
		program string
		regular []string // suffixes of regular files that must be there
		links   []string // paths that must resolve in the set
		absent  []string
	}{{
		program: "/bin/echo",
		regular: []string{"/usr/bin/echo", "/libc.so.6", "/ld-linux-x86-64.so.2"},
		links:   []string{"/bin/echo", "/lib64/ld-linux-x86-64.so.2"},
		// Only echo of coreutils: the rest of a base package is left out.
		absent: []string{"/usr/bin/ls", "/usr/bin/cat", "/usr/share/doc"},
	}, {
		program: "/usr/bin/python3",
		regular: []string{"/usr/bin/python3.11", "/usr/lib/python3.11/os.py", "/usr/lib/python3.11/json/__init__.py",
			"/usr/lib/python3.11/subprocess.py", "/usr/lib/python3.11/encodings/utf_8.py"},
		links:  []string{"/usr/bin/python3", "/lib64/ld-linux-x86-64.so.2"},
		absent: []string{"/usr/share/doc", "/usr/share/man"},
	}, {
		program: "/usr/bin/perl",
		regular: []string{"/usr/bin/perl", "/POSIX.pm", "/libcrypt.so.1.1.0"},
		links:   []string{"/lib64/ld-linux-x86-64.so.2"},
		absent:  []string{"/usr/bin/perlbug"},
	}}
	for _, tc := range tests {
		t.Run(tc.program, func(t *testing.T) {
			needFile(t, tc.program)
			s, err := hostResolve(t, tc.program)
			if err != nil {
				t.Fatal(err)
			}
			checkSet(t, s)
			for _, r := range tc.regular {
				if !hasRegular(s, r) {
					t.Errorf("no regular file *%s", r)
				}
			}
			for _, l := range tc.links {
				if f, ok := s.Lookup(l); ok && !f.IsSymlink() && !f.Mode.IsRegular() {
					t.Errorf("%s: %v", l, f.Mode)
				}
				if !resolvesInSet(s, l) {
					t.Errorf("%s does not resolve within the set", l)
				}
			}
			for _, a := range tc.absent {
				if _, ok := s.Lookup(a); ok {
					t.Errorf("%s present", a)
				}
			}
			t.Logf("%s: %v", tc.program, s)
		})
	}
}

func TestHostScripts(t *testing.T) {
	needFile(t, "/usr/bin/python3")
	needFile(t, "/bin/sh")
	dir := t.TempDir()
	sh := filepath.Join(dir, "s.sh")
	py := filepath.Join(dir, "s.py")
	if err := os.WriteFile(sh, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(py, []byte("#!/usr/bin/env python3\nimport json\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := hostResolve(t, sh)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s)
	if !hasRegular(s, sh) || !resolvesInSet(s, "/bin/sh") {
		t.Errorf("sh script: %v", paths(s))
	}
	s, err = hostResolve(t, py)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s)
	// python3 comes from the guest's PATH, not a pyenv shim earlier in the
	// host's.
	if !hasRegular(s, py) || !resolvesInSet(s, "/usr/bin/env") || !resolvesInSet(s, "/usr/bin/python3") ||
		!hasRegular(s, "/usr/lib/python3.11/json/__init__.py") {
		t.Errorf("env python3 script: %v", s)
	}
	if _, ok := s.Lookup("/root"); ok {
		t.Error("/root in the closure")
	}
}

func TestHostStatic(t *testing.T) {
	var progs []string
	if _, err := os.Stat("/bin/busybox"); err == nil {
		progs = append(progs, "/bin/busybox")
	}
	if goBin, err := exec.LookPath("go"); err == nil && !testing.Short() {
		dir := t.TempDir()
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "static")
		cmd := exec.Command(goBin, "build", "-o", bin, src)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		progs = append(progs, bin)
	}
	if len(progs) == 0 {
		t.Skip("no static binary")
	}
	for _, p := range progs {
		r := &Resolver{Root: "/", Path: "/usr/local/bin:/usr/bin:/bin", noShell: true}
		s, err := r.Resolve(context.Background(), p, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range s.Files() {
			if strings.Contains(f.Path, "libc.so") || strings.Contains(f.Path, "ld-linux") {
				t.Errorf("%s: static binary brings %s", p, f.Path)
			}
		}
		// With the shell, as every run has it: /bin/sh runs, so its
		// loader and libc are there.
		if s, err = hostResolve(t, p); err != nil {
			t.Fatal(err)
		}
		_, ok := s.Lookup(shellPath)
		if _, merged := s.Lookup("/usr" + shellPath); !ok && !merged {
			t.Errorf("%s: no %s in the closure", p, shellPath)
		}
		if !hasRegular(s, "/dash") {
			t.Errorf("%s: /bin/sh's dash is missing", p)
		}
		if !hasRegular(s, "/libc.so.6") {
			t.Errorf("%s: /bin/sh's libc.so.6 is missing", p)
		}
	}
}

func TestHostErrors(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	text := filepath.Join(dir, "text")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(text, []byte("hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Root: "/", Path: "/usr/bin:/bin", Dir: dir}
	ctx := context.Background()
	for _, tc := range []struct {
		program string
		err     error
	}{
		{"nosuchprogram-arrow", ErrNotFound},
		{"./nosuch", ErrNotFound},
		{noexec, ErrNotExecutable},
		{"./noexec", ErrNotExecutable},
		{dir, ErrNotExecutable},
		{text, ErrNotProgram},
	} {
		p, err := r.Program(ctx, tc.program)
		if err == nil {
			_, err = r.Resolve(ctx, p, nil)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.program, err, tc.err)
		}
	}
}

func TestHostMissingLibrary(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("foo.c", "int foo(void) { return 42; }\n")
	write("main.c", "int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n")
	run := func(args ...string) {
		cmd := exec.Command(gcc, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	run("-shared", "-fPIC", "-Wl,-soname,libarrowtest.so.1", "-o", "libarrowtest.so.1", "foo.c")
	run("-o", "prog", "main.c", "-L.", "-l:libarrowtest.so.1", "-Wl,-rpath,$ORIGIN")
	prog := filepath.Join(dir, "prog")

	s, err := hostResolve(t, prog)
	if err != nil {
		t.Fatal(err)
	}
	if !hasRegular(s, filepath.Join(dir, "libarrowtest.so.1")) || !hasRegular(s, "/libc.so.6") {
		t.Errorf("closure: %v", paths(s))
	}

	if err := os.Remove(filepath.Join(dir, "libarrowtest.so.1")); err != nil {
		t.Fatal(err)
	}
	_, err = hostResolve(t, prog)
	var le *LibraryError
	if !errors.As(err, &le) || !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("err = %v, want a LibraryError", err)
	}
	if le.Library != "libarrowtest.so.1" || le.Needer != prog {
		t.Errorf("got %+v", le)
	}
	if msg := err.Error(); !strings.Contains(msg, "libarrowtest.so.1") || !strings.Contains(msg, prog) {
		t.Errorf("message %q names neither the library nor the program", msg)
	}
}

func BenchmarkResolve(b *testing.B) {
	for _, p := range []string{"/bin/echo", "/usr/bin/python3", "/usr/bin/perl"} {
		b.Run(filepath.Base(p), func(b *testing.B) {
			needFile(b, p)
			b.ReportAllocs()
			var s *Set
			for i := 0; i < b.N; i++ {
				var err error
				if s, err = hostResolve(b, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.Len()), "files")
			b.ReportMetric(float64(s.Bytes())/(1<<20), "MiB")
		})
	}
}

// TestHostPythonRecommends records why RecommendsOwners is the default:
// Debian's python3.11-minimal, which owns /usr/bin/python3.11, lacks json;
// its Recommends python3.11 brings libpython3.11-stdlib.
func TestHostPythonRecommends(t *testing.T) {
	needFile(t, "/usr/lib/python3.11/json/__init__.py")
	sizes := map[Recommends]int64{}
	for _, tc := range []struct {
		rec  Recommends
		json bool
	}{{RecommendsNone, false}, {RecommendsOwners, true}, {RecommendsAll, true}} {
		r := &Resolver{Root: "/", Recommends: tc.rec}
		s, err := r.Resolve(context.Background(), "/usr/bin/python3", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !hasRegular(s, "/usr/lib/python3.11/os.py") {
			t.Errorf("recommends %d: no os.py", tc.rec)
		}
		if got := hasRegular(s, "/usr/lib/python3.11/json/__init__.py"); got != tc.json {
			t.Errorf("recommends %d: json %v, want %v", tc.rec, got, tc.json)
		}
		sizes[tc.rec] = s.Bytes()
		t.Logf("recommends %d: %v", tc.rec, s)
	}
	if !(sizes[RecommendsNone] < sizes[RecommendsOwners] && sizes[RecommendsOwners] <= sizes[RecommendsAll]) {
		t.Errorf("sizes %v", sizes)
	}
}

// TestHostIncludeELF: an included program brings its own libraries, so
// that `--include /bin/ls` runs in the guest; an included data file does
// not make the closure fail.
func TestHostIncludeELF(t *testing.T) {
	needFile(t, "/bin/ls")
	data := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(data, []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := hostResolve(t, "/bin/echo", "/bin/ls", data)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s)
	for _, want := range []string{"/usr/bin/ls", "/libselinux.so.1", "/data.txt"} {
		if !hasRegular(s, want) {
			t.Errorf("no regular file *%s in %v", want, paths(s))
		}
	}
}
