package e2e

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClosureNginx: Debian's nginx (setup.sh installs it), run as a host
// program with nothing written by hand, serves its welcome page to curl:
// www-data is in the guest's accounts, /var/log/nginx and /var/lib/nginx
// exist and are writable, and the default site nginx-common's postinst
// enabled is there.
func TestClosureNginx(t *testing.T) {
	hostPort := freePort(t)
	before := qemuProcesses(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, "run", "-p", "127.0.0.1:"+strconv.Itoa(hostPort)+":80",
		"/usr/sbin/nginx", "-g", "daemon off;")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	url := "http://127.0.0.1:" + strconv.Itoa(hostPort) + "/"
	var page string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && page == "" {
		out, err := exec.Command("curl", "-sf", "--max-time", "5", url).Output()
		if err == nil {
			page = string(out)
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited before serving: %v\n%s", err, stderr.String())
		case <-time.After(300 * time.Millisecond):
		}
	}
	if !strings.Contains(page, "Welcome to nginx!") {
		t.Errorf("curl %s: %q, want Debian's welcome page\n%s", url, page, stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("arrow did not stop on SIGTERM\n%s", stderr.String())
	}
	assertNoNewQEMU(t, before)
}

// TestClosurePopen: a host program's guest has /bin/sh, so popen(3) and
// system(3) work: libc's own popen, called through ctypes.
func TestClosurePopen(t *testing.T) {
	prog := `import ctypes
libc = ctypes.CDLL(None)
libc.popen.restype = ctypes.c_void_p
libc.fgets.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
libc.pclose.argtypes = [ctypes.c_void_p]
f = libc.popen(b"echo $((6*7)) from $0", b"r")
buf = ctypes.create_string_buffer(128)
libc.fgets(buf, 128, f)
print(buf.value.decode().strip(), libc.pclose(f) >> 8)
print("system", libc.system(b"exit 7") >> 8)
`
	r := arrow(t, "", "run", python, "-c", prog)
	if r.code != 0 || r.stdout != "42 from sh 0\nsystem 7\n" {
		t.Fatalf("popen in the guest: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestClosureAccounts: a host program runs as a user named as on the
// host, which getpwnam and getpwuid find in the guest; the guest's
// /etc/passwd holds the accounts Arrow's rule keeps and no other person.
func TestClosureAccounts(t *testing.T) {
	redis, err := user.Lookup("redis") // setup.sh installs redis-server
	if err != nil {
		t.Fatal(err)
	}
	r := arrow(t, "", "run", "--user", "redis", "/usr/bin/id")
	want := "uid=" + redis.Uid + "(redis) gid=" + redis.Gid + "(redis) groups=" + redis.Gid + "(redis)\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("id as redis: exit %d, %q, want %q; %s", r.code, r.stdout, want, r.stderr)
	}
	prog := `import pwd, grp, os
print(pwd.getpwnam("www-data").pw_uid, grp.getgrnam("nogroup").gr_gid, pwd.getpwuid(os.getuid()).pw_name)
print(sorted(e.pw_name for e in pwd.getpwall() if 1000 <= e.pw_uid < 65534))
print(os.path.exists("/etc/shadow"), os.path.exists("/etc/gshadow"))
print(set(e.pw_passwd for e in pwd.getpwall()))
`
	r = arrow(t, "", "run", "--user", "nobody", python, "-c", prog)
	if r.code != 0 || r.stdout != "33 65534 nobody\n[]\nFalse False\n{'x'}\n" {
		t.Errorf("accounts in the guest: exit %d, %q; %s", r.code, r.stdout, r.stderr)
	}
	// A user of the host with no name in the guest's rule but the run
	// user's: itself, and no one else of its kind.
	people := peopleOf(t)
	if len(people) == 0 {
		return
	}
	u := people[0]
	r = arrow(t, "", "run", "--user", u.Uid, python, "-c", prog)
	if r.code != 0 || !strings.Contains(r.stdout, " "+u.Username+"\n['"+u.Username+"']\n") {
		t.Errorf("as %s (%s): exit %d, %q; %s", u.Username, u.Uid, r.code, r.stdout, r.stderr)
	}
}

// peopleOf returns the host's users with IDs from 1000: people, whom the
// guest must not list unless one is the run user.
func peopleOf(t *testing.T) []*user.User {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	var out []*user.User
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 {
			continue
		}
		if id, err := strconv.Atoi(f[2]); err == nil && id >= 1000 && id < 65534 {
			out = append(out, &user.User{Uid: f[2], Username: f[0]})
		}
	}
	return out
}

// TestClosureBigCold: PostgreSQL's closure, far larger than an initramfs
// may be in a 256 MiB guest, boots cold with a volume from an erofs root
// disk: initdb (which looks up its user and popen()s /bin/sh) makes a
// cluster in the volume, as the postgres account, and the server then
// serves it to psql.
func TestClosureBigCold(t *testing.T) {
	pg, err := user.Lookup("postgres") // setup.sh installs postgresql
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	data := t.TempDir()
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := arrow(t, "", "run", "--debug", "--user", "postgres", "-v", data+":/data",
		"/usr/lib/postgresql/15/bin/initdb", "-D", "/data/pg", "--no-sync", "-A", "trust")
	t.Logf("initdb in a cold guest: %s", time.Since(start).Round(time.Millisecond))
	if r.code != 0 || !strings.Contains(r.stdout, "Success") {
		t.Fatalf("initdb: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// Cold, for its volume, from a root disk: the initramfs holds only
	// arrow-init.
	for _, want := range []string{"arrow: cold boot (volumes)", "arrow: rootdisk ", "(0 files)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--debug does not say %q: not a cold boot with volumes from a root disk:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "pg", "PG_VERSION")); err != nil {
		t.Fatalf("the cluster is not in the volume: %v", err)
	}

	// The server on that cluster, in a new arrow, answers psql on the
	// host: its socket directory (/var/run/postgresql, made by
	// postgresql-common's postinst) exists, writable by postgres.
	// Connections come from slirp's 10.0.2.2, which -A trust's
	// pg_hba.conf does not name.
	hba, err := os.OpenFile(filepath.Join(data, "pg", "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hba.WriteString("host all all 0.0.0.0/0 trust\n"); err != nil {
		t.Fatal(err)
	}
	hba.Close()
	port := freePort(t)
	before := qemuProcesses(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, "run", "--user", "postgres", "-v", data+":/data", "-p", "127.0.0.1:"+strconv.Itoa(port)+":5432",
		"/usr/lib/postgresql/15/bin/postgres", "-D", "/data/pg", "-c", "listen_addresses=*")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var answer string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-Atc", "select 6*7").Output()
		if err == nil {
			answer = string(out)
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("postgres exited: %v\n%s", err, log.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if answer != "42\n" {
		t.Errorf("psql: %q\n%s", answer, log.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("arrow did not stop on SIGTERM\n%s", log.String())
	}
	assertNoNewQEMU(t, before)
}
