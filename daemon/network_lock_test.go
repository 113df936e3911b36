package daemon

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// lockNetnsEnv marks the child TestNetworkLockPath re-runs itself as in a
// network namespace of its own.
const lockNetnsEnv = "ARROW_DAEMON_TEST_NETNS"

// TestNetworkLockPath: the daemons of different network namespaces take
// different locks (a test's daemon beside the host's), the initial
// namespace's keeps its old name.
func TestNetworkLockPath(t *testing.T) {
	p, err := networkLockPath()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(lockNetnsEnv) == "1" {
		if p == networkLock || !strings.HasPrefix(p, "/run/arrow-networks-netns-") {
			t.Fatalf("in a network namespace of its own: lock %s", p)
		}
		return
	}
	if p != networkLock {
		t.Fatalf("in the initial network namespace: lock %s, want %s", p, networkLock)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNetworkLockPath$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), lockNetnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestNetworkLockPath")) {
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	}
}
