package podnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/internal/netnstest"
)

// pauseEnv makes the test binary the pause process, holding the
// namespace it names.
const pauseEnv = "ARROW_PODNET_TEST_PAUSE"

func TestMain(m *testing.M) {
	if ns := os.Getenv(pauseEnv); ns != "" {
		os.Exit(PauseMain([]string{ns}))
	}
	os.Exit(m.Run())
}

func pauseCmd(nsPath string) *exec.Cmd {
	cmd := PauseCommand(os.Args[0], nsPath)
	cmd.Env = append(os.Environ(), pauseEnv+"="+nsPath)
	return cmd
}

// TestPause starts the sandbox's pause process in a pod namespace: its
// /proc/PID/ns/net, the path CRI gives the pod's containers, is the pod's
// namespace, attachments through it and through the bind mount share one
// state, and SIGTERM ends it with status 0.
func TestPause(t *testing.T) {
	p := newTestPod(t)
	cmd := pauseCmd(p.path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	proc, err := StartPause(context.Background(), p.path, cmd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { proc.Kill() })
	criPath := fmt.Sprintf("/proc/%d/ns/net", proc.Pid)
	if same, err := netnsdo.Same(criPath, p.path); err != nil || !same {
		t.Fatalf("%s is the pod's namespace: %v, %v", criPath, same, err)
	}
	// Every thread of it, not only the one that forked.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", proc.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if same, err := netnsdo.Same(fmt.Sprintf("/proc/%d/task/%s/ns/net", proc.Pid, task.Name()), p.path); err != nil || !same {
			t.Fatalf("thread %s: in the pod's namespace %v, %v", task.Name(), same, err)
		}
	}
	if same, _ := netnsdo.Same("/proc/self/ns/net", p.path); same {
		t.Fatal("the test process moved into the pod's namespace")
	}

	runDir := t.TempDir()
	ctx := context.Background()
	a, err := Attach(ctx, p.path, "ctr-a", Options{RunDir: runDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attach(ctx, criPath, "ctr-b", Options{RunDir: runDir})
	if err != nil {
		t.Fatal(err)
	}
	if a.Address == b.Address || b.NetNS != criPath {
		t.Fatalf("links %s and %s in %s", a.Address, b.Address, b.NetNS)
	}
	if got := podLinks(t, p.path); len(got) != 2 {
		t.Fatalf("taps %v", got)
	}
	for _, id := range []string{"ctr-b", "ctr-a"} {
		if err := Detach(ctx, criPath, id, Options{RunDir: runDir}); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, p.path, runDir, "0")

	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pause still runs 10 s after SIGTERM")
	}
}

// TestPauseElsewhere: a pause process that was not started in the
// namespace it is told about refuses to hold anything.
func TestPauseElsewhere(t *testing.T) {
	p := newTestPod(t)
	out, err := pauseCmd(p.path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not in the network namespace") {
		t.Fatalf("pause outside its namespace: %v\n%s", err, out)
	}
	if _, err := StartPause(context.Background(), "/nonexistent", pauseCmd("/nonexistent")); err == nil || !strings.Contains(err.Error(), "/nonexistent") {
		t.Fatalf("start in a missing namespace: %v", err)
	}
	// A process that is told another namespace than the one it starts
	// in fails StartPause, and is reaped.
	_, other := netnstest.New(t)
	if _, err := StartPause(context.Background(), other, pauseCmd(p.path)); err == nil || !strings.Contains(err.Error(), "ended before it was ready") {
		t.Fatalf("start told another namespace: %v", err)
	}
	cmd := pauseCmd(p.path)
	cmd.Stdout = os.Stdout
	if _, err := StartPause(context.Background(), p.path, cmd); err == nil {
		t.Fatal("StartPause with cmd.Stdout set: want an error")
	}
}
