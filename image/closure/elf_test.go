package closure

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadELFSynthetic(t *testing.T) {
	for _, class := range []elf.Class{elf.ELFCLASS64, elf.ELFCLASS32} {
		b := mkELF(elfSpec{class: class, typ: elf.ET_EXEC, interp: interp,
			needed: []string{"libc.so.6", "libfoo.so.1"}, rpath: "/r", runpath: "$ORIGIN/../lib:/x", nodeflib: true})
		info, err := readELF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%v: %v", class, err)
		}
		want := &elfInfo{class: class, data: elf.ELFDATA2LSB, machine: elf.EM_X86_64, typ: elf.ET_EXEC,
			interp: interp, needed: []string{"libc.so.6", "libfoo.so.1"},
			runpath: []string{"$ORIGIN/../lib", "/x"}, hasRunpath: true, nodeflib: true}
		if !reflect.DeepEqual(info, want) {
			t.Errorf("%v:\n got %+v\nwant %+v", class, info, want)
		}
		// debug/elf agrees on what it can read.
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("debug/elf: %v", err)
		}
		if ef.Class != class || ef.Machine != elf.EM_X86_64 {
			t.Errorf("debug/elf reads %v %v", ef.Class, ef.Machine)
		}
	}
}

func TestReadELFRpathOnly(t *testing.T) {
	b := mkELF(elfSpec{needed: []string{"a"}, rpath: "/a::/b"})
	info, err := readELF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.rpath, []string{"/a", "/b"}) || info.hasRunpath {
		t.Errorf("rpath %q runpath %v", info.rpath, info.hasRunpath)
	}
}

func TestReadELFHost(t *testing.T) {
	for _, p := range []string{"/bin/echo", "/usr/bin/python3"} {
		f, err := os.Open(p)
		if err != nil {
			t.Skip(err)
		}
		fi, _ := f.Stat()
		info, err := readELF(f, fi.Size())
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if info.interp == "" || len(info.needed) == 0 {
			t.Errorf("%s: interp %q needed %q", p, info.interp, info.needed)
		}
		// Compare with debug/elf's view.
		ef, err := elf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		libs, _ := ef.ImportedLibraries()
		ef.Close()
		if !reflect.DeepEqual(libs, info.needed) {
			t.Errorf("%s: needed %q, debug/elf says %q", p, info.needed, libs)
		}
	}
}

func TestReadELFGarbage(t *testing.T) {
	good := mkELF(elfSpec{interp: interp, needed: []string{"libc.so.6"}, runpath: "/x"})
	cases := map[string][]byte{
		"empty":     nil,
		"short":     []byte("\x7fELF"),
		"text":      []byte("#!/bin/sh\necho hi\n"),
		"bad class": append(append([]byte{}, good[:4]...), append([]byte{9}, good[5:]...)...),
		"truncated": good[:len(good)-20],
	}
	for i := 0; i < len(good); i += 3 {
		b := append([]byte{}, good...)
		b[i] ^= 0xff
		cases["flip"+string(rune('a'+i%26))+string(rune('0'+i/26%10))] = b
	}
	for name, b := range cases {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			_, _ = readELF(bytes.NewReader(b), int64(len(b)))
		}()
	}
	if _, err := readELF(bytes.NewReader([]byte("hello world")), 11); !errors.Is(err, errNotELF) {
		t.Errorf("text: %v, want errNotELF", err)
	}
}

func FuzzReadELF(f *testing.F) {
	f.Add(mkELF(elfSpec{interp: interp, needed: []string{"libc.so.6"}, rpath: "/r"}))
	f.Add(mkELF(elfSpec{class: elf.ELFCLASS32, needed: []string{"a", "b"}, runpath: "$ORIGIN"}))
	f.Add(mkELF(elfSpec{static: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := readELF(bytes.NewReader(b), int64(len(b)))
		if err == nil && info == nil {
			t.Fatal("nil info without error")
		}
	})
}

// resolveIn resolves program in the fake tree with r's defaults set for it.
func resolveIn(t *testing.T, tr *tree, r *Resolver, program string, includes ...string) (*Set, error) {
	t.Helper()
	if r == nil {
		r = &Resolver{}
	}
	r.Root = tr.root
	if r.Path == "" {
		r.Path = "/usr/bin:/bin"
	}
	if r.Dir == "" {
		r.Dir = "/"
	}
	return r.Resolve(context.Background(), program, includes)
}

// wantPaths checks that got has each of want (path -> "f", "d" or
// "l target") and none of absent.
func wantPaths(t *testing.T, s *Set, want map[string]string, absent ...string) {
	t.Helper()
	got := paths(s)
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}
	for _, p := range absent {
		if g, ok := got[p]; ok {
			t.Errorf("%s: present (%q), want absent", p, g)
		}
	}
	if t.Failed() {
		t.Logf("set: %v", got)
	}
}

func TestResolveELFLoaderAndSymlinks(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/prog", elfSpec{typ: elf.ET_EXEC, interp: interp, needed: []string{"libfoo.so.1", "libc.so.6"}})
	tr.elf("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", elfSpec{needed: []string{"libc.so.6"}})
	tr.link("libfoo.so.1.2.3", "/usr/lib/x86_64-linux-gnu/libfoo.so.1")
	s, err := resolveIn(t, tr, nil, "/bin/prog")
	if err != nil {
		t.Fatal(err)
	}
	wantPaths(t, s, map[string]string{
		"/bin":                            "l usr/bin",
		"/usr/bin/prog":                   "f",
		"/lib64":                          "l usr/lib64",
		"/usr/lib64/ld-linux-x86-64.so.2": "l /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/lib":                            "l usr/lib",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": "f",
		"/usr/lib/x86_64-linux-gnu/libc.so.6":            "f",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1":          "l libfoo.so.1.2.3",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3":      "f",
		"/usr":                      "d",
		"/usr/lib/x86_64-linux-gnu": "d",
	}, "/etc/ld.so.cache", "/lib/x86_64-linux-gnu")
	// Sources point into the fake root, and files carry their identity.
	f, _ := s.Lookup("/usr/bin/prog")
	if f.Source != filepath.Join(tr.root, "/usr/bin/prog") || f.Inode == 0 || f.Size == 0 || f.ModTime.IsZero() {
		t.Errorf("prog: %+v", f)
	}
	// Every parent of every entry is a directory of the set.
	for _, f := range s.Files() {
		if d := filepath.Dir(f.Path); d != "/" {
			if p, ok := s.Lookup(d); !ok || !p.IsDir() {
				t.Errorf("%s: parent %s is %+v", f.Path, d, p)
			}
		}
	}
}

func TestResolveELFSearchOrder(t *testing.T) {
	lib := elfSpec{}
	lib32 := elfSpec{class: elf.ELFCLASS32, machine: elf.EM_386}
	tests := []struct {
		name   string
		prog   elfSpec
		setup  func(tr *tree)
		want   map[string]string
		absent []string
		err    string // the missing library, if the resolution must fail
	}{{
		name: "RUNPATH with $ORIGIN, per object",
		prog: elfSpec{needed: []string{"libapp.so"}, runpath: "$ORIGIN/../lib"},
		setup: func(tr *tree) {
			tr.elf("/opt/app/lib/libapp.so", elfSpec{needed: []string{"libdep.so"}, runpath: "${ORIGIN}/private"})
			tr.elf("/opt/app/lib/private/libdep.so", lib)
			tr.elf("/usr/lib/x86_64-linux-gnu/libapp.so", lib) // later in the order
		},
		want:   map[string]string{"/opt/app/lib/libapp.so": "f", "/opt/app/lib/private/libdep.so": "f"},
		absent: []string{"/usr/lib/x86_64-linux-gnu/libapp.so"},
	}, {
		name: "RUNPATH disables RPATH",
		prog: elfSpec{needed: []string{"libx.so"}, rpath: "/r1", runpath: "/r2"},
		setup: func(tr *tree) {
			tr.elf("/r1/libx.so", lib)
			tr.elf("/r2/libx.so", lib)
		},
		want:   map[string]string{"/r2/libx.so": "f"},
		absent: []string{"/r1/libx.so"},
	}, {
		name: "RPATH of the loaders is inherited",
		prog: elfSpec{needed: []string{"liba.so"}, rpath: "/r1"},
		setup: func(tr *tree) {
			tr.elf("/r1/liba.so", elfSpec{needed: []string{"libb.so"}})
			tr.elf("/r1/libb.so", lib)
			tr.elf("/usr/lib/x86_64-linux-gnu/libb.so", lib)
		},
		want:   map[string]string{"/r1/liba.so": "f", "/r1/libb.so": "f"},
		absent: []string{"/usr/lib/x86_64-linux-gnu/libb.so"},
	}, {
		name: "RUNPATH is not inherited",
		prog: elfSpec{needed: []string{"liba.so"}, runpath: "/r1"},
		setup: func(tr *tree) {
			tr.elf("/r1/liba.so", elfSpec{needed: []string{"libb.so"}})
			tr.elf("/r1/libb.so", lib)
			tr.elf("/usr/lib/x86_64-linux-gnu/libb.so", lib)
		},
		want:   map[string]string{"/r1/liba.so": "f", "/usr/lib/x86_64-linux-gnu/libb.so": "f"},
		absent: []string{"/r1/libb.so"},
	}, {
		name: "$LIB and $PLATFORM",
		prog: elfSpec{needed: []string{"libp.so"}, runpath: "/opt/$LIB/${PLATFORM}"},
		setup: func(tr *tree) {
			tr.elf("/opt/lib/x86_64-linux-gnu/x86_64/libp.so", lib)
		},
		want: map[string]string{"/opt/lib/x86_64-linux-gnu/x86_64/libp.so": "f"},
	}, {
		name: "ld.so.cache, skipping a 32-bit library, brings the cache",
		prog: elfSpec{needed: []string{"libx.so.1"}},
		setup: func(tr *tree) {
			tr.elf("/usr/lib/i386-linux-gnu/libx.so.1", lib32)
			tr.elf("/usr/local/lib/libx.so.1", lib)
			tr.file("/etc/ld.so.cache", mkLDCache([]ldEntry{
				{"libx.so.1", "/usr/lib/i386-linux-gnu/libx.so.1", 0x0003, 0},
				{"libx.so.1", "/usr/local/lib/libx.so.1", flagsX8664, 0},
			}), 0o644)
		},
		want:   map[string]string{"/usr/local/lib/libx.so.1": "f", "/etc/ld.so.cache": "f"},
		absent: []string{"/usr/lib/i386-linux-gnu/libx.so.1"},
	}, {
		name: "ld.so.cache hit in a system directory needs no cache",
		prog: elfSpec{needed: []string{"libs.so.1"}},
		setup: func(tr *tree) {
			tr.elf("/usr/lib/x86_64-linux-gnu/libs.so.1", lib)
			tr.file("/etc/ld.so.cache", mkLDCache([]ldEntry{
				{"libs.so.1", "/lib/x86_64-linux-gnu/libs.so.1", flagsX8664, 0},
			}), 0o644)
		},
		want:   map[string]string{"/usr/lib/x86_64-linux-gnu/libs.so.1": "f", "/lib": "l usr/lib"},
		absent: []string{"/etc/ld.so.cache"},
	}, {
		name: "hwcaps variants come after the baseline",
		prog: elfSpec{needed: []string{"libh.so"}},
		setup: func(tr *tree) {
			tr.elf("/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libh.so", lib)
			tr.elf("/usr/lib/x86_64-linux-gnu/libh.so", lib)
			tr.file("/etc/ld.so.cache", mkLDCache([]ldEntry{
				{"libh.so", "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libh.so", flagsX8664, 1<<62 | 1},
				{"libh.so", "/usr/lib/x86_64-linux-gnu/libh.so", flagsX8664, 0},
			}), 0o644)
		},
		want:   map[string]string{"/usr/lib/x86_64-linux-gnu/libh.so": "f"},
		absent: []string{"/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libh.so"},
	}, {
		name: "default directories skip other classes",
		prog: elfSpec{needed: []string{"liby.so"}},
		setup: func(tr *tree) {
			tr.elf("/usr/lib/x86_64-linux-gnu/liby.so", lib32)
			tr.elf("/usr/lib/liby.so", lib)
		},
		want: map[string]string{"/lib": "l usr/lib", "/usr/lib/liby.so": "f"},
	}, {
		name:  "DF_1_NODEFLIB skips the default directories",
		prog:  elfSpec{needed: []string{"libz.so"}, nodeflib: true},
		setup: func(tr *tree) { tr.elf("/usr/lib/x86_64-linux-gnu/libz.so", lib) },
		err:   "libz.so",
	}, {
		name: "a library with a slash is a path",
		prog: elfSpec{needed: []string{"/opt/abs/libq.so"}},
		setup: func(tr *tree) {
			tr.elf("/opt/abs/libq.so", lib)
		},
		want: map[string]string{"/opt/abs/libq.so": "f"},
	}, {
		name: "a missing library of a library",
		prog: elfSpec{needed: []string{"libfoo.so"}},
		setup: func(tr *tree) {
			tr.elf("/usr/lib/x86_64-linux-gnu/libfoo.so", elfSpec{needed: []string{"libgone.so.3"}})
		},
		err: "libgone.so.3",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tr.merged()
			tc.prog.typ = elf.ET_DYN
			tc.prog.interp = interp
			tc.prog.needed = append(tc.prog.needed, "libc.so.6")
			tr.elf("/opt/app/bin/prog", tc.prog)
			tc.setup(tr)
			s, err := resolveIn(t, tr, nil, "/opt/app/bin/prog")
			if tc.err != "" {
				var le *LibraryError
				if !errors.As(err, &le) || le.Library != tc.err || !errors.Is(err, ErrLibraryNotFound) {
					t.Fatalf("err = %v, want a LibraryError for %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantPaths(t, s, tc.want, tc.absent...)
		})
	}
}

func TestResolveLibraryErrors(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/prog", elfSpec{interp: interp, needed: []string{"libc.so.6", "libfoo.so"}})
	tr.elf("/usr/lib/x86_64-linux-gnu/libfoo.so", elfSpec{needed: []string{"libgone.so.3"}})
	tr.elf("/usr/bin/nointerp", elfSpec{interp: "/lib/ld-musl-x86_64.so.1", needed: []string{"libc.so"}})

	_, err := resolveIn(t, tr, nil, "/usr/bin/prog")
	var le *LibraryError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LibraryError", err)
	}
	if le.Library != "libgone.so.3" || le.Needer != "/lib/x86_64-linux-gnu/libfoo.so" || le.Interpreter {
		t.Errorf("got %+v", le)
	}
	for _, want := range []string{"libgone.so.3", "/lib/x86_64-linux-gnu/libfoo.so"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("%q does not name %s", err, want)
		}
	}

	_, err = resolveIn(t, tr, nil, "/usr/bin/nointerp")
	if !errors.As(err, &le) || !le.Interpreter || le.Library != "/lib/ld-musl-x86_64.so.1" || le.Needer != "/usr/bin/nointerp" {
		t.Errorf("err = %v (%+v), want the missing interpreter", err, le)
	}
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Errorf("err = %v, not ErrLibraryNotFound", err)
	}
}

func TestResolveStatic(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/static", elfSpec{typ: elf.ET_EXEC, static: true})
	s, err := resolveIn(t, tr, nil, "/usr/bin/static")
	if err != nil {
		t.Fatal(err)
	}
	got := paths(s)
	want := map[string]string{"/usr": "d", "/usr/bin": "d", "/usr/bin/static": "f"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestResolveLibraryPathAndBadCache(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/prog", elfSpec{interp: interp, needed: []string{"libc.so.6", "libx.so"}, runpath: "/rp"})
	tr.elf("/rp/libx.so", elfSpec{})
	tr.elf("/extra/libx.so", elfSpec{})
	tr.file("/etc/ld.so.cache", []byte("garbage, ignored as ld.so ignores it"), 0o644)
	s, err := resolveIn(t, tr, &Resolver{LibraryPath: []string{"/extra"}}, "/usr/bin/prog")
	if err != nil {
		t.Fatal(err)
	}
	wantPaths(t, s, map[string]string{"/extra/libx.so": "f"}, "/rp/libx.so", "/etc/ld.so.cache")
	s, err = resolveIn(t, tr, nil, "/usr/bin/prog")
	if err != nil {
		t.Fatal(err)
	}
	wantPaths(t, s, map[string]string{"/rp/libx.so": "f"}, "/extra/libx.so")
}
