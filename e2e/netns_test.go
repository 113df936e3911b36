package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// netnsEnv names, in the child process a test re-runs itself in, the
// test that runs there.
const netnsEnv = "ARROW_E2E_NETNS"

// binDirEnv passes the binaries the parent built to the child, which
// need not build them again.
const binDirEnv = "ARROW_E2E_BIN_DIR"

// inNetns runs the calling test in a network namespace of its own, so
// that it is hermetic: its arrowd's bridges, taps and nftables table are
// the namespace's, and its arrowd takes that namespace's lock, beside an
// arrowd of the host with bridge networks of its own. In the test process
// it re-runs the test binary on this test alone, cloned into a new network
// namespace (the daemon it starts and the clients it runs inherit it),
// reports the child's output and outcome, and returns false; in that
// child it brings lo up and returns true.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v\n%s", err, out)
		}
		return true
	}
	args := []string{"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name(), binDirEnv+"="+binDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("test in its network namespace: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatal("the test did not run in its network namespace")
	}
	return false
}
