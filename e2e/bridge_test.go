package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/arrowsys/arrow/api"
)

// arrowLinks lists the network devices Arrow creates (bridges and taps).
func arrowLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "arw") {
			out = append(out, i.Name)
		}
	}
	return out
}

// arrowTable reports whether Arrow's nftables table exists.
func arrowTable(t *testing.T) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == "arrow" {
			return true
		}
	}
	return false
}

func TestDaemonBridgeNetwork(t *testing.T) {
	if !inNetns(t) {
		return
	}
	if links := arrowLinks(t); len(links) > 0 || arrowTable(t) {
		t.Fatalf("before the test: Arrow links %v or table present: another arrowd runs here", links)
	}
	d := startDaemon(t)
	d.must("network", "create", "--subnet", "10.89.77.0/24", "appnet")
	if ls := d.must("network", "ls"); !strings.Contains(ls, "appnet") || !strings.Contains(ls, "10.89.77.0/24") {
		t.Fatalf("network ls:\n%s", ls)
	}

	// A server, and a web front published on the host's loopback.
	d.must("run", "-d", "--name", "db", "--network", "appnet", "/usr/bin/python3", "-m", "http.server", "-d", "/", "8000")
	hostPort := freePort(t)
	d.must("run", "-d", "--name", "web", "--network", "appnet", "-p", "127.0.0.1:"+strconv.Itoa(hostPort)+":8000",
		"/usr/bin/python3", "-m", "http.server", "-d", "/", "8000")
	web := d.inspect("web")
	if web.Endpoint == nil || !strings.HasPrefix(web.Endpoint.Address, "10.89.77.") {
		t.Fatalf("web's endpoint: %+v", web.Endpoint)
	}
	if out := d.must("port", "web"); !strings.Contains(out, fmt.Sprintf("8000/tcp -> 127.0.0.1:%d", hostPort)) {
		t.Errorf("arrow port web: %q", out)
	}

	// The published port answers a real HTTP client on the host.
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), "Directory listing") {
				break
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("published port of a bridge arrow: %v\nweb's log:\n%s", err, d.must("logs", "web"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// An arrow on the network reaches another by name.
	d.must("run", "-d", "--name", "client", "--network", "appnet", "/usr/bin/python3", "-c",
		"import urllib.request, time\nfor i in range(100):\n  try:\n    print(urllib.request.urlopen('http://db:8000/', timeout=5).status); break\n  except OSError as e:\n    print('retry', e); time.sleep(0.3)")
	if r := d.arrow("wait", "client"); strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("client: exit %q", r.stdout)
	}
	if logs := d.must("logs", "client"); !strings.Contains(logs, "200") {
		t.Fatalf("client could not reach db by name:\n%s", logs)
	}
	// Arrows on a bridge network are clones of the template too, their
	// tap plugged into the template's card, which carries the arrow's
	// own MAC.
	d.must("run", "-d", "--name", "mac", "--network", "appnet", "/bin/busybox", "cat", "/sys/class/net/eth0/address")
	d.arrow("wait", "mac")
	mac := d.inspect("mac")
	if mac.Template == "" || mac.Endpoint == nil || strings.TrimSpace(d.must("logs", "mac")) != mac.Endpoint.MAC {
		t.Errorf("bridge arrow: template %q, phases %+v, endpoint %+v, eth0 %q: want a clone with the endpoint's MAC", mac.Template, mac.StartPhases, mac.Endpoint, d.must("logs", "mac"))
	}

	// A host port that is taken fails cleanly: no arrow, no rule.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tp := taken.Addr().(*net.TCPAddr).Port
	r := d.arrow("run", "-d", "--name", "clash", "--network", "appnet", "-p", "127.0.0.1:"+strconv.Itoa(tp)+":80", "/bin/true")
	if r.code == 0 || !strings.Contains(r.stderr, strconv.Itoa(tp)) {
		t.Fatalf("a taken host port: exit %d: %s", r.code, r.stderr)
	}
	if ps := d.must("ps", "-a"); strings.Contains(ps, "clash") {
		t.Fatalf("a failed create left an arrow:\n%s", ps)
	}

	// Removing a network in use is refused; removing everything leaves
	// no link and no rule.
	if r := d.arrow("network", "rm", "appnet"); r.code == 0 || !strings.Contains(r.stderr, "in use") {
		t.Errorf("network rm while in use: exit %d: %s", r.code, r.stderr)
	}
	for _, n := range []string{"db", "web", "client", "mac"} {
		d.must("rm", "-f", n)
	}
	d.must("network", "rm", "appnet")
	if links := arrowLinks(t); len(links) > 0 {
		t.Errorf("links left: %v", links)
	}
	if arrowTable(t) {
		t.Error("nftables table arrow left")
	}
}

func TestDaemonBridgeNetworkSurvivesRestart(t *testing.T) {
	if !inNetns(t) {
		return
	}
	d := startDaemon(t)
	d.must("network", "create", "--subnet", "10.89.78.0/24", "keep")
	d.must("run", "-d", "--name", "k1", "--network", "keep", "/bin/busybox", "sleep", "600")
	addr := d.inspect("k1").Endpoint.Address
	d.kill()
	d.start()
	// The address is still k1's, and a new arrow gets another.
	if a := d.inspect("k1"); a.Endpoint == nil || a.Endpoint.Address != addr || a.State != api.Running {
		t.Fatalf("k1 after a daemon restart: %+v", a)
	}
	d.must("run", "-d", "--name", "k2", "--network", "keep", "/bin/busybox", "sleep", "600")
	if a2 := d.inspect("k2").Endpoint.Address; a2 == addr {
		t.Fatalf("address %s handed out twice", addr)
	}
	d.must("rm", "-f", "k1", "k2")
	d.must("network", "rm", "keep")
	if links := arrowLinks(t); len(links) > 0 {
		t.Errorf("links left: %v", links)
	}
}
