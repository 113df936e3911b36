package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageBuildApt builds an image of a Debian package with mmdebstrap
// from the host's apt sources, runs the package's program in it, builds
// the same list again from the cache, and asks for a package that does
// not exist.
func TestImageBuildApt(t *testing.T) {
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	t0 := time.Now()
	r := arrow(t, "", "--root", root, "image", "build", "--apt", "hello", "--name", "hello-img")
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, "I: installing remaining packages inside the chroot") || !strings.Contains(r.stderr, "arrow: built hello-img") {
		t.Errorf("no progress on stderr:\n%s", r.stderr)
	}
	t.Logf("first build: %v", time.Since(t0).Round(time.Second))

	// The package's program, found through the image's PATH.
	r = arrow(t, "", "--root", root, "run", "--kernel", kernel, "hello-img", "hello")
	if r.code != 0 || r.stdout != "Hello, world!\n" {
		t.Fatalf("run hello: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}

	// Cached: the same image, named at once, and said so.
	t0 = time.Now()
	r = arrow(t, "", "--root", root, "image", "build", "--apt", "hello", "--name", "hello-again")
	if r.code != 0 || strings.TrimSpace(r.stdout) != id || !strings.Contains(r.stderr, "cached") {
		t.Fatalf("second build: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("cached build took %v", d)
	}
	ls := arrow(t, "", "--root", root, "image", "ls").stdout
	if !strings.Contains(ls, "hello-img") || !strings.Contains(ls, "hello-again") {
		t.Errorf("image ls:\n%s", ls)
	}

	// Bad input: clear errors, distinct statuses, nothing left behind.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--apt", "Hello", "--name", "x"}, 125, "a Debian package name is"},
		{[]string{"--apt", "hello", "--suite", "Bad/Suite", "--name", "x"}, 125, "suite"},
		{[]string{"--apt", "hello"}, 125, "--name are required"},
		{[]string{"--apt", "no-such-package-arrow", "--name", "x"}, 127, "no such package in bookworm: no-such-package-arrow"},
	} {
		r := arrow(t, "", append([]string{"--root", root, "image", "build"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("build %q: exit %d, want %d with %q\n%s", tc.args, r.code, tc.code, tc.want, r.stderr)
		}
	}
	if out := arrow(t, "", "--root", root, "image", "ls").stdout; strings.Contains(out, "\nx ") {
		t.Errorf("a failed build left an image:\n%s", out)
	}
	// Only the cache's records stay in apt/: no build directory, and
	// nothing mounted under the data root.
	ents, err := os.ReadDir(filepath.Join(root, "apt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			t.Errorf("left in apt/: %s", e.Name())
		}
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), root) {
		t.Errorf("mounts left under %s", root)
	}
}

// TestImageBuildAptPostgres: postgresql's maintainer scripts ran in the
// build, so its default cluster is in the image; a named volume mounted
// on /var/lib/postgresql starts with it, owned by postgres.
func TestImageBuildAptPostgres(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	t0 := time.Now()
	// Longer than arrow()'s deadline: about 3 minutes when the machine
	// is idle, more under load.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, arrowBin, "--root", root, "image", "build", "--apt", "postgresql", "--name", "pg")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("build: %v", time.Since(t0).Round(time.Second))
	r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "pg", "/bin/sh", "-c",
		"cat /var/lib/postgresql/15/main/PG_VERSION; stat -c '%U %a' /var/lib/postgresql/15/main; test -f /etc/postgresql/15/main/postgresql.conf && echo conf")
	if r.code != 0 || r.stdout != "15\npostgres 700\nconf\n" {
		t.Fatalf("the cluster in the image: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
	r = arrow(t, "", "--root", root, "run", "--kernel", kernel, "-v", "pgdata:/var/lib/postgresql", "pg", "/bin/sh", "-c",
		"stat -c '%U %a' /var/lib/postgresql/15/main; echo kept > /var/lib/postgresql/mark; sync")
	if r.code != 0 || r.stdout != "postgres 700\n" {
		t.Fatalf("the cluster in a named volume: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
	r = arrow(t, "", "--root", root, "run", "--kernel", kernel, "-v", "pgdata:/var/lib/postgresql", "pg", "/bin/cat", "/var/lib/postgresql/mark")
	if r.code != 0 || r.stdout != "kept\n" {
		t.Fatalf("a second arrow on the volume: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}
}
