// Package testcontainers tests Arrow's Docker Engine API (issue 14) with
// testcontainers-go, unmodified: a Go test of a user's project starts a
// container, waits for its port, uses it and terminates it, with
// DOCKER_HOST pointing at arrowd's docker.sock.
//
// It is a module of its own so that Arrow's go.mod does not carry
// testcontainers-go and its dependencies. `make test` runs it; it starts
// an arrowd of its own (a private data root and socket) with the binaries
// it builds from this checkout, beside any arrowd of the host.
package testcontainers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/arrowsys/arrow/e2e/fixture"
)

const busyboxTag = "arrow-e2e/busybox:1"

// marker marks every process this test starts, QEMU included (they
// inherit it), so that the leak check counts this test's VMs alone.
var marker string

func TestTestcontainers(t *testing.T) {
	bin := buildArrow(t)
	sock := startArrowd(t, bin)

	// The test's own environment for testcontainers-go: its socket, a
	// fresh Docker configuration (no user's contexts or credentials).
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("DOCKER_CONTEXT", "")
	// Ryuk, testcontainers' reaper, is an image pulled from Docker Hub,
	// which this machine cannot reach (and Arrow has no image of it): the
	// test terminates its container itself, and the daemon's cleanup
	// removes whatever a failure left.
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// testcontainers takes a machine with /.dockerenv for a container
	// (this one has it: the development machines are containers) and
	// then looks for published ports at the gateway of the daemon's
	// bridge network, as a test inside a docker container must. Arrow
	// runs on this machine and publishes on its addresses: name them.
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	// testcontainers reads ~/.testcontainers.properties: a user's
	// settings there must not reach the test.
	t.Setenv("HOME", t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if err := fixture.BusyboxArchive(archive, busyboxTag); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dc.ImageLoad(ctx, f)
	f.Close()
	if err != nil {
		t.Fatalf("image load: %v", err)
	}
	loaded, _ := io.ReadAll(res)
	res.Close()
	if !strings.Contains(string(loaded), busyboxTag) {
		t.Fatalf("image load answered %q, want it to name %s", loaded, busyboxTag)
	}

	page := make([]byte, 8)
	_, _ = rand.Read(page)
	word := hex.EncodeToString(page)
	ctr, err := testcontainers.Run(ctx, busyboxTag,
		testcontainers.WithCmd("sh", "-c", fmt.Sprintf("echo %s > /www/index.html && exec httpd -f -p 80 -h /www", word)),
		testcontainers.WithExposedPorts("80/tcp"),
		testcontainers.WithLabels(map[string]string{"e2e": "testcontainers"}),
		testcontainers.WithWaitStrategy(
			wait.ForListeningPort("80/tcp"),
			wait.ForHTTP("/").WithPort("80/tcp").WithStatusCodeMatcher(func(s int) bool { return s == http.StatusOK }),
		),
	)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		t.Fatalf("testcontainers.Run: %v", err)
	}
	endpoint, err := ctr.PortEndpoint(ctx, "80/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(endpoint + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", endpoint, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != word {
		t.Errorf("GET %s: %q, want %q", endpoint, body, word)
	}
	state, err := ctr.State(ctx)
	if err != nil || !state.Running {
		t.Errorf("container state: %+v, %v", state, err)
	}

	if err := testcontainers.TerminateContainer(ctr); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	list, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("containers left after Terminate: %+v", list.Items)
	}
}

// buildArrow builds arrow, arrow-init and arrow-jailer from this checkout
// (the main module, two directories up) into a directory of the test's.
func buildArrow(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []string{"arrow", "arrow-init", "arrow-jailer"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	marker = "ARROW_E2E_RUN=tc-" + filepath.Base(dir)
	t.Setenv("ARROW_E2E_RUN", "tc-"+filepath.Base(dir))
	t.Setenv("ARROW_JAILER", filepath.Join(dir, "arrow-jailer"))
	return dir
}

// startArrowd starts an arrowd with a data root of its own (sharing the
// machine's kernels and initramfs cache, as the e2e harness does) and
// returns its Docker socket. At the end of the test it removes every
// arrow left, stops arrowd and checks that no VM of the test is left.
func startArrowd(t *testing.T, bin string) string {
	t.Helper()
	arrow := filepath.Join(bin, "arrow")
	if out, err := exec.Command(arrow, "kernel", "path").CombinedOutput(); err != nil {
		t.Fatalf("no guest kernel (%s): run `make kernel` first", bytes.TrimSpace(out))
	}
	root := t.TempDir()
	for _, shared := range []string{"kernels", "initramfs"} {
		if err := os.Symlink(filepath.Join("/var/lib/arrow", shared), filepath.Join(root, shared)); err != nil {
			t.Fatal(err)
		}
	}
	// Socket addresses are limited to 108 bytes: a short directory.
	run, err := os.MkdirTemp("", "tc")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "arrow.sock")
	env := append(os.Environ(), "ARROW_ROOT="+root, "ARROW_SOCKET="+sock)
	before := qemuProcesses(t)
	var log bytes.Buffer
	cmd := exec.Command(arrow, "daemon")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rm := exec.Command(arrow, "ps", "-a", "-q")
		rm.Env = env
		if out, err := rm.Output(); err == nil {
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				kill := exec.Command(arrow, append([]string{"rm", "-f"}, ids...)...)
				kill.Env = env
				_ = kill.Run()
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		assertNoNewQEMU(t, before)
		os.RemoveAll(run)
		if t.Failed() {
			t.Logf("arrowd log:\n%s", log.String())
		}
	})
	docker := filepath.Join(run, "docker.sock")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", docker)
		if err == nil {
			c.Close()
			return docker
		}
		if time.Now().After(deadline) {
			t.Fatalf("arrowd serves no %s: %v\n%s", docker, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// qemuProcesses lists the PIDs of this test's QEMU processes.
func qemuProcesses(t *testing.T) map[string]bool {
	t.Helper()
	pids := map[string]bool{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "qemu-system") {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), []byte(marker+"\x00")) {
			pids[e.Name()] = true
		}
	}
	return pids
}

// assertNoNewQEMU fails when a QEMU of this test outlived it (give the
// kernel a moment to reap one that is exiting).
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
		var n int
		fmt.Sscan(pid, &n)
		_ = syscall.Kill(n, syscall.SIGKILL)
	}
	t.Errorf("QEMU processes left behind: %v", extra)
}
