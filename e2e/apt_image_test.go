package e2e

import (
	"context"
	"fmt"
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

// TestImageBuildAptPostgres is PostgreSQL as a user who does not have it
// gets it: an image of Debian's postgresql package, whose maintainer
// scripts made the default cluster; its cluster unit (postgresql@15-main,
// a template instance) run from the image on a named volume, reached with
// psql and pgbench; a password set through arrow exec; and the data kept
// across arrow rm and a new arrow on the same volume.
func TestImageBuildAptPostgres(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	t0 := time.Now()
	// Longer than arrow()'s deadline: about 3 minutes when the machine
	// is idle, more under load.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, arrowBin, "image", "build", "--apt", "postgresql", "--name", "pg")
	build.Env = append(os.Environ(), d.env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("build: %v", time.Since(t0).Round(time.Second))
	r := arrow(t, "", "--root", d.root, "run", "pg", "/bin/sh", "-c",
		"cat /var/lib/postgresql/15/main/PG_VERSION; stat -c '%U %a' /var/lib/postgresql/15/main; test -f /etc/postgresql/15/main/postgresql.conf && echo conf")
	if r.code != 0 || r.stdout != "15\npostgres 700\nconf\n" {
		t.Fatalf("the cluster in the image: exit %d %q\n%s", r.code, r.stdout, r.stderr)
	}

	// The cluster's unit, its data on a named volume the image fills.
	serve := func(name string) int {
		port := freePort(t)
		t0 := time.Now()
		d.must("run", "-d", "--name", name, "-m", "512M", "--service", "postgresql@15-main",
			"-v", "pgdata:/var/lib/postgresql", "-p", fmt.Sprintf("127.0.0.1:%d:5432", port), "pg")
		t.Logf("run -d --service postgresql@15-main: ready in %v", time.Since(t0).Round(time.Millisecond))
		return port
	}
	client := func(port int, prog string, args ...string) string {
		t.Helper()
		cmd := exec.Command(prog, args...)
		cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", port), "PGUSER=postgres",
			"PGDATABASE=postgres", "PGPASSWORD=in-a-microvm", "PGCONNECT_TIMEOUT=30")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s\narrow logs:\n%s", prog, args, err, out, d.arrow("logs", "pg").stdout)
		}
		return strings.TrimSpace(string(out))
	}
	port := serve("pg")
	// Debian's pg_hba.conf asks TCP clients for a password: set one from
	// inside, over the local socket, as the postgres user (peer).
	d.must("exec", "-u", "postgres", "pg", "psql", "-c", "ALTER USER postgres PASSWORD 'in-a-microvm'")
	if got := client(port, "psql", "-tAc", "SHOW server_version"); !strings.HasPrefix(got, "15.") {
		t.Fatalf("server_version %q", got)
	}
	client(port, "psql", "-c", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives arrow rm')")
	client(port, "pgbench", "-i", "-s", "1", "-q")
	out := client(port, "pgbench", "-c", "2", "-t", "50")
	if !strings.Contains(out, "number of transactions actually processed: 100/100") {
		t.Fatalf("pgbench:\n%s", out)
	}
	t.Logf("pgbench -c 2 -t 50: %s", lastLine(out))

	// The data outlives the arrow; the volume outlives both, and is kept
	// while an arrow names it.
	d.must("rm", "-f", "pg")
	port = serve("pg")
	if got := client(port, "psql", "-tAc", "SELECT v FROM kept"); got != "survives arrow rm" {
		t.Errorf("after arrow rm and a new arrow: %q", got)
	}
	if got := client(port, "psql", "-tAc", "SELECT count(*) FROM pgbench_accounts"); got != "100000" {
		t.Errorf("pgbench_accounts rows: %q", got)
	}
	if r := d.arrow("volume", "rm", "pgdata"); r.code == 0 {
		t.Errorf("volume rm of a volume in use succeeded")
	}
	d.must("rm", "-f", "pg")
	d.must("volume", "rm", "pgdata")
}

// lastLine is s's last non-empty line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
