package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNetworkNone: the guest has its loopback interface only, and it is
// up: an application can listen on 127.0.0.1 and reach itself there.
func TestNetworkNone(t *testing.T) {
	r := arrow(t, "", "run", "--network", "none", "/bin/busybox", "sh", "-c",
		"cat /proc/net/dev; /bin/busybox ip -o link; /bin/busybox ip -o addr show lo")
	if r.code != 0 {
		t.Fatalf("exit status %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var ifaces []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") && !strings.Contains(line, "link/") && !strings.Contains(line, "inet") {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Errorf("interfaces in /proc/net/dev: %q, want only lo\n%s", ifaces, r.stdout)
	}
	if !strings.Contains(r.stdout, "lo: <LOOPBACK,UP,LOWER_UP>") || !strings.Contains(r.stdout, "inet 127.0.0.1/8") {
		t.Errorf("lo is not up with 127.0.0.1/8:\n%s", r.stdout)
	}
	// A server on 127.0.0.1 in the guest answers a client there.
	r = arrow(t, "", "run", "--network", "none", "/bin/busybox", "sh", "-c",
		"echo pong | /bin/busybox nc -l -p 7777 127.0.0.1 >/dev/null & sleep 1; /bin/busybox nc 127.0.0.1 7777 </dev/null")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "pong" {
		t.Errorf("loopback round trip: exit status %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestNetworkUser: by default the guest reaches the network through QEMU's
// user-mode network (gateway 10.0.2.2) and resolves names through
// 10.0.2.3; a run that asks for the host (--add-host NAME:host-gateway)
// reaches a server on the host's 127.0.0.1 by that name (TestSecurity*
// check that without it, it cannot).
func TestNetworkUser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the host\n")
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	r := arrow(t, "", "run", "--add-host", "myhost:host-gateway", "/bin/busybox", "sh", "-c",
		"/bin/busybox wget -q -O- http://myhost:"+strconv.Itoa(port)+"/ && cat /etc/resolv.conf /etc/hosts && /bin/busybox ip route")
	if r.code != 0 {
		t.Fatalf("exit status %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"hello from the host\n", "nameserver 10.0.2.3\n", "10.0.2.2\thost.arrow.internal myhost", "default via 10.0.2.2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout %q, want it to contain %q", r.stdout, want)
		}
	}
}

// TestNetworkPublish serves HTTP from the guest on a published port and
// fetches it on the host, then stops the arrow as docker stop would.
func TestNetworkPublish(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("served by the guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostPort := freePort(t)
	before := qemuProcesses(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, "run", "-p", "127.0.0.1:"+strconv.Itoa(hostPort)+":8000",
		"--include", dir, "-w", dir, python, "-m", "http.server", "8000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://127.0.0.1:" + strconv.Itoa(hostPort) + "/index.html"
	var body string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("arrow exited before serving: %v\nstderr: %s", err, stderr.String())
		case <-time.After(300 * time.Millisecond):
		}
	}
	if body != "served by the guest\n" {
		t.Errorf("GET %s: %q, want the guest's file\nstderr: %s", url, body, stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("arrow did not stop on SIGTERM\nstderr: %s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) && code != 0 {
		t.Errorf("exit status %d after SIGTERM, want %d", code, 128+int(syscall.SIGTERM))
	}
	assertNoNewQEMU(t, before)
}

// TestNetworkPortTaken: a host port in use fails the run before QEMU
// starts, with exit status 125 and a message that says why.
func TestNetworkPortTaken(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"taken", []string{"-p", "127.0.0.1:" + port + ":80"}, "host port 127.0.0.1:" + port + "/tcp is already in use"},
		{"taken on every address", []string{"-p", port + ":80"}, "is already in use"},
		{"publish without a network", []string{"--network", "none", "-p", "8080:80"}, "--network none has no network to publish a port on"},
		{"guest port 0", []string{"-p", "8080:0"}, `guest port "0": want a number from 1 to 65535`},
		{"guest port too large", []string{"-p", "8080:65536"}, `guest port "65536": want a number from 1 to 65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := arrow(t, "", append(append([]string{"run"}, tt.args...), "/bin/true")...)
			if r.code != 125 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit status %d, stderr %q; want 125 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
