package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

// httpAnswers reports whether an HTTP server answers on the host's port
// within timeout.
func httpAnswers(port int, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Directory listing") {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// awaitHTTP waits until the server on port answers, or fails.
func awaitHTTP(t *testing.T, d *testDaemon, port int, ref string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := httpAnswers(port, 5*time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the published port %d does not answer: %v\n%s's log:\n%s", port, err, ref, d.must("logs", ref))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDaemonPause: docker pause and unpause of an arrow serving HTTP on
// a published port. Paused, its VM answers nothing and refuses exec;
// unpaused, it answers again; paused, it survives a crash of arrowd
// (the shim knows it) and a stop ends it without waiting for a timeout.
func TestDaemonPause(t *testing.T) {
	d := startDaemon(t)
	port := freePort(t)
	// Subscribed long before the pause: the run takes seconds.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan api.Event, 256)
	go func() {
		_ = d.client().Events(ctx, func(e api.Event) error {
			select {
			case events <- e:
			default: // the test reads only the first few
			}
			return nil
		})
	}()
	d.must("run", "-d", "--name", "web", "-p", "127.0.0.1:"+strconv.Itoa(port)+":8000",
		"/usr/bin/python3", "-m", "http.server", "-d", "/", "8000")
	awaitHTTP(t, d, port, "web")

	if out := d.must("pause", "web"); strings.TrimSpace(out) != "web" {
		t.Errorf("arrow pause: %q", out)
	}
	if a := d.inspect("web"); !a.Paused || a.State != api.Running {
		t.Fatalf("after pause: paused %v, state %s", a.Paused, a.State)
	}
	if ps := d.must("ps"); !strings.Contains(ps, "(Paused)") {
		t.Errorf("arrow ps of a paused arrow:\n%s", ps)
	}
	if r := d.arrow("pause", "web"); r.code == 0 || !strings.Contains(r.stderr, "paused already") {
		t.Errorf("pause of a paused arrow: exit %d: %s", r.code, r.stderr)
	}
	// exec: 409 through the API, and the CLI says why.
	_, _, err := d.client().Exec(ctx, "web", &api.ExecConfig{Cmd: []string{"/bin/true"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict || !strings.Contains(ce.Message, "web is paused") {
		t.Errorf("exec into a paused arrow: %v", err)
	}
	if r := d.arrow("exec", "web", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "paused") {
		t.Errorf("arrow exec into a paused arrow: exit %d: %s", r.code, r.stderr)
	}
	// The VM stands still: nothing answers on its port.
	if err := httpAnswers(port, 3*time.Second); err == nil {
		t.Fatal("a paused arrow answered on its published port")
	}

	d.must("unpause", "web")
	if a := d.inspect("web"); a.Paused {
		t.Fatal("still paused after unpause")
	}
	if r := d.arrow("unpause", "web"); r.code == 0 || !strings.Contains(r.stderr, "not paused") {
		t.Errorf("unpause of an arrow that runs: exit %d: %s", r.code, r.stderr)
	}
	awaitHTTP(t, d, port, "web")
	d.checkExec("", result{stdout: "ok\n"}, "web", "/usr/bin/python3", "-c", "print(\"ok\")")

	var seen []string
	for len(seen) < 2 {
		select {
		case e := <-events:
			if e.Name == "web" && (e.Type == "pause" || e.Type == "unpause") {
				seen = append(seen, e.Type)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events: %v, want pause and unpause", seen)
		}
	}
	if !slices.Equal(seen, []string{"pause", "unpause"}) {
		t.Errorf("events %v", seen)
	}

	// Paused across a crash of arrowd: the record and the shim agree.
	d.must("pause", "web")
	d.kill()
	d.start()
	if a := d.inspect("web"); !a.Paused || a.State != api.Running {
		t.Fatalf("after arrowd restarted: paused %v, state %s", a.Paused, a.State)
	}
	if err := httpAnswers(port, 2*time.Second); err == nil {
		t.Fatal("paused across the restart, yet it answered")
	}
	d.must("unpause", "web")
	awaitHTTP(t, d, port, "web")

	// A stop of a paused arrow continues its VM and signals it: python
	// ends on SIGTERM, well within the timeout.
	d.must("pause", "web")
	start := time.Now()
	d.must("stop", "-t", "60", "web")
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("stop of a paused arrow took %v: it waited for the timeout", took)
	}
	if a := d.inspect("web"); a.State != api.Exited || a.Paused {
		t.Errorf("after stop: state %s, paused %v", a.State, a.Paused)
	}
	if r := d.arrow("pause", "web"); r.code == 0 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("pause of a stopped arrow: exit %d: %s", r.code, r.stderr)
	}
}

// TestDaemonBridgeAlias: two arrows share an alias on a bridge network,
// as the replicas of a compose service share its name; a third resolves
// it to both and reaches it. A rename moves an arrow's DNS name.
func TestDaemonBridgeAlias(t *testing.T) {
	if !inNetns(t) {
		return
	}
	if links := arrowLinks(t); len(links) > 0 || arrowTable(t) {
		t.Fatalf("before the test: Arrow links %v or table present: another arrowd runs here", links)
	}
	d := startDaemon(t)
	d.must("network", "create", "--subnet", "10.89.79.0/24", "proj")
	ctx := context.Background()
	c := d.client()
	// One through the API, as the Docker API's front end does; one with
	// the CLI's --network-alias.
	if _, err := c.Create(ctx, &api.CreateRequest{Name: "web-1", Config: api.Config{
		Program: "/usr/bin/python3", Args: []string{"-m", "http.server", "-d", "/", "8000"},
		Network: "proj", NetworkAliases: []string{"web"},
	}}); err != nil {
		t.Fatalf("create web-1: %v", err)
	}
	d.must("run", "-d", "--name", "web-2", "--network", "proj", "--network-alias", "web",
		"/usr/bin/python3", "-m", "http.server", "-d", "/", "8000")
	var addrs []string
	for _, name := range []string{"web-1", "web-2"} {
		a := d.inspect(name)
		// Its short ID is a name on the network too, as docker's.
		if a.Endpoint == nil || !slices.Equal(a.Endpoint.Aliases, []string{"web", a.ID[:12]}) {
			t.Fatalf("%s's endpoint: %+v", name, a.Endpoint)
		}
		addrs = append(addrs, strings.TrimSuffix(a.Endpoint.Address, "/24"))
	}
	slices.Sort(addrs)
	// An alias on the user network is refused: nothing there resolves it.
	if _, err := c.Create(ctx, &api.CreateRequest{Name: "bad", Config: api.Config{Program: "/bin/true", NetworkAliases: []string{"web"}}}); err == nil || !strings.Contains(err.Error(), "bridge network") {
		t.Errorf("an alias without a bridge network: %v", err)
	}

	// The client resolves the alias (every address) and web-1 by name,
	// then fetches from the alias.
	d.must("rename", "web-1", "front")
	resolver := `import socket, time, urllib.request
def addrs(name):
    for i in range(100):
        try:
            return sorted(socket.gethostbyname_ex(name)[2])
        except OSError:
            time.sleep(0.2)
    return "unresolved"
print("web", " ".join(addrs("web")))
print("front", " ".join(addrs("front")))
try:
    socket.gethostbyname("web-1")
    print("web-1 resolves")
except OSError:
    print("web-1 gone")
for i in range(100):
    try:
        print("fetch", urllib.request.urlopen("http://web:8000/", timeout=5).status); break
    except OSError as e:
        time.sleep(0.3)
`
	d.must("run", "-d", "--name", "client", "--network", "proj", "/usr/bin/python3", "-c", resolver)
	if r := d.arrow("wait", "client"); strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("client: exit %q\n%s", r.stdout, d.must("logs", "client"))
	}
	logs := d.must("logs", "client")
	front := d.inspect("front")
	for _, want := range []string{
		"web " + strings.Join(addrs, " "),
		"front " + strings.TrimSuffix(front.Endpoint.Address, "/24"),
		"web-1 gone",
		"fetch 200",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("client's log lacks %q:\n%s", want, logs)
		}
	}
	if front.Endpoint.Name != "front" {
		t.Errorf("the renamed arrow's endpoint: %+v", front.Endpoint)
	}

	// The alias goes with the arrows that had it.
	for _, n := range []string{"front", "web-2", "client"} {
		d.must("rm", "-f", n)
	}
	n, err := c.Network(ctx, "proj")
	if err != nil || len(n.Endpoints) != 0 {
		t.Errorf("network after the arrows went: %+v, %v", n, err)
	}
	d.must("network", "rm", "proj")
}
