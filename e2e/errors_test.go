package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput checks that each kind of bad input gets its own message and
// exit status and leaves nothing behind (arrow() checks for QEMU).
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	notELF := filepath.Join(dir, "notelf")
	write := func(path, content string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(noExec, "#!/bin/sh\necho hi\n", 0o644)
	write(notELF, "\x00\x01\x02 this is data", 0o755)
	missingLib := buildMissingLibProgram(t, dir)
	emptyRoot := t.TempDir()

	tests := []struct {
		name    string
		env     []string
		args    []string
		code    int
		message string // substring of stderr
	}{
		{"program not found", nil, []string{"run", "/no/such/program"}, 127, "/no/such/program"},
		{"name not in PATH", nil, []string{"run", "no-such-program-anywhere"}, 127, "no-such-program-anywhere"},
		{"not executable", nil, []string{"run", noExec}, 126, "not executable"},
		{"not ELF or script", nil, []string{"run", notELF}, 126, "not an ELF"},
		{"missing library", nil, []string{"run", missingLib}, 127, "libarrowgone.so"},
		{"no kernel built", []string{"ARROW_SYSTEM_KERNELS=" + emptyRoot}, []string{"--root", emptyRoot, "run", "/bin/true"}, 125, "arrow kernel build"},
		{"qemu missing", []string{"PATH=/nonexistent"}, []string{"run", "/bin/true"}, 125, "apt-get install qemu-system-x86"},
		{"bad memory", nil, []string{"run", "--memory", "lots", "/bin/true"}, 125, "--memory"},
		{"memory too small", nil, []string{"run", "--memory", "4M", "/bin/true"}, 125, "out of range (32M"},
		{"bad cpus", nil, []string{"run", "--cpus", "0", "/bin/true"}, 125, "--cpus"},
		{"stop timeout that would overflow", nil, []string{"run", "--stop-timeout", "10000000000", "/bin/true"}, 125, "--stop-timeout"},
		{"bad --add-host", nil, []string{"run", "--add-host", "db:10.0.0.1", "/bin/true"}, 125, "NAME:host-gateway"},
		{"host access off the user network", nil, []string{"run", "--network", "none", "--add-host", "h:host-gateway", "/bin/true"}, 125, "user network"},
		{"bad jail uid range", []string{"ARROW_JAIL_UIDS=1"}, []string{"run", "/bin/true"}, 125, "ARROW_JAIL_UIDS"},
		{"jailed UDP port below 1024", nil, []string{"run", "-p", "127.0.0.1:999:53/udp", "/bin/true"}, 125, "cannot be published from the VM's jail"},
		{"bad accel", nil, []string{"run", "--accel", "hvf", "/bin/true"}, 125, "want auto, kvm or tcg"},
		{"bad user", nil, []string{"run", "-u", "alice", "/bin/true"}, 125, "--user"},
		{"missing include", nil, []string{"run", "--include", "/no/such/include", "/bin/true"}, 125, "/no/such/include"},
		{"bad kernel file", nil, []string{"run", "--kernel", notELF, "/bin/true"}, 125, "--kernel"},
		{"unknown flag", nil, []string{"run", "--frobnicate", "/bin/true"}, 125, "frobnicate"},
		{"boot deadline", nil, []string{"run", "--cold", "--boot-timeout", "50ms", "/bin/true"}, 125, "did not boot within 50ms"}, // a clone does not boot
		{"guest kernel panic", nil, []string{"run", "--kernel-args", "rdinit=/no/init", "/bin/true"}, 125, "panicked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := arrowEnv(t, tt.env, "", tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit status %d, want %d\nstderr: %s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.message) {
				t.Fatalf("stderr %q does not mention %q", r.stderr, tt.message)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	if ents, _ := os.ReadDir(emptyRoot); len(ents) != 0 {
		t.Errorf("a failed run wrote into the data root: %v", ents)
	}
}

// buildMissingLibProgram builds a program linked against a shared library
// and then deletes the library.
func buildMissingLibProgram(t *testing.T, dir string) string {
	t.Helper()
	lib := filepath.Join(dir, "gone.c")
	prog := filepath.Join(dir, "needsgone.c")
	if err := os.WriteFile(lib, []byte("int gone(void) { return 7; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, []byte("int gone(void);\nint main(void) { return gone(); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "libarrowgone.so")
	bin := filepath.Join(dir, "needsgone")
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-o", so, lib},
		{"-o", bin, prog, "-L" + dir, "-larrowgone"},
	} {
		if out, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
			t.Fatalf("cc %v: %v\n%s", args, err, out)
		}
	}
	if err := os.Remove(so); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestMemoryBeyondHost: a --memory the host cannot back fails at once,
// naming the host's memory; it used to try a template, boot cold and fail
// on QEMU's allocation 11 s later (100G), or run past 30 s (1T).
func TestMemoryBeyondHost(t *testing.T) {
	for _, m := range []string{"100G", "1T"} {
		start := time.Now()
		r := arrow(t, "", "run", "--memory", m, "/bin/true")
		took := time.Since(start)
		if r.code != 125 || !strings.Contains(r.stderr, "the host has") {
			t.Errorf("--memory %s: exit %d, %s", m, r.code, r.stderr)
		}
		if took > 5*time.Second {
			t.Errorf("--memory %s: refused after %v, want at once", m, took)
		}
	}
	// Nor is a template of it warmed: it would boot, its memory file
	// sparse, and promise its clones what the host cannot give.
	if r := arrow(t, "", "template", "warm", "--memory", "100G"); r.code != 125 || !strings.Contains(r.stderr, "the host has") {
		t.Errorf("template warm --memory 100G: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
}
