package initramfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/arrowsys/arrow/image/closure"
)

// TestGuestRuns resolves real host programs, builds their archives, unpacks
// each into a directory as the kernel would and runs the program chrooted
// there: nothing but the archive is visible to it, as in the guest. It
// needs root (chroot, mknod).
func TestGuestRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot")
	}
	tests := []struct {
		program string
		args    []string
		want    string
	}{
		{"/bin/echo", []string{"hello"}, "hello\n"},
		{"/usr/bin/python3", []string{"-c", "import sys, json, os, subprocess; print(json.dumps([sys.version_info[0]]))"}, "[3]\n"},
		{"/usr/bin/perl", []string{"-e", `use POSIX; print "ok\n"`}, "ok\n"},
		{"script", nil, "from sh\n"},
		{"pyscript", nil, "{\"a\": 1}\n"},
	}
	work := t.TempDir()
	scripts := map[string]string{
		"script":   "#!/bin/sh\necho from sh\n",
		"pyscript": "#!/usr/bin/env python3\nimport json\nprint(json.dumps({'a': 1}))\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(work, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	initPath := filepath.Join(work, "arrow-init")
	if err := os.WriteFile(initPath, []byte("not really arrow-init"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Builder{Dir: filepath.Join(work, "cache")}
	for _, tc := range tests {
		t.Run(tc.program, func(t *testing.T) {
			program := tc.program
			if !filepath.IsAbs(program) {
				program = filepath.Join(work, program)
			}
			if _, err := os.Stat(program); err != nil {
				t.Skip(err)
			}
			r := &closure.Resolver{Root: "/"}
			set, err := r.Resolve(context.Background(), program, nil)
			if err != nil {
				t.Fatal(err)
			}
			archive, err := b.Build(context.Background(), set, Entry{Path: "/init", Source: initPath, Mode: 0o755})
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(archive)
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			extract(t, readArchive(t, data), root, true)
			// What devtmpfs gives the guest.
			if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(program, tc.args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=" + closure.DefaultGuestPath, "HOME=/root", "LC_ALL=C"}
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != tc.want {
				t.Errorf("%s in the guest: %v\n%s", tc.program, err, out)
			}
			t.Logf("%s: %v, archive %d bytes", tc.program, set, len(data))
		})
	}
}

// TestGuestLacksHostFiles is the negative control: a program needing
// something outside its closure fails in the chroot.
func TestGuestLacksHostFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip(err)
	}
	r := &closure.Resolver{Root: "/", NoDpkg: true}
	set, err := r.Resolve(context.Background(), "/usr/bin/python3", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{Dir: t.TempDir()}
	archive, err := b.Build(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(archive)
	root := t.TempDir()
	extract(t, readArchive(t, data), root, true)
	cmd := exec.Command("/usr/bin/python3", "-c", "import json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "encodings") && !strings.Contains(string(out), "json") {
		t.Errorf("python3 without its standard library ran: %v\n%s", err, out)
	}
}
