package podnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"

	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/internal/netnstest"
)

// testPod is a pod network namespace as CNI leaves one: eth0, one end of
// a veth pair, with the pod IP and a default route through the other end,
// which is in a second namespace standing for the host (the test's own
// host namespace is never touched).
type testPod struct {
	ns, path   string // the pod's namespace
	hostNS     string // the "host" side's namespace
	hostPath   string
	ip, hostIP netip.Addr
}

func newTestPod(t *testing.T) testPod {
	t.Helper()
	var p testPod
	p.ns, p.path = netnstest.New(t)
	p.hostNS, p.hostPath = netnstest.New(t)
	p.ip, p.hostIP = netip.MustParseAddr("10.233.7.2"), netip.MustParseAddr("10.233.7.1")
	netnstest.Run(t, "ip", "-n", p.hostNS, "link", "add", "veth-pod", "type", "veth", "peer", "name", "eth0", "netns", p.ns)
	netnstest.Run(t, "ip", "-n", p.hostNS, "addr", "add", p.hostIP.String()+"/24", "dev", "veth-pod")
	netnstest.Run(t, "ip", "-n", p.hostNS, "link", "set", "veth-pod", "up")
	netnstest.Run(t, "ip", "-n", p.ns, "addr", "add", p.ip.String()+"/24", "dev", "eth0")
	netnstest.Run(t, "ip", "-n", p.ns, "link", "set", "eth0", "up")
	netnstest.Run(t, "ip", "-n", p.ns, "route", "add", "default", "via", p.hostIP.String())
	// A new namespace may inherit the host's forwarding: start from
	// off, as on a node that does not route, to see it restored.
	netnstest.Run(t, "ip", "netns", "exec", p.ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	return p
}

// podLinks lists the pod namespace's taps of this package.
func podLinks(t *testing.T, nsPath string) []string {
	t.Helper()
	var names []string
	if err := netnsdo.Do(nsPath, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, TapPrefix) {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// podRules returns the comments of the pod table's rules by chain; nil
// when there is no table.
func podRules(t *testing.T, nsPath string) map[string][]string {
	t.Helper()
	var rules map[string][]string
	if err := netnsdo.Do(nsPath, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, tb := range tables {
			if tb.Name != TableName {
				continue
			}
			rules = map[string][]string{}
			chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
			if err != nil {
				return err
			}
			for _, ch := range chains {
				if ch.Table.Name != TableName {
					continue
				}
				rs, err := c.GetRules(tb, ch)
				if err != nil {
					return err
				}
				rules[ch.Name] = []string{}
				for _, r := range rs {
					comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
					rules[ch.Name] = append(rules[ch.Name], comment)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rules
}

func sysctlIn(t *testing.T, nsPath, key string) string {
	t.Helper()
	var v string
	if err := netnsdo.Do(nsPath, func() (err error) { v, err = readSysctl(key); return err }); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAttachDetach(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	runDir := t.TempDir()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("search ns.svc.cluster.local\nnameserver 10.96.0.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	forwarding := sysctlIn(t, p.path, ipForward)

	a, err := Attach(ctx, p.path, "ctr-a", Options{RunDir: runDir, ResolvConf: resolv, Ports: []Port{{80, TCP}}})
	if err != nil {
		t.Fatal(err)
	}
	want := Attachment{NetNS: p.path, Tap: TapName("ctr-a"), PodInterface: "eth0", PodIP: p.ip, MTU: 1500,
		Address: netip.MustParsePrefix("169.254.77.2/30"), Gateway: netip.MustParseAddr("169.254.77.1"),
		DNS: []string{"10.96.0.10"}, Search: []string{"ns.svc.cluster.local"}}
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Fatalf("attachment\n%+v\nwant\n%+v", a, want)
	}
	ta := a.TapAttachment()
	if ta.Name != a.Tap || ta.NetNS != p.path || ta.Interface.Address != "169.254.77.2/30" || ta.Interface.Gateway != "169.254.77.1" || ta.Interface.MTU != 1500 {
		t.Fatalf("tap attachment %+v", ta)
	}

	b, err := Attach(ctx, p.path, "ctr-b", Options{RunDir: runDir, ResolvConf: resolv, Ports: []Port{{53, UDP}, {8080, TCP}}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Address != netip.MustParsePrefix("169.254.77.6/30") || b.Gateway != netip.MustParseAddr("169.254.77.5") {
		t.Fatalf("second container's link %s via %s", b.Address, b.Gateway)
	}
	if got, want := podLinks(t, p.path), []string{TapName("ctr-a"), TapName("ctr-b")}; !slices.Equal(got, sorted(want)) {
		t.Fatalf("taps %v, want %v", got, want)
	}
	if got := sysctlIn(t, p.path, ipForward); got != "1" {
		t.Fatalf("ip_forward %s in the pod, want 1", got)
	}
	// The tap holds the gateway address with the pod's MTU.
	if err := netnsdo.Do(p.path, func() error {
		l, err := netlink.LinkByName(b.Tap)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "169.254.77.5/30" || l.Attrs().MTU != 1500 || l.Type() != "tuntap" {
			return fmt.Errorf("tap %s: %s, addresses %v, MTU %d", b.Tap, l.Type(), addrs, l.Attrs().MTU)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rules := podRules(t, p.path)
	wantPre := []string{"container ctr-a: port 80/tcp", "container ctr-b: port 53/udp", "container ctr-b: port 8080/tcp",
		"container ctr-a: first of the pod, every other tcp port", "container ctr-a: first of the pod, every other udp port"}
	if !slices.Equal(rules[chainPrerouting], wantPre) || !slices.Equal(rules[chainOutput], wantPre) {
		t.Fatalf("rules %v", rules)
	}
	if len(rules[chainPostrouting]) != 2 || len(rules[chainInput]) != 3 || len(rules[chainForward]) != 8 {
		t.Fatalf("rules %v", rules)
	}

	// Refused, leaving everything as it was: a port declared twice, a
	// container attached twice.
	for _, tc := range []struct {
		id    string
		ports []Port
		err   string
	}{
		{"ctr-c", []Port{{8080, TCP}}, "port 8080/tcp is declared by container ctr-b"},
		{"ctr-a", nil, "attached already"},
	} {
		if _, err := Attach(ctx, p.path, tc.id, Options{RunDir: runDir, ResolvConf: resolv, Ports: tc.ports}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("attach %s: %v, want %q", tc.id, err, tc.err)
		}
		if got := podLinks(t, p.path); len(got) != 2 {
			t.Fatalf("taps %v after a refused attach", got)
		}
		if got := podRules(t, p.path); fmt.Sprint(got) != fmt.Sprint(rules) {
			t.Fatalf("rules changed by a refused attach: %v", got)
		}
	}

	// The first container leaves: the second one is now the first.
	if err := Detach(ctx, p.path, "ctr-a", Options{RunDir: runDir}); err != nil {
		t.Fatal(err)
	}
	if got := podLinks(t, p.path); !slices.Equal(got, []string{TapName("ctr-b")}) {
		t.Fatalf("taps %v", got)
	}
	rules = podRules(t, p.path)
	wantPre = []string{"container ctr-b: port 53/udp", "container ctr-b: port 8080/tcp",
		"container ctr-b: first of the pod, every other tcp port", "container ctr-b: first of the pod, every other udp port"}
	if !slices.Equal(rules[chainPrerouting], wantPre) {
		t.Fatalf("rules %v", rules)
	}
	// Its link is free again.
	c, err := Attach(ctx, p.path, "ctr-c", Options{RunDir: runDir, ResolvConf: resolv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != a.Address {
		t.Fatalf("third container got %s, want the freed %s", c.Address, a.Address)
	}
	for _, id := range []string{"ctr-b", "ctr-c", "ctr-c"} { // a second detach is no error
		if err := Detach(ctx, p.path, id, Options{RunDir: runDir}); err != nil {
			t.Fatal(err)
		}
	}
	assertClean(t, p.path, runDir, forwarding)
}

// assertClean checks that the pod namespace and the run directory are as
// before the first attach.
func assertClean(t *testing.T, nsPath, runDir, forwarding string) {
	t.Helper()
	if got := podLinks(t, nsPath); len(got) != 0 {
		t.Errorf("taps left: %v", got)
	}
	if got := podRules(t, nsPath); got != nil {
		t.Errorf("table left: %v", got)
	}
	if got := sysctlIn(t, nsPath, ipForward); got != forwarding {
		t.Errorf("ip_forward left at %s", got)
	}
	if ents, err := os.ReadDir(runDir); err != nil || len(ents) != 0 {
		t.Errorf("run directory: %v, %v", ents, err)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestAttachConcurrent(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	runDir := t.TempDir()
	forwarding := sysctlIn(t, p.path, ipForward)
	const n = 12
	addrs := make([]netip.Prefix, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			a, err := Attach(ctx, p.path, fmt.Sprintf("ctr-%d", i), Options{RunDir: runDir, Ports: []Port{{uint16(1000 + i), TCP}}})
			addrs[i] = a.Address
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(addrs, netip.Prefix.Compare)
	if len(slices.Compact(addrs)) != n || len(podLinks(t, p.path)) != n {
		t.Fatalf("addresses %v, taps %v", addrs, podLinks(t, p.path))
	}
	if got := podRules(t, p.path); len(got[chainPrerouting]) != n+2 {
		t.Fatalf("rules %v", got)
	}
	for i := range n {
		wg.Go(func() {
			if err := Detach(ctx, p.path, fmt.Sprintf("ctr-%d", i), Options{RunDir: runDir}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	assertClean(t, p.path, runDir, forwarding)
}

// TestAttachFailsClosed: a namespace that is no pod's, or a path that is
// no namespace, fails the attach with a clear message, leaving nothing.
func TestAttachFailsClosed(t *testing.T) {
	ctx := context.Background()
	runDir := t.TempDir()
	_, bare := netnstest.New(t)
	forwarding := sysctlIn(t, bare, ipForward)
	for _, tc := range []struct{ path, err string }{
		{bare, "no IPv4 default route"},
		{"/nonexistent", "no such file"},
		{"/proc/self/status", "network namespace /proc/self/status"},
	} {
		_, err := Attach(ctx, tc.path, "ctr", Options{RunDir: runDir})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("attach in %s: %v, want %q", tc.path, err, tc.err)
		}
	}
	assertClean(t, bare, runDir, forwarding)

	// A cancelled context while another holds the pod's lock.
	p := newTestPod(t)
	forwarding = sysctlIn(t, p.path, ipForward)
	l, err := lockPod(ctx, runDir, p.path)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Attach(cctx, p.path, "ctr", Options{RunDir: runDir}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("attach with the lock held and a cancelled context: %v", err)
	}
	l.unlock()
	os.Remove(l.lockPath)
	assertClean(t, p.path, runDir, forwarding)
}
