package closure

import (
	"context"
	"debug/elf"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestShebang(t *testing.T) {
	tests := []struct {
		head, interp, arg string
		ok                bool
	}{
		{"#!/bin/sh\necho", "/bin/sh", "", true},
		{"#! /bin/sh -e \n", "/bin/sh", "-e", true},
		{"#!/usr/bin/env python3\r\n", "/usr/bin/env", "python3", true},
		{"#!/usr/bin/env\tpython3 -u\n", "/usr/bin/env", "python3 -u", true},
		{"#!\n", "", "", false},
		{"#!   \n", "", "", false},
		{"echo hi\n", "", "", false},
		{"#!/bin/sh", "/bin/sh", "", true},
	}
	for _, tc := range tests {
		interp, arg, ok := shebang([]byte(tc.head))
		if interp != tc.interp || arg != tc.arg || ok != tc.ok {
			t.Errorf("shebang(%q) = %q, %q, %v; want %q, %q, %v", tc.head, interp, arg, ok, tc.interp, tc.arg, tc.ok)
		}
	}
}

func TestEnvCommand(t *testing.T) {
	tests := map[string]string{
		"python3":                "python3",
		"-S python3 -u":          "python3",
		"-i PATH=/x python3":     "python3",
		"-u HOME --unset X perl": "perl",
		"-- node":                "node",
		"FOO=1":                  "",
		"":                       "",
	}
	for arg, want := range tests {
		if got := envCommand(arg); got != want {
			t.Errorf("envCommand(%q) = %q, want %q", arg, got, want)
		}
	}
}

func TestResolveScripts(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/dash", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.link("dash", "/usr/bin/sh")
	tr.elf("/usr/bin/env", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.elf("/usr/bin/python3.11", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.link("python3.11", "/usr/bin/python3")
	// A python3 earlier in the host's PATH than in the guest's.
	tr.file("/root/.pyenv/shims/python3", []byte("#!/bin/bash\nexec pyenv\n"), 0o755)
	tr.file("/opt/s/sh.sh", []byte("#!/bin/sh -e\necho hi\n"), 0o755)
	tr.file("/opt/s/env.py", []byte("#!/usr/bin/env -S python3 -u\nprint(1)\n"), 0o755)
	tr.file("/opt/s/nested", []byte("#!/opt/s/sh.sh\n"), 0o755)
	tr.file("/opt/s/loop", []byte("#!/opt/s/loop\n"), 0o755)
	tr.file("/opt/s/noenv", []byte("#!/usr/bin/env nosuchprog\n"), 0o755)
	tr.file("/opt/s/badinterp", []byte("#!/nonexistent/interp\n"), 0o755)
	tr.file("/opt/s/text", []byte("just text\n"), 0o755)
	tr.file("/opt/s/empty", []byte("#!\n"), 0o755)
	tr.elf("/opt/s/object.o", elfSpec{typ: elf.ET_REL, static: true})
	tr.file("/opt/s/noexec", []byte("#!/bin/sh\n"), 0o644)

	shell := map[string]string{
		"/bin":                                "l usr/bin",
		"/usr/bin/sh":                         "l dash",
		"/usr/bin/dash":                       "f",
		"/usr/lib/x86_64-linux-gnu/libc.so.6": "f",
	}
	tests := []struct {
		prog   string
		want   map[string]string
		absent []string
		err    error
	}{
		{prog: "/opt/s/sh.sh", want: merge(shell, map[string]string{"/opt/s/sh.sh": "f"})},
		{prog: "/opt/s/nested", want: merge(shell, map[string]string{"/opt/s/nested": "f", "/opt/s/sh.sh": "f"})},
		{prog: "/opt/s/env.py", want: map[string]string{
			"/opt/s/env.py": "f", "/usr/bin/env": "f", "/usr/bin/python3": "l python3.11", "/usr/bin/python3.11": "f",
		}, absent: []string{"/root", "/root/.pyenv/shims/python3"}},
		{prog: "/opt/s/loop", err: ErrNotProgram},
		{prog: "/opt/s/noenv", err: ErrNotFound},
		{prog: "/opt/s/badinterp", err: ErrNotFound},
		{prog: "/opt/s/text", err: ErrNotProgram},
		{prog: "/opt/s/empty", err: ErrNotProgram},
		{prog: "/opt/s/object.o", err: ErrNotProgram},
		{prog: "/opt/s/noexec", err: ErrNotExecutable},
		{prog: "/opt/s", err: ErrNotExecutable},
		{prog: "/opt/s/missing", err: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.prog, func(t *testing.T) {
			r := &Resolver{Path: "/root/.pyenv/shims:/usr/bin"}
			s, err := resolveIn(t, tr, r, tc.prog)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.prog) {
					t.Errorf("%q does not name %s", err, tc.prog)
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

func merge(ms ...map[string]string) map[string]string {
	out := make(map[string]string)
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestProgram(t *testing.T) {
	tr := newTree(t)
	tr.file("/a/tool", []byte("#!/bin/sh\n"), 0o644) // not executable: skipped
	tr.dir("/b/tool")                                // a directory: skipped
	tr.file("/c/tool", []byte("#!/bin/sh\n"), 0o755)
	tr.file("/a/only", []byte("#!/bin/sh\n"), 0o644)
	tr.file("/w/rel/x", []byte("#!/bin/sh\n"), 0o755)
	r := &Resolver{Root: tr.root, Path: "relative:/a::/b:/c", Dir: "/w"}
	ctx := context.Background()
	tests := []struct {
		name, want string
		err        error
	}{
		{"tool", "/c/tool", nil},
		{"only", "", ErrNotExecutable},
		{"missing", "", ErrNotFound},
		{"", "", ErrNotFound},
		{"rel/x", "/w/rel/x", nil},
		{"./rel/../rel/x", "/w/rel/x", nil},
		{"/c/tool", "/c/tool", nil},
		{"/a/tool", "", ErrNotExecutable},
		{"/c/nothing", "", ErrNotFound},
		{"/b/tool", "", ErrNotExecutable},
	}
	for _, tc := range tests {
		got, err := r.Program(ctx, tc.name)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Program(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Program(cancelled, "tool"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestIncludesAndSecrets(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/static", elfSpec{static: true})
	tr.file("/data/a.txt", []byte("a"), 0o644)
	tr.file("/data/sub/b", []byte("b"), 0o600)
	tr.file("/data/.ssh/id_rsa", []byte("KEY"), 0o600)
	tr.file("/data/id_ed25519", []byte("KEY"), 0o600)
	tr.file("/etc/shadow", []byte("root:x"), 0o640)
	tr.file("/etc/hosts", []byte("127.0.0.1 localhost"), 0o644)
	tr.link("/etc/shadow", "/data/shadowlink")
	tr.link("../etc/hosts", "/data/hostslink")
	tr.link("sub", "/data/sublink")
	tr.link("/elsewhere", "/data/dangling")
	tr.link("/data", "/data/sub/loop") // a cycle
	tr.file("/elsewhere2/c", []byte("c"), 0o644)
	tr.link("/elsewhere2", "/data/outside")
	tr.file("/home/alice/src/main.go", []byte("package main"), 0o644)
	tr.file("/home/alice/.ssh/id_rsa", []byte("KEY"), 0o600)
	tr.file("/home/alice/notes", []byte("n"), 0o644)
	tr.file("/etc/ssh/ssh_host_ed25519_key", []byte("KEY"), 0o600)
	tr.file("/etc/ssh/ssh_host_ed25519_key.pub", []byte("PUB"), 0o644)

	tests := []struct {
		name     string
		includes []string
		want     map[string]string
		absent   []string
		err      string
	}{{
		name:     "a directory without its secrets",
		includes: []string{"/data"},
		want: map[string]string{
			"/data/a.txt": "f", "/data/sub/b": "f", "/data/shadowlink": "l /etc/shadow",
			"/data/hostslink": "l ../etc/hosts", "/etc/hosts": "f", "/data/sublink": "l sub",
			"/data/dangling": "l /elsewhere", "/data/sub/loop": "l /data",
			"/data/outside": "l /elsewhere2", "/elsewhere2/c": "f",
		},
		absent: []string{"/data/.ssh", "/data/.ssh/id_rsa", "/data/id_ed25519", "/etc/shadow"},
	}, {
		name:     "a secret named explicitly",
		includes: []string{"/etc/shadow", "/data/.ssh/id_rsa"},
		want:     map[string]string{"/etc/shadow": "f", "/data/.ssh/id_rsa": "f"},
		absent:   []string{"/data/a.txt"},
	}, {
		name:     "relative to the working directory",
		includes: []string{"a.txt", "sub"},
		want:     map[string]string{"/data/a.txt": "f", "/data/sub/b": "f"},
	}, {
		name:     "a home directory's tree, named",
		includes: []string{"/home/alice/src"},
		want:     map[string]string{"/home/alice/src/main.go": "f"},
		absent:   []string{"/home/alice/notes"},
	}, {
		name:     "a home directory without its keys",
		includes: []string{"/home/alice"},
		want:     map[string]string{"/home/alice/src/main.go": "f", "/home/alice/notes": "f"},
		absent:   []string{"/home/alice/.ssh", "/home/alice/.ssh/id_rsa"},
	}, {
		name:     "/etc without the shadow file and host keys",
		includes: []string{"/etc"},
		want:     map[string]string{"/etc/hosts": "f", "/etc/ssh/ssh_host_ed25519_key.pub": "f"},
		absent:   []string{"/etc/shadow", "/etc/ssh/ssh_host_ed25519_key"},
	}, {
		name:     "missing",
		includes: []string{"/data/a.txt", "/nonexistent/thing"},
		err:      "/nonexistent/thing",
	}, {
		name:     "a kernel file system",
		includes: []string{"/proc/cpuinfo"},
		err:      "/proc/cpuinfo",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := resolveIn(t, tr, &Resolver{Dir: "/data"}, "/usr/bin/static", tc.includes...)
			if tc.err != "" {
				if !errors.Is(err, ErrInclude) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrInclude naming %s", err, tc.err)
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

func TestAllowedSecret(t *testing.T) {
	tests := []struct {
		p, typed string
		want     bool
	}{
		{"/usr/lib/x.so", "", true},
		{"/etc/shadow", "", false},
		{"/etc/shadow", "/etc", false},
		{"/etc/shadow", "/etc/shadow", true},
		{"/etc/gshadow-", "", false},
		{"/etc/ssl/private/k.pem", "/etc/ssl", false},
		{"/etc/ssl/private/k.pem", "/etc/ssl/private", true},
		{"/etc/ssl/certs/ca.pem", "/etc", true},
		{"/root/x", "", false},
		{"/root/x", "/root/x", true},
		{"/root/.ssh/id_rsa", "/root", false},
		{"/home/bob/x", "/home", false},
		{"/home/bob/x", "/home/bob", true},
		{"/home/bob/.gnupg/k", "/home/bob", false},
		{"/srv/app/.aws/credentials", "/srv/app", false},
		{"/srv/app/.env", "/srv/app", true},
		{"/etc/ssh/ssh_host_rsa_key", "/etc/ssh", false},
		{"/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh", true},
		{"/etc/sudoers.d/x", "/etc", false},
	}
	for _, tc := range tests {
		if got := allowedSecret(tc.p, tc.typed); got != tc.want {
			t.Errorf("allowedSecret(%q, %q) = %v, want %v", tc.p, tc.typed, got, tc.want)
		}
	}
	// The quick filter lets through everything isSecret matches.
	for p := range secretPaths {
		if !maybeSecret(p) {
			t.Errorf("maybeSecret(%q) = false", p)
		}
	}
	for n := range secretNames {
		if !maybeSecret("/x/" + n) {
			t.Errorf("maybeSecret(/x/%s) = false", n)
		}
	}
}

func TestCanRead(t *testing.T) {
	r := reader{uid: 1000, groups: map[uint32]bool{1000: true, 27: true}}
	tests := []struct {
		mode     fs.FileMode
		uid, gid uint32
		want     bool
	}{
		{0o644, 0, 0, true},
		{0o600, 0, 0, false},
		{0o640, 0, 27, true},
		{0o640, 0, 42, false},
		{0o400, 1000, 0, true},
		{0o044, 1000, 0, false}, // the owner's bits decide, as the kernel does
		{fs.ModeDir | 0o700, 0, 0, false},
		{fs.ModeDir | 0o755, 0, 0, true},
	}
	for _, tc := range tests {
		if got := r.canRead(stat{mode: tc.mode, uid: tc.uid, gid: tc.gid}); got != tc.want {
			t.Errorf("canRead(%v %d:%d) = %v", tc.mode, tc.uid, tc.gid, got)
		}
	}
	if !(reader{uid: 0}).canRead(stat{mode: 0}) {
		t.Error("root cannot read")
	}
}
