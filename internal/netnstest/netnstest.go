// Package netnstest makes named network namespaces for tests, removed at
// the end of the test: tests that make links and rules there never touch
// the host's, and pass beside an arrowd of the host.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
)

// New makes a network namespace with ip netns add, brings its lo up, and
// returns its name and path (/var/run/netns/NAME). It is deleted when the
// test ends; links in it go with it. Tests need root.
func New(t testing.TB) (name, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespace tests need root")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name = "arrowtest-" + hex.EncodeToString(b)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/var/run/netns/" + name
}

// Run runs a command and fails the test, with its output, if it fails;
// it returns the output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
