package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/arrowsys/arrow/internal/syncbuf"
)

// token is a random word: what a test puts somewhere and expects back, so
// that nothing it checks could come from anywhere else.
func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "tok" + hex.EncodeToString(b)
}

// TestDockerVersion: `docker version` talks to arrowd's Docker socket and
// names Arrow as the server, with an API version the CLI negotiated.
func TestDockerVersion(t *testing.T) {
	d := startDaemon(t)
	var v struct {
		Client struct {
			APIVersion string `json:"ApiVersion"`
		}
		Server struct {
			Platform   struct{ Name string }
			Components []struct{ Name, Version string }
			APIVersion string `json:"ApiVersion"`
		}
	}
	out := mustDocker(t, d, "version", "--format", "{{json .}}")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("docker version: %v\n%s", err, out)
	}
	if !strings.Contains(v.Server.Platform.Name, "Arrow") {
		t.Errorf("server platform %q, want it to name Arrow", v.Server.Platform.Name)
	}
	var arrowComponent bool
	for _, c := range v.Server.Components {
		arrowComponent = arrowComponent || c.Name == "Arrow"
	}
	if !arrowComponent || v.Server.APIVersion == "" {
		t.Errorf("server: %+v, want an Arrow component and an API version", v.Server)
	}
	// The human-readable form, as a user sees it.
	if text := mustDocker(t, d, "version"); !regexp.MustCompile(`(?m)^Server: Arrow`).MatchString(text) {
		t.Errorf("docker version:\n%s\nwant a `Server: Arrow ...` line", text)
	}
}

// TestDockerLoadAndRunAttached: `docker load -i` of a docker-save tarball,
// then an attached `docker run --rm`: the exit status passes through,
// stdout and stderr stay apart, and the container is gone afterwards.
func TestDockerLoadAndRunAttached(t *testing.T) {
	d := startDaemon(t)
	loadBusybox(t, d)
	if out := mustDocker(t, d, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, busyboxTag) {
		t.Fatalf("docker images:\n%s\nwant %s", out, busyboxTag)
	}
	r := docker(t, d, "run", "--rm", busyboxTag, "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 {
		t.Fatalf("docker run: exit %d, want 3\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
	}
	if r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("docker run: stdout %q, stderr %q; want \"out\\n\" and \"err\\n\"", r.stdout, r.stderr)
	}
	// stdin reaches the container with -i, and its EOF too.
	r = dockerIn(t, d, "one\ntwo\n", "run", "--rm", "-i", busyboxTag, "cat")
	if r.code != 0 || r.stdout != "one\ntwo\n" {
		t.Errorf("docker run -i cat: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// --rm: nothing left, by either client.
	if ids := dockerIDs(t, d); len(ids) != 0 {
		t.Errorf("docker ps -a after run --rm: %v", ids)
	}
	if ids := arrowIDs(t, d); len(ids) != 0 {
		t.Errorf("arrow ps -a after docker run --rm: %v", ids)
	}
}

// TestDockerRunDetached is a web server's life through the docker CLI:
// run -d -p, fetched from the host; ps; logs -f; exec; inspect; stop;
// rm -f.
func TestDockerRunDetached(t *testing.T) {
	d := startDaemon(t)
	loadBusybox(t, d)
	page := token(t)
	port := freePort(t)
	// httpd goes to the background (no -f) and the shell prints a line a
	// second: the log grows while `logs -f` follows it.
	// SIGTERM (docker stop) ends it with status 0 and a last line: what
	// stop delivers reaches the application.
	script := fmt.Sprintf(`trap 'echo stopping; exit 0' TERM; echo %s > /www/index.html && httpd -p 80 -h /www && echo serving; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done`, page)
	out := mustDocker(t, d, "run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--label", "e2e=docker", busyboxTag, "sh", "-c", script)
	id := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("docker run -d printed %q, want a container ID", out)
	}

	// The published port answers a real HTTP client on the host.
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), time.Minute); strings.TrimSpace(body) != page {
		t.Errorf("GET the published port: %q, want %q", body, page)
	}

	// ps: the container, its image, its port.
	ps := mustDocker(t, d, "ps", "--no-trunc", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Ports}}|{{.Label \"e2e\"}}|{{.State}}")
	want := fmt.Sprintf("%s|web|%s|127.0.0.1:%d->80/tcp|docker|running", id, busyboxTag, port)
	if strings.TrimSpace(ps) != want {
		t.Errorf("docker ps:\n%s\nwant:\n%s", ps, want)
	}
	if filtered := mustDocker(t, d, "ps", "-q", "--filter", "label=e2e=docker", "--filter", "name=web", "--filter", "status=running"); !strings.HasPrefix(id, strings.TrimSpace(filtered)) || strings.TrimSpace(filtered) == "" {
		t.Errorf("docker ps --filter label,name,status: %q, want %s", filtered, id[:12])
	}

	// logs, then logs -f: following shows ticks printed after it began.
	logs := docker(t, d, "logs", "web")
	if logs.code != 0 || !strings.Contains(logs.stdout, "serving\n") {
		t.Fatalf("docker logs: exit %d\nstdout: %s\nstderr: %s", logs.code, logs.stdout, logs.stderr)
	}
	last := lastTick(logs.stdout)
	followed := followLogs(t, d, "web", last+2)
	if !strings.Contains(followed, "serving\n") {
		t.Errorf("docker logs -f: %q, want the log from its start", followed)
	}

	// exec: output and exit status, stdout and stderr apart.
	r := docker(t, d, "exec", "web", "sh", "-c", "cat /www/index.html; echo oops >&2; exit 4")
	if r.code != 4 || strings.TrimSpace(r.stdout) != page || r.stderr != "oops\n" {
		t.Errorf("docker exec: exit %d, stdout %q, stderr %q; want 4, %q, \"oops\\n\"", r.code, r.stdout, r.stderr, page)
	}
	if r := docker(t, d, "exec", "web", "wget", "-q", "-O-", "http://127.0.0.1/"); r.code != 0 || strings.TrimSpace(r.stdout) != page {
		t.Errorf("docker exec wget: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// inspect: state and ports.
	in := inspectContainer(t, d, "web")
	if in.ID != id || in.Name != "/web" || !in.State.Running || in.State.Status != "running" || in.Config.Image != busyboxTag || in.Config.Labels["e2e"] != "docker" {
		t.Errorf("docker inspect web: %+v", in)
	}
	if b := in.NetworkSettings.Ports["80/tcp"]; len(b) == 0 || b[0].HostPort != strconv.Itoa(port) || b[0].HostIP != "127.0.0.1" {
		t.Errorf("docker inspect web: ports %+v, want 80/tcp on 127.0.0.1:%d", in.NetworkSettings.Ports, port)
	}

	// stop: the shell's trap answers SIGTERM; the container is kept,
	// exited with the shell's status.
	if out := mustDocker(t, d, "stop", "web"); strings.TrimSpace(out) != "web" {
		t.Errorf("docker stop: %q", out)
	}
	in = inspectContainer(t, d, "web")
	if in.State.Running || in.State.Status != "exited" || in.State.ExitCode != 0 {
		t.Errorf("after docker stop: state %+v, want exited with status 0 (the trap's)", in.State)
	}
	if logs := mustDocker(t, d, "logs", "--tail", "1", "web"); logs != "stopping\n" {
		t.Errorf("docker logs --tail 1 after stop: %q, want the trap's line", logs)
	}
	if ps := mustDocker(t, d, "ps", "-q"); strings.TrimSpace(ps) != "" {
		t.Errorf("docker ps after stop: %q", ps)
	}
	if ids := dockerIDs(t, d); len(ids) != 1 || ids[0] != id {
		t.Errorf("docker ps -a after stop: %v, want [%s]", ids, id)
	}
	if a := d.inspect(id); a.State != "exited" {
		t.Errorf("arrow inspect after docker stop: %s", a.State)
	}

	// rm -f: gone, for both clients.
	if out := mustDocker(t, d, "rm", "-f", "web"); strings.TrimSpace(out) != "web" {
		t.Errorf("docker rm -f: %q", out)
	}
	if ids := dockerIDs(t, d); len(ids) != 0 {
		t.Errorf("docker ps -a after rm -f: %v", ids)
	}
	if ids := arrowIDs(t, d); len(ids) != 0 {
		t.Errorf("arrow ps -a after docker rm -f: %v", ids)
	}
}

var tickLine = regexp.MustCompile(`(?m)^tick (\d+)$`)

// lastTick is the highest tick number in a log.
func lastTick(log string) int {
	n := 0
	for _, m := range tickLine.FindAllStringSubmatch(log, -1) {
		if i, _ := strconv.Atoi(m[1]); i > n {
			n = i
		}
	}
	return n
}

// followLogs runs `docker logs -f` until the log shows tick `until`, then
// ends it (a follow never ends by itself while the container runs), and
// returns what it printed. A context bounds it.
func followLogs(t *testing.T, d *testDaemon, ref string, until int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, "logs", "-f", ref)
	cmd.Env = dockerEnv(d)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb syncbuf.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	reached := false
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if m := tickLine.FindStringSubmatch(sc.Text()); m != nil {
			if i, _ := strconv.Atoi(m[1]); i >= until {
				reached = true
				break
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if !reached {
		t.Fatalf("docker logs -f ended (or timed out: %v) before tick %d\nstdout: %s\nstderr: %s", ctx.Err(), until, seen.String(), errb.String())
	}
	return seen.String()
}

// TestDockerRunTerminal: `docker run -it` on a terminal: the container
// sees a terminal of the host's size on its stdin, and what is typed on
// the host reaches it.
func TestDockerRunTerminal(t *testing.T) {
	d := startDaemon(t)
	loadBusybox(t, d)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 37, Cols: 111}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	word := token(t)
	cmd := exec.CommandContext(ctx, dockerCLI, "run", "--rm", "-it", busyboxTag, "sh", "-c",
		`if [ -t 0 ]; then echo "stdin: tty"; else echo "stdin: no tty"; fi; echo "size: $(stty size)"; echo ready; read line; echo "got: $line"; exit 5`)
	cmd.Env = dockerEnv(d)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var seen syncbuf.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			_, _ = seen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	waitSeen := func(what string) {
		t.Helper()
		for !strings.Contains(seen.String(), what) {
			if ctx.Err() != nil {
				t.Fatalf("terminal: no %q; saw %q", what, seen.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSeen("ready")
	if _, err := ptmx.Write([]byte(word + "\r")); err != nil {
		t.Fatal(err)
	}
	waitSeen("got: " + word)
	code := waitExit(t, cmd, time.Minute)
	out := seen.String()
	if !strings.Contains(out, "stdin: tty") {
		t.Errorf("the container's stdin is not a terminal: %q", out)
	}
	if !strings.Contains(out, "size: 37 111") {
		t.Errorf("the container's terminal is not the host's size (37 111): %q", out)
	}
	// A terminal echoes what is typed, and ends lines with \r\n: the
	// stream is raw, not multiplexed frames.
	if !strings.Contains(out, word+"\r\n") {
		t.Errorf("the typed line was not echoed by the container's terminal: %q", out)
	}
	if code != 5 {
		t.Errorf("docker run -it: exit %d, want 5; output %q", code, out)
	}
}

// TestDockerPsMatchesArrowPs: every container is an arrow and every arrow
// a container: `docker ps` and `arrow ps` of one daemon list the same set,
// whichever client made them.
func TestDockerPsMatchesArrowPs(t *testing.T) {
	d := startDaemon(t)
	loadBusybox(t, d)
	mustDocker(t, d, "run", "-d", "--name", "by-docker", busyboxTag, "sleep", "600")
	mustDocker(t, d, "create", "--name", "created", busyboxTag, "true")
	mustDocker(t, d, "run", "-d", "--name", "exited", busyboxTag, "sh", "-c", "exit 6")
	if out := mustDocker(t, d, "wait", "exited"); strings.TrimSpace(out) != "6" {
		t.Errorf("docker wait exited: %q, want 6", out)
	}
	d.must("run", "-d", "--name", "by-arrow", busyboxTag, "sleep", "600")

	dIDs, aIDs := dockerIDs(t, d), arrowIDs(t, d)
	if len(dIDs) != 4 || strings.Join(dIDs, " ") != strings.Join(aIDs, " ") {
		t.Errorf("docker ps -a: %v\narrow ps -a: %v\nwant the same 4", dIDs, aIDs)
	}
	names := strings.Fields(mustDocker(t, d, "ps", "--format", "{{.Names}}"))
	if strings.Join(slices.Sorted(slices.Values(names)), " ") != "by-arrow by-docker" {
		t.Errorf("docker ps (running): %v, want by-arrow and by-docker", names)
	}
	// The arrow made by arrow run is a container like the others.
	if in := inspectContainer(t, d, "by-arrow"); !in.State.Running || in.Config.Image != busyboxTag {
		t.Errorf("docker inspect by-arrow: %+v", in)
	}
	mustDocker(t, d, "rm", "-f", "by-docker", "by-arrow", "created", "exited")
	if dIDs, aIDs := dockerIDs(t, d), arrowIDs(t, d); len(dIDs)+len(aIDs) != 0 {
		t.Errorf("after docker rm -f: docker %v, arrow %v", dIDs, aIDs)
	}
}

// TestDockerBuildRefused: `docker build` is out of scope, and says so in
// Docker's error shape, naming the way in (build elsewhere, then docker
// load or a registry) rather than failing obscurely or succeeding.
func TestDockerBuildRefused(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY Dockerfile /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The legacy builder's API (POST /build): BuildKit would need a
	// buildx plugin this CLI does not have.
	r := docker(t, d, "build", "-t", "refused:1", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "docker load") {
		t.Errorf("docker build: exit %d, stderr %q; want a failure naming docker load", r.code, r.stderr)
	}
	if out := mustDocker(t, d, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("docker ps -a after a refused build: %q", out)
	}
}
