package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dockerCompose is Debian's docker-compose 1.29.2 (setup.sh installs it):
// Python, on Debian's python3-docker, speaking an older API version than
// the docker CLI.
const dockerCompose = "/usr/bin/docker-compose"

// TestDockerCompose brings up a two-service project
// (testdata/docker/compose): web, a busybox httpd serving a page from a
// named volume, and client, which fetches http://web/ by the service's
// name on the project's network and prints it. up -d, ps and logs show it
// worked; down -v leaves no arrow, network or volume. Compose needs bridge
// networks, so the test runs its arrowd in a network namespace of its own
// (beside the host's arrowd and its networks).
func TestDockerCompose(t *testing.T) {
	if !inNetns(t) {
		return
	}
	d := startDaemon(t)
	loadBusybox(t, d)
	dir, err := filepath.Abs("testdata/docker/compose")
	if err != nil {
		t.Fatal(err)
	}
	project := "e2e" + token(t)[3:11]
	page := token(t)
	compose := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, dockerCompose, append([]string{"--ansi", "never", "-p", project, "-f", filepath.Join(dir, "docker-compose.yml")}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(dockerEnv(d), "IMAGE="+busyboxTag, "PAGE="+page)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
		if ctx.Err() != nil || r.code != 0 {
			t.Fatalf("docker-compose %q: exit %d (%v)\nstdout: %s\nstderr: %s", args, r.code, ctx.Err(), r.stdout, r.stderr)
		}
		return r
	}
	// Whatever happens, take the project down (the daemon's cleanup
	// removes arrows, not networks or volumes).
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(dockerCompose, "--ansi", "never", "-p", project, "-f", filepath.Join(dir, "docker-compose.yml"), "down", "-v")
			cmd.Dir, cmd.Env = dir, append(dockerEnv(d), "IMAGE="+busyboxTag, "PAGE="+page)
			_ = cmd.Run()
		}
	})

	compose("up", "-d")
	// The client ends once it got the page: wait for it with the docker
	// CLI (compose 1.29 has no wait).
	clientID := strings.TrimSpace(compose("ps", "-q", "client").stdout)
	webID := strings.TrimSpace(compose("ps", "-q", "web").stdout)
	if clientID == "" || webID == "" {
		t.Fatalf("docker-compose ps -q: client %q, web %q", clientID, webID)
	}
	if out := mustDocker(t, d, "wait", clientID); strings.TrimSpace(out) != "0" {
		t.Errorf("docker wait client: %q, want 0", out)
	}

	ps := compose("ps").stdout
	var webUp, clientDone bool
	for _, line := range strings.Split(ps, "\n") {
		webUp = webUp || strings.HasPrefix(line, project+"_web_1 ") && strings.Contains(line, " Up")
		clientDone = clientDone || strings.HasPrefix(line, project+"_client_1 ") && strings.Contains(line, "Exit 0")
	}
	if !webUp || !clientDone {
		t.Errorf("docker-compose ps:\n%s\nwant %s_web_1 Up and %s_client_1 Exit 0", ps, project, project)
	}

	logs := compose("logs", "--no-color").stdout
	if !strings.Contains(logs, "client got: "+page) {
		t.Errorf("docker-compose logs:\n%s\nwant the client to print the page %q", logs, page)
	}
	if !strings.Contains(logs, "web ready") {
		t.Errorf("docker-compose logs:\n%s\nwant web's line", logs)
	}

	// The project's network and volume exist, as arrowd's own.
	if ls := d.must("network", "ls"); !strings.Contains(ls, project+"_default") {
		t.Errorf("arrow network ls while up:\n%s\nwant %s_default", ls, project)
	}
	if ls := d.must("volume", "ls"); !strings.Contains(ls, project+"_www") {
		t.Errorf("arrow volume ls while up:\n%s\nwant %s_www", ls, project)
	}
	if ids, want := arrowIDs(t, d), []string{clientID, webID}; len(ids) != 2 || !(ids[0] == want[0] && ids[1] == want[1] || ids[0] == want[1] && ids[1] == want[0]) {
		t.Errorf("arrow ps -a while up: %v, want the two services %v", ids, want)
	}

	compose("down", "-v")
	if ids := arrowIDs(t, d); len(ids) != 0 {
		t.Errorf("arrow ps -a after down -v: %v", ids)
	}
	if ls := d.must("network", "ls"); strings.Contains(ls, project) {
		t.Errorf("arrow network ls after down -v:\n%s", ls)
	}
	if ls := d.must("volume", "ls"); strings.Contains(ls, project) {
		t.Errorf("arrow volume ls after down -v:\n%s", ls)
	}
	if ls := mustDocker(t, d, "network", "ls", "--format", "{{.Name}}"); strings.Contains(ls, project) {
		t.Errorf("docker network ls after down -v:\n%s", ls)
	}
	if ls := mustDocker(t, d, "volume", "ls", "-q"); strings.Contains(ls, project) {
		t.Errorf("docker volume ls after down -v:\n%s", ls)
	}
}
