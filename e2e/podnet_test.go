package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/internal/netnstest"
	"github.com/arrowsys/arrow/internal/syncbuf"
	"github.com/arrowsys/arrow/podnet"
	"github.com/arrowsys/arrow/run"
)

// TestPodNetworkVMs boots two VMs attached, through package podnet, to a
// pod network namespace made as CNI makes one (eth0 of a veth pair with
// the pod IP and a default route; the other end in a namespace standing
// for the node): the node reaches the server VM at the pod IP, the client
// VM reaches it at the pod IP too, the server reaches itself there, and
// the client's egress reaches the node from the pod IP, but not a server
// of the pod's namespace at its gateway. Then the VMs
// stop and the detaches leave the pod's namespace as it was.
func TestPodNetworkVMs(t *testing.T) {
	node, _ := netnstest.New(t)
	pod, podPath := netnstest.New(t)
	podIP, nodeIP := netip.MustParseAddr("10.233.9.2"), netip.MustParseAddr("10.233.9.1")
	netnstest.Run(t, "ip", "-n", node, "link", "add", "veth-pod", "type", "veth", "peer", "name", "eth0", "netns", pod)
	netnstest.Run(t, "ip", "-n", node, "addr", "add", nodeIP.String()+"/24", "dev", "veth-pod")
	netnstest.Run(t, "ip", "-n", node, "link", "set", "veth-pod", "up")
	netnstest.Run(t, "ip", "-n", pod, "addr", "add", podIP.String()+"/24", "dev", "eth0")
	netnstest.Run(t, "ip", "-n", pod, "link", "set", "eth0", "up")
	netnstest.Run(t, "ip", "-n", pod, "route", "add", "default", "via", nodeIP.String())

	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox (busybox-static) is needed: run setup.sh")
	}
	// A server on the node side, for the client's egress: it sees the
	// client's connection come from the pod IP.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nodeHTTPD := exec.Command("ip", "netns", "exec", node, busybox, "httpd", "-f", "-vv", "-p", "8081", "-h", www)
	var nodeLog syncbuf.Buffer
	nodeHTTPD.Stderr = &nodeLog
	if err := nodeHTTPD.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeHTTPD.Process.Kill(); nodeHTTPD.Wait() })

	// A server of the pod's namespace itself, which no container may
	// reach: the guests' gateways are no way into it.
	podHTTPD := exec.Command("ip", "netns", "exec", pod, busybox, "httpd", "-f", "-p", "9999", "-h", www)
	if err := podHTTPD.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { podHTTPD.Process.Kill(); podHTTPD.Wait() })

	runDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	attach := func(id string, ports []podnet.Port) *run.TapAttachment {
		a, err := podnet.Attach(ctx, podPath, id, podnet.Options{RunDir: runDir, Ports: ports})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := podnet.Detach(context.Background(), podPath, id, podnet.Options{RunDir: runDir}); err != nil {
				t.Error(err)
			}
		})
		return a.TapAttachment()
	}
	before := qemuProcesses(t)
	vmOpts := func(tap *run.TapAttachment, script string, out, errw *syncbuf.Buffer, sigs <-chan os.Signal) run.Options {
		return run.Options{
			Config: api.Config{
				Program: busybox, Args: []string{"sh", "-c", script},
				Network: "pod", MemoryMiB: 128, Cold: true, BootTimeout: 120,
			},
			Tap: tap, Root: arrowRoot(), Init: filepath.Join(binDir, "arrow-init"),
			JailHelper: filepath.Join(binDir, "arrow-jailer"), Out: out, Err: errw, Log: errw, Signals: sigs,
		}
	}

	// The server: it serves on 8080, reaches itself at the pod IP (its
	// answer lands in self.html), then waits to be stopped.
	serverTap := attach("server", []podnet.Port{{Port: 8080, Proto: podnet.TCP}})
	server := fmt.Sprintf(`set -e
busybox mkdir -p /tmp/w
echo hello from the server > /tmp/w/index.html
busybox httpd -p 8080 -h /tmp/w
i=0; until busybox timeout 5 busybox wget -q -O /tmp/w/self.html http://%s:8080/index.html; do i=$((i+1)); [ $i -lt 50 ] || { echo the server cannot reach itself at the pod IP; exit 7; }; busybox sleep 0.2; done
echo server ready
exec busybox sleep 600`, podIP)
	var sOut, sErr syncbuf.Buffer
	sigs := make(chan os.Signal, 1)
	serverDone := make(chan error, 1)
	var serverResult run.Result
	go func() {
		var err error
		serverResult, err = run.Run(ctx, vmOpts(serverTap, server, &sOut, &sErr, sigs))
		serverDone <- err
	}()

	// The node reaches the server at the pod IP once it serves.
	url := fmt.Sprintf("http://%s:8080/", podIP)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := exec.Command("ip", "netns", "exec", node, busybox, "timeout", "5", busybox, "wget", "-q", "-O", "-", url+"self.html").CombinedOutput()
		if err == nil && strings.Contains(string(out), "hello from the server") {
			break
		}
		select {
		case err := <-serverDone:
			t.Fatalf("the server VM ended: %v %+v\nstdout: %s\nstderr: %s", err, serverResult, sOut.String(), sErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never fetched %sself.html: %v %s\nserver stdout: %s\nstderr: %s", url, err, out, sOut.String(), sErr.String())
		}
		time.Sleep(time.Second)
	}

	// The client, another VM of the pod: the server at the pod IP, an
	// undeclared port of the pod IP (which goes to the first container,
	// the server, where nothing listens), and the node.
	clientTap := attach("client", nil)
	client := fmt.Sprintf(`busybox timeout 10 busybox wget -q -O - http://%[1]s:8080/index.html || exit 3
busybox timeout 10 busybox wget -q -O - http://%[1]s:8082/ && exit 4
busybox timeout 10 busybox wget -q -O - http://%[2]s:8081/index.html || exit 5
busybox timeout 5 busybox wget -q -O - http://%[3]s:9999/index.html && exit 6
echo client done`, podIP, nodeIP, clientTap.Interface.Gateway)
	var cOut, cErr syncbuf.Buffer
	res, err := run.Run(ctx, vmOpts(clientTap, client, &cOut, &cErr, nil))
	if err != nil || res.Status.Code != 0 {
		t.Fatalf("client VM: %v, %+v\nstdout: %s\nstderr: %s", err, res, cOut.String(), cErr.String())
	}
	if want := "hello from the server\nfrom the node\nclient done\n"; cOut.String() != want {
		t.Fatalf("client printed %q, want %q", cOut.String(), want)
	}
	// The node saw the client's connection come from the pod IP.
	if !strings.Contains(nodeLog.String(), podIP.String()) {
		t.Errorf("node's httpd log does not show the pod IP:\n%s", nodeLog.String())
	}

	sigs <- syscall.SIGTERM
	select {
	case err := <-serverDone:
		if err != nil {
			t.Fatalf("server VM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the server VM did not stop on SIGTERM")
	}
	if !strings.Contains(sOut.String(), "server ready") {
		t.Errorf("server stdout %q", sOut.String())
	}
	assertNoNewQEMU(t, before)
	for _, id := range []string{"client", "server"} {
		if err := podnet.Detach(ctx, podPath, id, podnet.Options{RunDir: runDir}); err != nil {
			t.Fatal(err)
		}
	}
	if out := netnstest.Run(t, "ip", "-n", pod, "-o", "link"); strings.Contains(out, podnet.TapPrefix) {
		t.Errorf("taps left in the pod's namespace:\n%s", out)
	}
	if out := netnstest.Run(t, "ip", "netns", "exec", pod, "nft", "list", "tables"); strings.Contains(out, podnet.TableName) {
		t.Errorf("table left in the pod's namespace:\n%s", out)
	}
}

// arrowRoot is the data root the arrow binary uses as root.
func arrowRoot() string {
	if r := os.Getenv("ARROW_ROOT"); r != "" {
		return r
	}
	return "/var/lib/arrow"
}
