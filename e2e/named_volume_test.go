package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// seedLayer puts content at /srv/data with owners and modes of its own:
// what a named volume mounted there starts with.
func seedLayer(t *testing.T) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []struct {
		hdr  tar.Header
		body string
	}{
		{tar.Header{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "srv/data/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1001}, ""},
		{tar.Header{Name: "srv/data/seed", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1001}, "seeded by the image\n"},
		{tar.Header{Name: "srv/data/sub/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1001}, ""},
	} {
		h.hdr.Size = int64(len(h.body))
		if err := tw.WriteHeader(&h.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(h.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestNamedVolumes: -v NAME:/path mounts a named volume, created and
// populated from the image's content there (owners and modes kept) on
// first use; what one arrow writes a new arrow reads after the first is
// removed; rm is refused while an arrow names it (running or not) or a
// VM mounts it; prune removes the unused ones.
func TestNamedVolumes(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	layout := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}}, busyboxLayer(t), seedLayer(t))
	d.must("image", "import", "--name", "seeded", layout)

	// First use, in the foreground: created, populated from the image.
	r := d.arrow("run", "-v", "appdata:/srv/data", "seeded", "/bin/sh", "-c",
		"ls -lnd /srv/data /srv/data/seed /srv/data/sub | while read m l u g rest; do echo $m $u $g; done; cat /srv/data/seed; rm /srv/data/seed; echo first > /srv/data/written; sync")
	want := "drwxr-x--- 1000 1001\n-rw-r----- 1000 1001\ndrwx------ 1000 1001\nseeded by the image\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("first run: exit %d\nstdout %q\nwant   %q\nstderr %s", r.code, r.stdout, want, r.stderr)
	}
	// Not populated again: the volume is not empty.
	r = d.arrow("run", "-v", "appdata:/srv/data", "seeded", "/bin/sh", "-c", "ls /srv/data; cat /srv/data/written")
	if r.code != 0 || r.stdout != "sub\nwritten\nfirst\n" {
		t.Fatalf("second run: exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	var vols []api.VolumeInfo
	if err := json.Unmarshal([]byte(d.must("volume", "inspect", "appdata")), &vols); err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].Size != int64(len("first\n")) || vols[0].InUse {
		t.Errorf("inspect: %+v", vols)
	}
	if out := d.must("volume", "ls"); !strings.Contains(out, "appdata") || !strings.Contains(out, "6 B") {
		t.Errorf("volume ls:\n%s", out)
	}

	// A detached arrow names pgv: rm is refused while it runs, and while
	// it exists stopped; a new arrow reads its data after it is removed.
	d.must("run", "-d", "--name", "writer", "-v", "pgv:/data", "seeded", "/bin/sh", "-c",
		"echo kept > /data/x; sync; echo ready; /bin/busybox sleep 600")
	d.waitFor("writer", time.Minute, "its output", func(a api.Arrow) bool {
		b, _ := os.ReadFile(a.LogPath)
		return strings.Contains(string(b), "ready")
	})
	for _, state := range []string{"running", "stopped"} {
		r = d.arrow("volume", "rm", "pgv")
		if r.code != 125 || !strings.Contains(r.stderr, "volume is in use") || !strings.Contains(r.stderr, d.inspect("writer").ID) {
			t.Errorf("volume rm while the arrow is %s: exit %d %s", state, r.code, r.stderr)
		}
		if state == "running" {
			d.must("stop", "-t", "1", "writer")
		}
	}
	d.must("rm", "writer")
	r = d.arrow("run", "-v", "pgv:/data", "seeded", "/bin/cat", "/data/x")
	if r.code != 0 || r.stdout != "kept\n" {
		t.Fatalf("new arrow on the volume: exit %d %q %s", r.code, r.stdout, r.stderr)
	}

	// A foreground run holds its volume: rm is refused while its VM
	// runs.
	held := exec.Command(arrowBin, "run", "-v", "held:/data", "seeded", "/bin/sh", "-c", "echo up; /bin/busybox sleep 600")
	held.Env = append(os.Environ(), d.env...)
	stdout, err := held.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { held.Process.Kill(); held.Wait() }()
	line := make([]byte, 3)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "up\n" {
		t.Fatalf("held run: %q %v", line, err)
	}
	r = d.arrow("volume", "rm", "held")
	if r.code != 125 || !strings.Contains(r.stderr, "a running VM mounts it") {
		t.Errorf("volume rm of a mounted volume: exit %d %s", r.code, r.stderr)
	}
	held.Process.Signal(os.Interrupt)
	held.Wait()

	// Prune: the unused go, with their content.
	d.must("volume", "create", "unused")
	d.must("run", "-d", "--name", "keeper", "-v", "kept:/data", "seeded", "/bin/true")
	out := d.must("volume", "prune")
	for _, n := range []string{"unused", "held", "appdata", "pgv"} {
		if !strings.Contains(out, n+"\n") {
			t.Errorf("prune did not remove %s: %q", n, out)
		}
	}
	if ls := d.must("volume", "ls"); strings.Contains(ls, "unused") || !strings.Contains(ls, "kept") {
		t.Errorf("after prune:\n%s", ls)
	}
	d.must("rm", "-f", "keeper")
	d.must("volume", "rm", "kept")
	if r := d.arrow("volume", "inspect", "kept"); r.code != 125 || !strings.Contains(r.stderr, "no such volume") {
		t.Errorf("inspect after rm: %d %s", r.code, r.stderr)
	}
	if r := d.arrow("volume", "create", "-bad"); r.code != 125 {
		t.Errorf("create -bad: %d %s", r.code, r.stderr)
	}
}
