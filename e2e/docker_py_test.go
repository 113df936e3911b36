package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDockerPy drives a container's lifecycle with docker-py, unmodified
// (testdata/docker/lifecycle.py): images.load, an attached run,
// containers.run detached with a published port, logs, exec_run,
// reload/status, stop, remove. The script asserts each step and prints
// "lifecycle ok" last.
func TestDockerPy(t *testing.T) {
	// The machine's python3 is the one docker-py 7.1.0 is installed for
	// (pip), not Debian's /usr/bin/python3, whose python3-docker 5.0.3
	// (docker-compose's) is another version.
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t)
	script, err := filepath.Abs("testdata/docker/lifecycle.py")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Env = append(dockerEnv(d),
		"ARCHIVE="+busyboxArchive(t),
		"TAG="+busyboxTag,
		"PORT="+strconv.Itoa(freePort(t)),
		"PAGE="+token(t),
		"PYTHONUNBUFFERED=1",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("lifecycle.py:\n%s", out.String())
	if ctx.Err() != nil {
		t.Fatal("lifecycle.py did not finish")
	}
	if err != nil {
		t.Fatalf("lifecycle.py: %v", err)
	}
	if !strings.Contains(out.String(), "docker-py 7.") || !strings.HasSuffix(out.String(), "lifecycle ok\n") {
		t.Errorf("lifecycle.py printed %q: want docker-py 7.x and \"lifecycle ok\" last", out.String())
	}
	// What the script removed is gone from the daemon too.
	if ids := arrowIDs(t, d); len(ids) != 0 {
		t.Errorf("arrow ps -a after the script: %v", ids)
	}
}
