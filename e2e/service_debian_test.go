package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServiceRedis runs Debian's redis-server.service as it ships
// (Type=notify, User=redis, RuntimeDirectory=, sandboxing, bind
// 127.0.0.1): run -d returns once redis said READY=1, and redis-cli and
// redis-benchmark reach it through -p.
func TestServiceRedis(t *testing.T) {
	d := startDaemon(t)
	port := freePort(t)
	t0 := time.Now()
	d.must("run", "-d", "--name", "redis", "--service", "redis-server", "-p", fmt.Sprintf("127.0.0.1:%d:6379", port))
	t.Logf("run -d --service redis-server: ready in %v", time.Since(t0))
	if a := d.inspect("redis"); a.Health != "healthy" {
		t.Errorf("health %q right after run -d, want healthy (READY=1)", a.Health)
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("redis-cli", append([]string{"-p", fmt.Sprint(port)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %q: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := cli("PING"); got != "PONG" {
		t.Fatalf("PING: %q", got)
	}
	cli("SET", "arrow", "in a microVM")
	if got := cli("GET", "arrow"); got != "in a microVM" {
		t.Errorf("GET: %q", got)
	}
	// Who it runs as: User=redis.
	if got := cli("CONFIG", "GET", "dir"); !strings.Contains(got, "/var/lib/redis") {
		t.Errorf("CONFIG GET dir: %q", got)
	}
	t0 = time.Now()
	out, err := exec.Command("redis-benchmark", "-p", fmt.Sprint(port), "-q", "-n", "1000", "-c", "5", "-t", "set,get", "--csv").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"SET"`) || !strings.Contains(string(out), `"GET"`) {
		t.Fatalf("redis-benchmark: %v: %s", err, out)
	}
	t.Logf("redis-benchmark -n 1000 -c 5 in %v:\n%s", time.Since(t0), out)
	d.must("stop", "redis")
}

// TestServiceMemcached runs Debian's memcached.service: a perl wrapper
// (its interpreter comes into the guest) that reads /etc/memcached.conf
// and execs memcached, which drops to the memcache user, listens on
// 127.0.0.1 and writes its PID file in /run/memcached, the directory of
// its package's tmpfiles.d file; memcstat and memccp reach it through -p.
func TestServiceMemcached(t *testing.T) {
	d := startDaemon(t)
	port := freePort(t)
	d.must("run", "-d", "--name", "mc", "--service", "memcached", "-p", fmt.Sprintf("127.0.0.1:%d:11211", port))
	server := fmt.Sprintf("--servers=127.0.0.1:%d", port)
	var out []byte
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A simple service is ready once started; memcached may
		// still be binding its port.
		out, err = exec.Command("memcstat", server).CombinedOutput()
		if err == nil && strings.Contains(string(out), "pid:") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(out), "pid:") {
		t.Fatalf("memcstat: %v: %s\nlogs:\n%s", err, out, d.arrow("logs", "mc").stdout)
	}
	if !strings.Contains(string(out), "limit_maxbytes: 67108864") {
		t.Errorf("memcstat: not /etc/memcached.conf's -m 64:\n%s", out)
	}
	// /etc/memcached.conf's -P /var/run/memcached/memcached.pid: its
	// directory comes from memcached's tmpfiles.d file, owned by
	// memcache, and the PID file is the daemon's memcstat reports.
	pid := d.must("exec", "mc", "/bin/sh", "-c", `read p < /var/run/memcached/memcached.pid && echo "pid: $p"`)
	if !strings.Contains(string(out), strings.TrimSpace(pid)+"\n") {
		t.Errorf("PID file %q, memcstat:\n%s", pid, out)
	}
	if logs := d.arrow("logs", "mc"); strings.Contains(logs.stdout+logs.stderr, "pid file") {
		t.Errorf("memcached complains of its PID file:\n%s%s", logs.stdout, logs.stderr)
	}
	dir := t.TempDir()
	file := dir + "/greeting"
	if err := exec.Command("sh", "-c", "echo hello from memcached > "+file).Run(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("memccp", server, file).CombinedOutput(); err != nil {
		t.Fatalf("memccp: %v: %s", err, out)
	}
	got, err := exec.Command("memccat", server, "greeting").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "hello from memcached" {
		t.Errorf("memccat: %v: %q", err, got)
	}
	d.must("stop", "mc")
}

// TestServiceNginx runs Debian's nginx.service as it ships: Type=forking
// with PIDFile=/run/nginx.pid, ExecStartPre=nginx -t, a master that drops
// its workers to www-data and logs to /var/log/nginx. run -d returns once
// the PID file is written; curl gets the welcome page through -p; arrow
// stop ends it through ExecStop= (start-stop-daemon sending SIGQUIT, a
// graceful stop) well before TimeoutStopSec=5 would SIGKILL it.
func TestServiceNginx(t *testing.T) {
	d := startDaemon(t)
	port := freePort(t)
	t0 := time.Now()
	d.must("run", "-d", "--name", "nginx", "--service", "nginx", "-p", fmt.Sprintf("127.0.0.1:%d:80", port))
	t.Logf("run -d --service nginx: ready in %v", time.Since(t0))
	if a := d.inspect("nginx"); a.Health != "healthy" {
		t.Errorf("health %q right after run -d, want healthy (the PID file)", a.Health)
	}
	out, err := exec.Command("curl", "-sS", "--max-time", "20", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<title>Welcome to nginx!</title>") {
		t.Fatalf("curl: %v: %s\nlogs:\n%s", err, out, d.arrow("logs", "nginx").stdout)
	}
	// The master is the PID file's, and its workers run as www-data.
	ps := d.must("exec", "nginx", "/bin/sh", "-c",
		`read pid < /run/nginx.pid; echo master $pid; for s in /proc/[0-9]*/status; do while read -r k v rest; do case $k in Name:) n=$v;; Uid:) echo "$n $v";; esac; done < $s; done`)
	if !regexp.MustCompile(`master [0-9]+\n`).MatchString(ps) {
		t.Errorf("no PID file in the guest: %q", ps)
	}
	if uid := wwwDataUID(t); !strings.Contains(ps, "nginx "+uid+"\n") {
		t.Errorf("no nginx process runs as www-data (uid %s):\n%s", uid, ps)
	}
	// Its own error log, in /var/log/nginx (its package's directory).
	elog := d.must("exec", "nginx", "/bin/sh", "-c", `while IFS= read -r l; do echo "$l"; done < /var/log/nginx/error.log`)
	if regexp.MustCompile(`\[(emerg|alert|crit|error)\]`).MatchString(elog) {
		t.Errorf("/var/log/nginx/error.log:\n%s", elog)
	}
	t0 = time.Now()
	d.must("stop", "nginx")
	took := time.Since(t0)
	t.Logf("stop took %v", took)
	a := d.inspect("nginx")
	if a.ExitCode != 0 {
		t.Errorf("exit status %d after stop, want 0 (nginx's graceful stop)", a.ExitCode)
	}
	if took >= 5*time.Second {
		t.Errorf("stop took %v: ExecStop= did not end nginx before TimeoutStopSec=5", took)
	}
	if logs := d.arrow("logs", "nginx"); strings.Contains(logs.stdout+logs.stderr, "[emerg]") || strings.Contains(logs.stdout+logs.stderr, "[alert]") {
		t.Errorf("nginx complained:\n%s%s", logs.stdout, logs.stderr)
	}
}

// wwwDataUID is the host's www-data user ID, which nginx's workers run as.
func wwwDataUID(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("id", "-u", "www-data").Output()
	if err != nil {
		t.Fatalf("id -u www-data: %v", err)
	}
	return strings.TrimSpace(string(out))
}
