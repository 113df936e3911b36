package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRun boots a VM per case and checks output, error output and exit
// status as a user of `docker run` would expect them, in every run mode:
// cold, a clone of a template, a spare of arrowd's pool.
func TestRun(t *testing.T) {
	script := filepath.Join(t.TempDir(), "greet.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"script says $1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	envScript := filepath.Join(t.TempDir(), "hello.py")
	if err := os.WriteFile(envScript, []byte("#!/usr/bin/env python3\nimport json\nprint(json.dumps({'hello': 'env'}))\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantOut    string
		wantErr    string // substring of stderr
		wantCode   int
		exactError bool // stderr must equal wantErr
	}{
		{name: "echo", args: []string{"/bin/echo", "hello", "world"}, wantOut: "hello world\n"},
		{name: "program from PATH", args: []string{"echo", "from", "path"}, wantOut: "from path\n"},
		{name: "exit 0", args: []string{"/bin/sh", "-c", "exit 0"}},
		{name: "exit 3", args: []string{"/bin/sh", "-c", "exit 3"}, wantCode: 3},
		{name: "killed by SIGKILL", args: []string{"/bin/sh", "-c", "kill -9 $$"}, wantCode: 137},
		{name: "stdout and stderr apart", args: []string{"/bin/sh", "-c", "echo out; echo err >&2"},
			wantOut: "out\n", wantErr: "err\n", exactError: true},
		{name: "stdin to EOF", stdin: "pear\napple\nfig\n", args: []string{"-i", "/usr/bin/sort"}, wantOut: "apple\nfig\npear\n"},
		{name: "no stdin without -i", stdin: "ignored\n", args: []string{"/bin/cat"}, wantOut: ""},
		{name: "env cwd uid", args: []string{"-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", python, "-c",
			"import os; print(os.environ['FOO'], os.getcwd(), os.getuid(), os.getgid())"}, wantOut: "bar /tmp 1000 1000\n"},
		{name: "python3 exit status", args: []string{python, "-c", "import sys, json; print(json.dumps(sys.version_info[:1])); sys.exit(3)"},
			wantOut: "[3]\n", wantCode: 3},
		{name: "perl", args: []string{"/usr/bin/perl", "-MPOSIX", "-e", "print POSIX::floor(2.5), qq{\\n}"}, wantOut: "2\n"},
		{name: "static binary", args: []string{"/bin/busybox", "echo", "static"}, wantOut: "static\n"},
		{name: "shell script", args: []string{script, "hi"}, wantOut: "script says hi\n"},
		{name: "env python script", args: []string{envScript}, wantOut: "{\"hello\": \"env\"}\n"},
		{name: "cpus", args: []string{"--cpus", "2", python, "-c", "import os; print(os.cpu_count())"}, wantOut: "2\n"},
		{name: "memory", args: []string{"--memory", "384M", "/bin/sh", "-c", "read -r _ kb _ < /proc/meminfo; [ $kb -gt 300000 ] && [ $kb -le 393216 ] && echo ok"}, wantOut: "ok\n"},
		{name: "hostname", args: []string{"--hostname", "web1", python, "-c", "import socket; print(socket.gethostname())"}, wantOut: "web1\n"},
		{name: "large output", args: []string{python, "-c", "import sys; sys.stdout.write('x' * 3000000)"}, wantOut: strings.Repeat("x", 3000000)},
		{name: "large stdin", stdin: strings.Repeat("y", 2<<20), args: []string{"-i", "/usr/bin/wc", "-c"}, wantOut: strconv.Itoa(2<<20) + "\n"},
		{name: "guest program not found", args: []string{"/bin/sh", "-c", "exec /no/such/program"}, wantCode: 127},
	}
	for _, rm := range runModes {
		t.Run(rm.name, func(t *testing.T) {
			m := enterMode(t, rm.name, rm.args)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := m.run(t, tt.stdin, tt.args...)
					if r.code != tt.wantCode {
						t.Fatalf("exit status %d, want %d\nstdout: %.2000s\nstderr: %.2000s", r.code, tt.wantCode, r.stdout, r.stderr)
					}
					if r.stdout != tt.wantOut {
						t.Errorf("stdout %.300q, want %.300q", r.stdout, tt.wantOut)
					}
					if tt.exactError && r.stderr != tt.wantErr {
						t.Errorf("stderr %q, want exactly %q", r.stderr, tt.wantErr)
					} else if !strings.Contains(r.stderr, tt.wantErr) {
						t.Errorf("stderr %q, want it to contain %q", r.stderr, tt.wantErr)
					}
				})
			}
		})
	}
}

// TestIncludeRelative runs a script that exists only as an --include,
// from the current directory, as in the README.
func TestIncludeRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("print('app ran')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(arrowBin, "run", "--include", "./app.py", python, "app.py")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil || string(out) != "app ran\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}

// TestExplicitKernel boots the same kernel passed with --kernel, the path
// other kernels take.
func TestExplicitKernel(t *testing.T) {
	k, err := exec.Command(arrowBin, "kernel", "path").Output()
	if err != nil {
		t.Fatal(err)
	}
	r := arrow(t, "", "run", "--kernel", strings.TrimSpace(string(k)), "/bin/echo", "explicit")
	if r.code != 0 || r.stdout != "explicit\n" {
		t.Fatalf("got %d %q %q", r.code, r.stdout, r.stderr)
	}
}
