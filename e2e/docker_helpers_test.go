package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/e2e/fixture"
)

// The Docker Engine API's tests (issue 14) drive a test's own arrowd with
// the unmodified clients: the docker CLI, docker-py, Debian's
// docker-compose and testcontainers-go (a module of its own, in
// testcontainers/).

// dockerCLI is the real docker CLI (28.x): the machine's image ships it.
const dockerCLI = "/usr/local/bin/docker"

// busyboxTag names the test image, loaded from a `docker save` tarball.
const busyboxTag = "arrow-e2e/busybox:1"

// dockerSocket is the Docker Engine API socket arrowd serves beside its own
// (the default of --docker-socket).
func dockerSocket(d *testDaemon) string {
	return filepath.Join(filepath.Dir(d.socket), "docker.sock")
}

// dockerConfigs holds each daemon's DOCKER_CONFIG directory: a fresh one,
// so that no user's configuration (contexts, credential helpers, a
// DOCKER_HOST of its own) reaches the client.
var dockerConfigs sync.Map

// dockerEnv is the environment a Docker client needs to talk to d: the
// machine's, less what would point it elsewhere, plus d's socket.
func dockerEnv(d *testDaemon) []string {
	dir, ok := dockerConfigs.Load(d)
	if !ok {
		dir = d.t.TempDir()
		dockerConfigs.Store(d, dir)
	}
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"DOCKER_HOST=unix://"+dockerSocket(d),
		"DOCKER_CONFIG="+dir.(string),
		"DOCKER_CLI_HINTS=false",
	)
}

// docker runs the docker CLI against d, bounded by a generous deadline.
func docker(t *testing.T, d *testDaemon, args ...string) result {
	t.Helper()
	return dockerIn(t, d, "", args...)
}

// dockerIn is docker with stdin.
func dockerIn(t *testing.T, d *testDaemon, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, args...)
	cmd.Env = dockerEnv(d)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	_ = cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("docker %q did not finish\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	}
	return r
}

// mustDocker runs the docker CLI and fails the test unless it succeeds.
func mustDocker(t *testing.T, d *testDaemon, args ...string) string {
	t.Helper()
	r := docker(t, d, args...)
	if r.code != 0 {
		t.Fatalf("docker %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// busyboxArchive writes the test image as a `docker save` tarball.
func busyboxArchive(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "busybox.tar")
	if err := fixture.BusyboxArchive(file, busyboxTag); err != nil {
		t.Fatal(err)
	}
	return file
}

// loadBusybox loads the test image into d with `docker load -i`.
func loadBusybox(t *testing.T, d *testDaemon) {
	t.Helper()
	out := mustDocker(t, d, "load", "-i", busyboxArchive(t))
	if !strings.Contains(out, "Loaded image: "+busyboxTag) {
		t.Fatalf("docker load: %q, want it to name %s", out, busyboxTag)
	}
}

// arrowIDs is the set of d's arrows as `arrow ps -a` (the same daemon,
// through its own API) lists them.
func arrowIDs(t *testing.T, d *testDaemon) []string {
	t.Helper()
	var list []api.Arrow
	if err := json.Unmarshal([]byte(d.must("ps", "-a", "--format", "json")), &list); err != nil {
		t.Fatalf("arrow ps --format json: %v", err)
	}
	ids := []string{}
	for _, a := range list {
		ids = append(ids, a.ID)
	}
	sort.Strings(ids)
	return ids
}

// dockerIDs is the set of containers `docker ps -a` lists.
func dockerIDs(t *testing.T, d *testDaemon) []string {
	t.Helper()
	ids := strings.Fields(mustDocker(t, d, "ps", "-a", "-q", "--no-trunc"))
	if ids == nil {
		ids = []string{}
	}
	sort.Strings(ids)
	return ids
}

// httpGet fetches url until it answers 200 (the server in the VM may
// still be starting) or the deadline passes, and returns the body.
func httpGet(t *testing.T, url string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(body)
			}
			err = rerr
			if err == nil {
				err = &httpStatusError{resp.Status}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return "status " + e.status }

// dockerInspect is the part of `docker inspect`'s answer the tests read.
type dockerInspect struct {
	ID    string `json:"Id"`
	Name  string
	Image string
	State struct {
		Status   string
		Running  bool
		Paused   bool
		ExitCode int
		Pid      int
	}
	Config struct {
		Image  string
		Cmd    []string
		Labels map[string]string
		Tty    bool
	}
	HostConfig struct {
		AutoRemove bool
	}
	NetworkSettings struct {
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
	}
}

func inspectContainer(t *testing.T, d *testDaemon, ref string) dockerInspect {
	t.Helper()
	var list []dockerInspect
	out := mustDocker(t, d, "inspect", "--type", "container", ref)
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("docker inspect %s: %v\n%s", ref, err, out)
	}
	return list[0]
}
