package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// serviceRoot makes a root file system directory with busybox and units
// (name: content) in its /lib/systemd/system, for services of the tests'
// own; Debian's are the host's.
func serviceRoot(t *testing.T, units map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", "lib/systemd/system", "www", "etc", "tmp", "run", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "kill", "sleep", "cat", "false", "true", "httpd", "ls", "id"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range units {
		if err := os.WriteFile(filepath.Join(dir, "lib/systemd/system", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// webUnit is a forking service: its ExecStart= starts busybox's httpd in
// the background, writes its PID file and exits, as a daemon that forks
// does. ExecStartPre= (one failing, ignored) writes the page it serves;
// ExecStop= says it ran, with $MAINPID, before it stops the daemon.
const webUnit = `[Unit]
Description=A forking web server of the tests
After=network.target

[Service]
Type=forking
PIDFile=/run/web/web.pid
RuntimeDirectory=web
RuntimeDirectoryMode=0750
StateDirectory=web
Environment="GREETING=served by a forking daemon"
ExecStartPre=-/bin/false
ExecStartPre=/bin/sh -c 'echo "$GREETING" > /www/index.html; ls -ld /run/web $STATE_DIRECTORY'
ExecStart=/bin/sh -c '/bin/busybox httpd -f -p 8080 -h /www & echo $! > /run/web/web.pid'
ExecStop=/bin/sh -c 'echo "ExecStop ran for $MAINPID"; kill $MAINPID'
TimeoutStopSec=5
PrivateTmp=true
ProtectSystem=strict
NoNewPrivileges=true
Restart=on-failure

[Install]
WantedBy=multi-user.target
`

// TestServiceForking runs a forking unit detached: arrowd waits for its
// PID file, the daemon behind it serves through -p, and arrow stop runs
// ExecStop= with $MAINPID.
func TestServiceForking(t *testing.T) {
	d := startDaemon(t)
	root := serviceRoot(t, map[string]string{"web.service": webUnit})
	port := freePort(t)
	d.must("run", "-d", "--name", "web", "--rootfs", root, "--service", "web", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port))
	if a := d.inspect("web"); a.Health != "healthy" {
		t.Errorf("health %q right after run -d, want healthy", a.Health)
	}
	out, err := exec.Command("curl", "-sS", "--max-time", "10", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "served by a forking daemon" {
		t.Fatalf("curl: %v: %q", err, out)
	}
	t0 := time.Now()
	d.must("stop", "web")
	t.Logf("stop took %v", time.Since(t0))
	logs := d.must("logs", "web")
	if !regexp.MustCompile(`ExecStop ran for [0-9]+\n`).MatchString(logs) {
		t.Errorf("ExecStop= did not run with $MAINPID; logs:\n%s", logs)
	}
	// RuntimeDirectoryMode= and StateDirectory= (its variable too).
	if !regexp.MustCompile(`drwxr-x---\s.*/run/web`).MatchString(logs) || !strings.Contains(logs, "/var/lib/web") {
		t.Errorf("service directories; logs:\n%s", logs)
	}
}

// TestServiceOneshot runs oneshot units in the foreground: the arrow ends
// with the service's status; a failing ExecStartPre= without '-' ends it
// with that command's status before ExecStart= runs.
func TestServiceOneshot(t *testing.T) {
	root := serviceRoot(t, map[string]string{
		"once.service": "[Service]\nType=oneshot\nEnvironment=WORD=first\nExecStart=/bin/echo $WORD ${WORD}-braced\nExecStart=/bin/sh -c 'echo second; exit 3'\n",
		"pre.service":  "[Service]\nType=oneshot\nExecStartPre=/bin/sh -c 'echo pre; exit 4'\nExecStart=/bin/echo never\n",
		"ids.service":  "[Service]\nType=oneshot\nUser=1000\nGroup=1000\nSupplementaryGroups=4 7\nUMask=0077\nExecStart=/bin/sh -c 'id -u; id -G; umask'\nExecStart=+/bin/id -u\n",
	})
	r := arrow(t, "", "run", "--rootfs", root, "--service", "once")
	if r.code != 3 || r.stdout != "first first-braced\nsecond\n" {
		t.Errorf("once: exit %d, stdout %q, stderr %s; want 3 and both commands' output", r.code, r.stdout, r.stderr)
	}
	// User=, Group=, SupplementaryGroups=, UMask=, and '+' (root).
	r = arrow(t, "", "run", "--rootfs", root, "--service", "ids")
	if r.code != 0 || r.stdout != "1000\n1000 4 7\n0077\n0\n" {
		t.Errorf("ids: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	r = arrow(t, "", "run", "--rootfs", root, "--service", "pre.service")
	if r.code != 4 || r.stdout != "pre\n" {
		t.Errorf("pre: exit %d, stdout %q, stderr %s; want 4 and only pre's output", r.code, r.stdout, r.stderr)
	}
}

// TestServiceRefused: a directive that changes what a service does and
// that Arrow does not support fails the run with its name, before any VM
// starts; a masked or missing unit too.
func TestServiceRefused(t *testing.T) {
	root := serviceRoot(t, map[string]string{
		"dyn.service": "[Service]\nExecStart=/bin/true\nDynamicUser=yes\n",
	})
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system/masked.service")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ unit, want string }{
		{"dyn", "DynamicUser= is not supported"},
		{"masked", "masked"},
		{"missing", "not found"},
	} {
		before := qemuProcesses(t)
		r := arrow(t, "", "run", "--rootfs", root, "--service", tt.unit)
		if r.code != 125 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 125 and %q", tt.unit, r.code, r.stderr, tt.want)
		}
		assertNoNewQEMU(t, before)
	}
}

// TestServiceImage runs a unit from inside an image: a template instance
// found through the image's /lib -> usr/lib link, with a drop-in from its
// /etc, its User= and SupplementaryGroups= looked up in the image's
// /etc/passwd and /etc/group.
func TestServiceImage(t *testing.T) {
	root := t.TempDir()
	mustKernelRoot(t, root)
	units := tarLayer(t, [][2]string{
		{"lib", "->usr/lib"},
		{"usr/", ""}, {"usr/lib/", ""}, {"usr/lib/systemd/", ""}, {"usr/lib/systemd/system/", ""},
		{"usr/lib/systemd/system/greet@.service", "[Unit]\nDescription=Greets %I\n[Service]\nType=oneshot\nUser=app\nExecStart=/bin/sh -c 'echo %i $WHO; id -u; id -G'\nProtectSystem=full\n"},
		{"etc/systemd/", ""}, {"etc/systemd/system/", ""}, {"etc/systemd/system/greet@.service.d/", ""},
		{"etc/systemd/system/greet@.service.d/who.conf", "[Service]\nEnvironment=WHO=from-a-drop-in\nSupplementaryGroups=staff\n"},
		{"etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n"},
		{"etc/group", "root:x:0:\napp:x:1234:\nstaff:x:50:\n"},
	})
	dir := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}}, busyboxLayer(t), units)
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "greeter", dir); r.code != 0 {
		t.Fatalf("import: %d %s", r.code, r.stderr)
	}
	r := arrow(t, "", "--root", root, "run", "--service", "greet@world", "greeter")
	if r.code != 0 || r.stdout != "world from-a-drop-in\n1234\n1234 50\n" {
		t.Errorf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	// The service names what runs: an argument after the image is refused.
	if r := arrow(t, "", "--root", root, "run", "--service", "greet@world", "greeter", "/bin/true"); r.code != 125 {
		t.Errorf("extra argument: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestServiceTmpfilesRootFS: a unit of a root file system gets the
// directories of that root's tmpfiles.d files, with their modes and
// owners (names from its /etc/passwd and /etc/group); /etc/tmpfiles.d
// masks a file by name; --debug lists the lines not run.
func TestServiceTmpfilesRootFS(t *testing.T) {
	root := serviceRoot(t, map[string]string{
		"tmp.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'ls -ldn /run/app /var/lib/app/cache; test -e /run/masked || echo masked'\n",
	})
	for p, c := range map[string]string{
		"etc/passwd":                   "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/var/lib/app:/bin/sh\n",
		"etc/group":                    "root:x:0:\napp:x:1001:\n",
		"usr/lib/tmpfiles.d/app.conf":  "# app's directories\nd /run/app 0750 app app -\nD %S/app/cache 0700 app -\nL /run/link - - - - /x\n",
		"usr/lib/tmpfiles.d/mask.conf": "d /run/masked\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/tmpfiles.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(root, "etc/tmpfiles.d/mask.conf")); err != nil {
		t.Fatal(err)
	}
	r := arrow(t, "", "run", "--debug", "--rootfs", root, "--service", "tmp")
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`drwxr-x---\s+\d+\s+1000\s+1001\s.*/run/app\n`).MatchString(r.stdout) ||
		!regexp.MustCompile(`drwx------\s+\d+\s+1000\s+0\s.*/var/lib/app/cache\n`).MatchString(r.stdout) ||
		!strings.HasSuffix(r.stdout, "masked\n") {
		t.Errorf("directories:\n%s", r.stdout)
	}
	for _, want := range []string{"tmpfiles.d /usr/lib/tmpfiles.d/app.conf\n", "app.conf:4: L /run/link: ignored", "mask.conf: masked"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--debug does not say %q:\n%s", want, r.stderr)
		}
	}
}
