package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary run allocHelper instead of the tests.
const helperEnv = "ARROW_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "alloc" {
		allocHelper()
		return
	}
	os.Exit(m.Run())
}

// allocHelper waits for a byte on stdin (sent once it is in its group),
// allocates and touches 16 MiB, says "ready", waits for another byte, then
// allocates and touches 200 MiB, which a 64 MiB limit does not allow.
func allocHelper() {
	in := bufio.NewReader(os.Stdin)
	touch := func(n int) []byte {
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		return b
	}
	if _, err := in.ReadByte(); err != nil {
		os.Exit(2)
	}
	small := touch(16 << 20)
	fmt.Println("ready")
	if _, err := in.ReadByte(); err != nil {
		os.Exit(2)
	}
	big := touch(200 << 20)
	fmt.Println("survived")
	runtime.KeepAlive(small)
	runtime.KeepAlive(big)
}

// newReal returns a Manager on this machine's cgroups for a parent group
// of its own, removed when the test ends.
func newReal(t *testing.T) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	m, err := New(fmt.Sprintf("arrow-test-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroup v%d", m.Version())
	t.Cleanup(func() {
		var dirs []string
		if m.Version() == 2 {
			dirs = []string{filepath.Join(m.unified, m.parent)}
		} else {
			for _, c := range v1Controllers {
				if root := m.mounts[c]; root != "" && !slices.Contains(dirs, filepath.Join(root, m.parent)) {
					dirs = append(dirs, filepath.Join(root, m.parent))
				}
			}
		}
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove parent: %v", err)
			}
		}
	})
	return m
}

// cleanupGroup kills and removes g when the test ends.
func cleanupGroup(t *testing.T, g *Group) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Kill(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cleanup: %v", err)
		}
		if err := g.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRealOOM runs a process that outgrows a 64 MiB limit in a real group
// and checks that it is OOM-killed and that the kill is counted.
func TestRealOOM(t *testing.T) {
	m := newReal(t)
	const limit = 64 << 20
	g, err := m.Create("oom", Limits{MemoryBytes: limit, CPUs: 0.5, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	cleanupGroup(t, g)

	// The limits are in the kernel's files.
	if m.Version() == 2 {
		if got := readTrim(t, filepath.Join(g.Path(), "memory.max")); got != "67108864" {
			t.Errorf("memory.max = %s", got)
		}
		if got := readTrim(t, filepath.Join(g.Path(), "cpu.max")); got != "50000 100000" {
			t.Errorf("cpu.max = %s", got)
		}
		if got := readTrim(t, filepath.Join(g.Path(), "pids.max")); got != "64" {
			t.Errorf("pids.max = %s", got)
		}
	} else {
		if got := readTrim(t, filepath.Join(g.Path(), "memory.limit_in_bytes")); got != "67108864" {
			t.Errorf("memory.limit_in_bytes = %s", got)
		}
		if got := readTrim(t, filepath.Join(g.dirs["cpu"], "cpu.cfs_quota_us")); got != "50000" {
			t.Errorf("cpu.cfs_quota_us = %s", got)
		}
		if got := readTrim(t, filepath.Join(g.dirs["cpu"], "cpu.cfs_period_us")); got != "100000" {
			t.Errorf("cpu.cfs_period_us = %s", got)
		}
		if got := readTrim(t, filepath.Join(g.dirs["pids"], "pids.max")); got != "64" {
			t.Errorf("pids.max = %s", got)
		}
	}
	// Opening the group again finds the same directories.
	if g2, err := m.Open("oom"); err != nil || g2.Path() != g.Path() {
		t.Fatalf("Open: %v, %v", g2, err)
	}

	before, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if before.MemoryLimit != limit {
		t.Errorf("MemoryLimit = %d, want %d", before.MemoryLimit, limit)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	if err := g.Add(pid); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte{'1'}); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	procs, err := g.Procs()
	if err != nil || !slices.Contains(procs, pid) {
		t.Fatalf("Procs() = %v, %v; want %d among them", procs, err, pid)
	}
	busy, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with the helper running: %+v", busy)
	if busy.MemoryBytes < 16<<20 || busy.MemoryBytes > limit {
		t.Errorf("MemoryBytes = %d, want between 16 MiB and the limit", busy.MemoryBytes)
	}
	if busy.Pids < 1 {
		t.Errorf("Pids = %d", busy.Pids)
	}
	if err := g.Remove(); !errors.Is(err, unix.EBUSY) {
		t.Errorf("Remove with a process in the group: err = %v, want EBUSY", err)
	}

	// Now past the limit.
	if _, err := stdin.Write([]byte{'2'}); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v (output %q), want killed by SIGKILL", err, rest)
	}

	after, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the OOM kill: %+v", after)
	if after.OOMKills != before.OOMKills+1 {
		t.Errorf("OOMKills went from %d to %d, want one more", before.OOMKills, after.OOMKills)
	}
	if after.CPUUsage <= 0 {
		t.Errorf("CPUUsage = %v, want some", after.CPUUsage)
	}
	if procs, err := g.Procs(); err != nil || len(procs) != 0 {
		t.Errorf("Procs() after the kill = %v, %v", procs, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open("oom"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open after Remove: err = %v", err)
	}
}

// TestRealKill kills the processes of a real group and removes it.
func TestRealKill(t *testing.T) {
	m := newReal(t)
	g, err := m.Create("kill", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cleanupGroup(t, g)
	var cmds []*exec.Cmd
	for range 3 {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	if procs, err := g.Procs(); err != nil || len(procs) != 3 {
		t.Fatalf("Procs() = %v, %v", procs, err)
	}
	// Reap the children as they die, as the daemon would.
	done := make(chan error, len(cmds))
	for _, cmd := range cmds {
		go func() { done <- cmd.Wait() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for range cmds {
		if err := <-done; err == nil {
			t.Error("a process survived Kill")
		}
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", g.Path(), err)
	}
}
