package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// arrowBin is the arrow binary under test, built by TestMain.
var arrowBin string

// binDir holds the binaries the suite built (arrow, arrow-init,
// arrow-jailer).
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if dir := os.Getenv(binDirEnv); dir != "" {
		// A test re-run in a network namespace of its own (inNetns):
		// its parent built the binaries and set the environment.
		binDir, arrowBin = dir, filepath.Join(dir, "arrow")
		runMarker = "ARROW_E2E_RUN=" + os.Getenv("ARROW_E2E_RUN")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "arrow-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	builds := [][]string{
		{"go", "build", "-o", filepath.Join(dir, "arrow"), "github.com/arrowsys/arrow/cmd/arrow"},
		{"go", "build", "-o", filepath.Join(dir, "arrow-init"), "github.com/arrowsys/arrow/cmd/arrow-init"},
		{"go", "build", "-o", filepath.Join(dir, "arrow-jailer"), "github.com/arrowsys/arrow/cmd/arrow-jailer"},
		{"go", "build", "-o", filepath.Join(dir, "containerd-shim-arrow-v1"), "github.com/arrowsys/arrow/cmd/containerd-shim-arrow-v1"},
	}
	for _, b := range builds {
		cmd := exec.Command(b[0], b[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b[len(b)-1], err, out)
			return 1
		}
	}
	arrowBin = filepath.Join(dir, "arrow")
	// The arrow binary finds the jail's helper beside it; tests that
	// start VMs themselves find it here.
	os.Setenv("ARROW_JAILER", filepath.Join(dir, "arrow-jailer"))
	// Every process this run starts, QEMU included, inherits this marker:
	// the leak checks look at this run's VMs only, not at those of
	// another suite running on the same machine.
	runMarker = "ARROW_E2E_RUN=" + filepath.Base(dir)
	os.Setenv("ARROW_E2E_RUN", filepath.Base(dir))
	// Foreground runs stay in-process unless a test says otherwise (its
	// spare mode, with an arrowd of its own): one that took a spare of
	// the host's arrowd would test that arrowd, not this build.
	os.Setenv("ARROW_NO_DAEMON", "1")
	// Every test boots VMs with Arrow's kernel: without it they cannot
	// say anything, so fail them all at once with what to do.
	if out, err := exec.Command(arrowBin, "kernel", "path").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no guest kernel (%s): run `make kernel` first\n", bytes.TrimSpace(out))
		return 1
	}
	return m.Run()
}

// result is what one arrow invocation did.
type result struct {
	stdout, stderr string
	code           int
}

// arrow runs the arrow CLI with args and stdin, bounded by a generous
// deadline, and checks that it left no QEMU process behind.
func arrow(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return arrowEnv(t, nil, stdin, args...)
}

func arrowEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	before := qemuProcesses(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("arrow %q did not finish: %v\nstderr: %s", args, err, r.stderr)
	}
	assertNoNewQEMU(t, before)
	return r
}

// runMarker is the environment entry that marks this run's processes.
var runMarker string

// qemuProcesses lists the PIDs of this run's QEMU processes.
func qemuProcesses(t *testing.T) map[string]bool {
	t.Helper()
	return processesWhere(t, func(pid, comm string) bool {
		if !strings.HasPrefix(comm, "qemu-system") {
			return false
		}
		env, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		return err == nil && bytes.Contains(append(env, 0), []byte(runMarker+"\x00"))
	})
}

// assertNoNewQEMU fails when a QEMU process exists that did not before.
// QEMU dies with arrow, but give the kernel a moment to reap it.
func assertNoNewQEMU(t *testing.T, before map[string]bool) {
	t.Helper()
	var extra []string
	for i := 0; i < 50; i++ {
		extra = extra[:0]
		for pid := range qemuProcesses(t) {
			if !before[pid] {
				extra = append(extra, pid)
			}
		}
		if len(extra) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range extra {
		st, _ := os.ReadFile("/proc/" + pid + "/stat")
		f := strings.Fields(string(st))
		if len(f) > 3 {
			pp, _ := os.ReadFile("/proc/" + f[3] + "/cmdline")
			// Which arrow it was is in its parent's command line.
			t.Logf("QEMU %s left behind, its parent %s: %.300q", pid, f[3], strings.ReplaceAll(string(pp), "\x00", " "))
		}
		_ = syscall.Kill(atoi(pid), syscall.SIGKILL)
	}
	t.Errorf("QEMU processes left behind: %v", extra)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// python is Debian's python3, not a pyenv shim that may come first in PATH.
const python = "/usr/bin/python3"
