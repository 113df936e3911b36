package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/arrowsys/arrow/internal/netlinks"
)

// netnsEnv names, in the child process a test re-runs itself in, the
// test that runs there.
const netnsEnv = "ARROW_NETWORK_TEST_NETNS"

// inNetns runs the calling test in a network namespace of its own, so
// that the host's links and rules are never touched: in the test process
// it re-runs the test binary on this test alone, cloned into a new network
// namespace (every thread of it, the DNS responders' and forwarders'
// included), reports the child's output and outcome, and returns false;
// in that child it brings lo up and returns true.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	args := []string{"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("test in its network namespace: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatal("the test did not run in its network namespace")
	}
	return false
}

// testOpts are the options of a test's Manager: state in a temporary
// directory, nameservers ns.
func testOpts(t *testing.T, ns ...netip.AddrPort) Options {
	return Options{
		StatePath:   filepath.Join(t.TempDir(), "network.db"),
		Nameservers: ns,
		DNSTimeout:  500 * time.Millisecond,
		Logf:        t.Logf,
	}
}

// open opens a Manager, closed at the end of the test.
func open(t *testing.T, opts Options) *Manager {
	t.Helper()
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// arrowLinks returns the names of the links named like Arrow's.
func arrowLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, bridgePrefix) || strings.HasPrefix(n, tapPrefix) {
			names = append(names, n)
		}
	}
	return names
}

// tableRules returns the comments of the rules of the arrow table by
// chain, and the rules themselves; nil when there is no table.
func tableRules(t *testing.T) (map[string][]string, map[string][]*nftables.Rule) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var table *nftables.Table
	for _, tb := range tables {
		if tb.Name == TableName {
			table = tb
		}
	}
	if table == nil {
		return nil, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	comments := map[string][]string{}
	rules := map[string][]*nftables.Rule{}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rs, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatal(err)
		}
		comments[ch.Name] = []string{}
		for _, r := range rs {
			s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			comments[ch.Name] = append(comments[ch.Name], s)
			rules[ch.Name] = append(rules[ch.Name], r)
		}
	}
	return comments, rules
}

// dnatTargets returns the DNAT targets (address:port) of the rules.
func dnatTargets(rules []*nftables.Rule) []string {
	var out []string
	for _, r := range rules {
		var addr, port []byte
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Immediate:
				if e.Register == 1 {
					addr = e.Data
				} else if e.Register == 2 {
					port = e.Data
				}
			case *expr.NAT:
				if e.Type == expr.NATTypeDestNAT && len(addr) == 4 && len(port) == 2 {
					out = append(out, fmt.Sprintf("%s:%d", netip.AddrFrom4([4]byte(addr)), int(port[0])<<8|int(port[1])))
				}
			}
		}
	}
	return out
}

// hasMasq reports whether one of the rules masquerades.
func hasMasq(rules []*nftables.Rule, comment string) bool {
	for _, r := range rules {
		s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		for _, e := range r.Exprs {
			if _, ok := e.(*expr.Masq); ok && s == comment {
				return true
			}
		}
	}
	return false
}

// logRuleset logs nft list ruleset when nft is installed, for the reader.
func logRuleset(t *testing.T) {
	if out, err := exec.Command("nft", "list", "ruleset").CombinedOutput(); err == nil {
		t.Logf("nft list ruleset:\n%s", out)
	}
}

// addUplink adds a veth pair, name and name+"p", both up, with address
// addr on name and the given MTU: a stand-in for a host's interface (the
// kernel may lack dummy links).
func addUplink(t *testing.T, name, addr string, mtu int) netlink.Link {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestCreateListRemove(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	// A new namespace takes the initial one's forwarding: on, when an
	// arrowd of the host runs bridge networks beside the tests. This
	// namespace is the test's own: start it as a host that does not
	// forward.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addUplink(t, "uplink", "10.89.1.9/24", 1500) // a host route the pick must avoid
	m := open(t, testOpts(t))
	front, err := m.Create(ctx, "front", netip.Prefix{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if front.Subnet.String() != "10.89.0.0/24" || front.Gateway.String() != "10.89.0.1" || front.MTU != 1500 ||
		front.Bridge != bridgeName("front") || front.Created.IsZero() {
		t.Fatalf("front = %+v", front)
	}
	back, err := m.Create(ctx, "back", netip.Prefix{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.Subnet.String() != "10.89.2.0/24" {
		t.Fatalf("back's subnet = %s, want 10.89.2.0/24 (10.89.1.0/24 is the host's)", back.Subnet)
	}
	custom, err := m.Create(ctx, "custom", netip.MustParsePrefix("172.30.5.0/26"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if custom.Gateway.String() != "172.30.5.1" {
		t.Fatalf("custom = %+v", custom)
	}
	for _, tc := range []struct {
		name   string
		subnet string
		err    error
	}{
		{"front", "", ErrExists},
		{"other", "10.89.0.128/25", ErrOverlap},
		{"other", "10.89.1.0/24", ErrOverlap},
		{"other", "172.30.0.0/16", ErrOverlap},
	} {
		var subnet netip.Prefix
		if tc.subnet != "" {
			subnet = netip.MustParsePrefix(tc.subnet)
		}
		if _, err := m.Create(ctx, tc.name, subnet, nil); !errors.Is(err, tc.err) {
			t.Errorf("Create(%s, %s) = %v, want %v", tc.name, tc.subnet, err, tc.err)
		}
	}
	if _, err := m.Create(ctx, "bad name", netip.Prefix{}, nil); err == nil {
		t.Error("Create with an invalid name succeeded")
	}

	// The bridge: up, the gateway address, forwarding on.
	br, err := netlink.LinkByName(front.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if br.Type() != "bridge" || br.Attrs().Flags&net.FlagUp == 0 || br.Attrs().MTU != 1500 {
		t.Fatalf("bridge %s: %s %v MTU %d", front.Bridge, br.Type(), br.Attrs().Flags, br.Attrs().MTU)
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.89.0.1/24" {
		t.Fatalf("bridge addresses %v, %v", addrs, err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("ip_forward = %q", b)
	}

	var names []string
	for _, n := range m.List() {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "back,custom,front" {
		t.Errorf("List = %v", names)
	}
	if got, err := m.Get("back"); err != nil || got.Subnet != back.Subnet {
		t.Errorf("Get(back) = %+v, %v", got, err)
	}
	if _, err := m.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v", err)
	}
	comments, rules := tableRules(t)
	if !hasMasq(rules[chainPostrouting], "arrow network front: egress") || len(comments[chainForward]) != 10 {
		t.Errorf("rules: %v", comments)
	}
	logRuleset(t)

	for _, name := range []string{"front", "back", "custom"} {
		if err := m.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, "front"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v", err)
	}
	if l := arrowLinks(t); len(l) != 0 {
		t.Errorf("links left: %v", l)
	}
	if c, _ := tableRules(t); c != nil {
		t.Errorf("table left: %v", c)
	}
	// Arrow turned forwarding on (off when the test began), and off
	// again with the last network.
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("ip_forward after the last network = %q", b)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "x", netip.Prefix{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v", err)
	}
}

func TestAttachAcrossReopen(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	// The MTU comes from the interface of the default route.
	d := addUplink(t, "uplink", "192.0.2.1/24", 1400)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: d.Attrs().Index, Gw: net.ParseIP("192.0.2.254")}); err != nil {
		t.Fatal(err)
	}
	opts := testOpts(t)
	m := open(t, opts)
	labels := map[string]string{"com.docker.compose.project": "demo", "empty": ""}
	if _, err := m.Create(ctx, "front", netip.MustParsePrefix("10.60.0.0/24"), map[string]string{"": "x"}); err == nil || !strings.Contains(err.Error(), "label") {
		t.Fatalf("Create with an empty label key = %v", err)
	}
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), labels)
	if err != nil {
		t.Fatal(err)
	}
	labels["empty"] = "changed by the caller" // the network keeps its own copy
	if n.MTU != 1400 {
		t.Fatalf("MTU = %d, want the uplink's 1400", n.MTU)
	}
	a, err := m.Attach(ctx, "front", "aaaa", "web", []string{"app", "web_1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Attach(ctx, "front", "bbbb", "db", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, "front", "eeee", "bad", []string{"no spaces"}, nil); err == nil || !strings.Contains(err.Error(), "alias") {
		t.Fatalf("Attach with a bad alias = %v", err)
	}
	if a.Address.String() != "10.50.0.2/24" || b.Address.String() != "10.50.0.3/24" || a.Gateway != n.Gateway ||
		len(a.DNS) != 1 || a.DNS[0] != n.Gateway || a.MTU != 1400 || a.MAC.String() == b.MAC.String() {
		t.Fatalf("endpoints %+v %+v", a, b)
	}
	for _, tc := range []struct {
		network, id, name string
		err               error
	}{
		{"front", "aaaa", "other", ErrExists},
		{"front", "cccc", "WEB", ErrExists},
		{"nope", "cccc", "x", ErrNotFound},
	} {
		if _, err := m.Attach(ctx, tc.network, tc.id, tc.name, nil, nil); !errors.Is(err, tc.err) {
			t.Errorf("Attach(%s, %s, %s) = %v, want %v", tc.network, tc.id, tc.name, err, tc.err)
		}
	}
	// The tap: a persistent tap on the bridge, with the MTU, up.
	tap, err := netlink.LinkByName(a.Tap)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName(n.Bridge)
	if tap.Type() != "tuntap" || tap.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().MTU != 1400 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("tap %s: type %s master %d (bridge %d) MTU %d flags %v", a.Tap, tap.Type(), tap.Attrs().MasterIndex, br.Attrs().Index, tap.Attrs().MTU, tap.Attrs().Flags)
	}
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist || tt.Owner != 0 {
		t.Fatalf("tap %s: %+v", a.Tap, tap)
	}
	if err := m.Remove(ctx, "front"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove with arrows attached = %v", err)
	}

	// Across a re-Open: the addresses stay taken, released ones come back last.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = open(t, opts)
	got, err := m.Get("front")
	if err != nil || len(got.Attached) != 2 || got.Attached[0].Address != a.Address || got.Attached[0].Name != "web" ||
		!slices.Equal(got.Attached[0].Aliases, []string{"app", "web_1"}) {
		t.Fatalf("after re-Open: %+v, %v", got, err)
	}
	if want := map[string]string{"com.docker.compose.project": "demo", "empty": ""}; !maps.Equal(got.Labels, want) || !maps.Equal(m.List()[0].Labels, want) {
		t.Fatalf("labels after re-Open: Get %v, List %v; want %v", got.Labels, m.List()[0].Labels, want)
	}
	c, err := m.Attach(ctx, "front", "cccc", "cache", nil, nil)
	if err != nil || c.Address.String() != "10.50.0.4/24" {
		t.Fatalf("Attach after re-Open = %+v, %v", c, err)
	}
	if err := m.Detach(ctx, "front", "bbbb"); err != nil {
		t.Fatal(err)
	}
	if err := m.Detach(ctx, "front", "bbbb"); err != nil {
		t.Fatalf("second Detach = %v", err)
	}
	if err := m.Detach(ctx, "nope", "bbbb"); err != nil {
		t.Fatalf("Detach from no network = %v", err)
	}
	if _, err := netlink.LinkByName(b.Tap); err == nil {
		t.Errorf("tap %s left after Detach", b.Tap)
	}
	d2, err := m.Attach(ctx, "front", "dddd", "", nil, nil)
	if err != nil || d2.Address.String() != "10.50.0.5/24" {
		t.Fatalf("Attach after a Detach = %+v, %v", d2, err)
	}
	seen := map[netip.Prefix]string{}
	for _, ep := range m.List()[0].Attached {
		if other, ok := seen[ep.Address]; ok {
			t.Errorf("%s handed out to %s and %s", ep.Address, other, ep.ArrowID)
		}
		seen[ep.Address] = ep.ArrowID
	}
	for _, id := range []string{"aaaa", "cccc", "dddd"} {
		if err := m.Detach(ctx, "front", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	if l := arrowLinks(t); len(l) != 0 {
		t.Errorf("links left: %v", l)
	}
	if c, _ := tableRules(t); c != nil {
		t.Errorf("table left: %v", c)
	}
}

func TestPublishRules(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	m := open(t, testOpts(t))
	if _, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil); err != nil {
		t.Fatal(err)
	}
	lo := "127.0.0.1"
	a, err := m.Attach(ctx, "front", "aaaa", "web", nil, []api.Port{
		{Proto: "tcp", HostPort: 8080, GuestPort: 80},
		{Proto: "udp", HostIP: lo, HostPort: 5353},
	})
	if err != nil {
		t.Fatal(err)
	}
	comments, rules := tableRules(t)
	logRuleset(t)
	for _, chain := range []string{chainPrerouting, chainOutput} {
		got := strings.Join(dnatTargets(rules[chain]), " ")
		if got != "10.50.0.2:80 10.50.0.2:5353" {
			t.Errorf("%s DNATs to %q", chain, got)
		}
	}
	for _, c := range []string{"egress", "loopback", "hairpin"} {
		if !hasMasq(rules[chainPostrouting], "arrow network front: "+c) {
			t.Errorf("no %s masquerade: %v", c, comments[chainPostrouting])
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + bridgeName("front") + "/route_localnet"); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("route_localnet = %q", b)
	}

	// Conflicts: with another endpoint's port, with a host process's; none
	// leaves a tap, a rule or a taken address behind.
	l, err := net.Listen("tcp4", "127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, p := range []api.Port{
		{Proto: "tcp", HostPort: 8080},
		{Proto: "tcp", HostIP: lo, HostPort: 8080},
		{Proto: "udp", HostPort: 5353},
		{Proto: "tcp", HostPort: 9090},
	} {
		_, err := m.Attach(ctx, "front", "bbbb", "db", nil, []api.Port{{Proto: "tcp", HostPort: 7000}, p})
		if !errors.Is(err, ErrPortInUse) {
			t.Errorf("Attach publishing %s = %v, want ErrPortInUse", p, err)
		}
	}
	if _, err := netlink.LinkByName(tapName("front", "bbbb")); err == nil {
		t.Error("a failed Attach left its tap")
	}
	if c, _ := tableRules(t); fmt.Sprint(c) != fmt.Sprint(comments) {
		t.Errorf("a failed Attach changed the rules:\n%v\n%v", c, comments)
	}
	// The same port over the other protocol is free.
	b, err := m.Attach(ctx, "front", "bbbb", "db", nil, []api.Port{{Proto: "udp", HostPort: 8080}})
	if err != nil || b.Address.String() != "10.50.0.3/24" {
		t.Fatalf("Attach = %+v, %v", b, err)
	}
	if err := m.Detach(ctx, "front", a.ArrowID); err != nil {
		t.Fatal(err)
	}
	_, rules = tableRules(t)
	if got := strings.Join(dnatTargets(rules[chainPrerouting]), " "); got != "10.50.0.3:8080" {
		t.Errorf("after Detach, DNATs to %q", got)
	}
	// A detached endpoint's port is free again.
	if _, err := m.Attach(ctx, "front", "cccc", "", nil, []api.Port{{Proto: "tcp", HostPort: 8080}}); err != nil {
		t.Fatal(err)
	}
}

func TestReconcile(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	opts := testOpts(t)
	m := open(t, opts)
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.Attach(ctx, "front", "aaaa", "web", nil, []api.Port{{Proto: "tcp", HostPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Attach(ctx, "front", "bbbb", "db", nil, []api.Port{{Proto: "tcp", HostPort: 8081}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash and a reboot of sorts: the bridge and a's tap are gone,
	// stray links and a stale rule are there, b is dead.
	for _, name := range []string{n.Bridge, a.Tap} {
		if err := netlinks.Delete(name); err != nil {
			t.Fatal(err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "arwtdeadbeef"
	if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TAP}); err != nil {
		t.Fatal(err)
	}
	attrs = netlink.NewLinkAttrs()
	attrs.Name = "arw-stray"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: chainForward, Table: table},
		Exprs:    []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
		UserData: userdata.AppendString(nil, userdata.TypeComment, "stale")})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	m = open(t, opts)
	if err := m.Reconcile(ctx, map[string]bool{"aaaa": true}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(arrowLinks(t), " ")
	if got != n.Bridge+" "+a.Tap && got != a.Tap+" "+n.Bridge {
		t.Errorf("links after Reconcile: %q, want %s and %s", got, n.Bridge, a.Tap)
	}
	if _, err := netlink.LinkByName(b.Tap); err == nil {
		t.Errorf("dead arrow's tap %s left", b.Tap)
	}
	info, _ := m.Get("front")
	if len(info.Attached) != 1 || info.Attached[0].ArrowID != "aaaa" {
		t.Errorf("attached after Reconcile: %+v", info.Attached)
	}
	comments, rules := tableRules(t)
	if strings.Contains(fmt.Sprint(comments), "stale") {
		t.Errorf("stale rule survived: %v", comments)
	}
	if got := strings.Join(dnatTargets(rules[chainPrerouting]), " "); got != "10.50.0.2:8080" {
		t.Errorf("DNATs after Reconcile: %q", got)
	}
	// The DNS responder is back.
	if addr := lookupA(t, "udp", netip.AddrPortFrom(n.Gateway, 53), "web."); addr != "10.50.0.2" {
		t.Errorf("web. = %q after Reconcile", addr)
	}
	// The dead arrow's port and address are free again.
	if e, err := m.Attach(ctx, "front", "eeee", "", nil, []api.Port{{Proto: "tcp", HostPort: 8081}}); err != nil || e.Address.String() != "10.50.0.4/24" {
		t.Errorf("Attach after Reconcile = %+v, %v", e, err)
	}
	// Nothing lives: everything goes.
	if err := m.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	if l := arrowLinks(t); len(l) != 0 {
		t.Errorf("links left: %v", l)
	}
	if c, _ := tableRules(t); c != nil {
		t.Errorf("table left: %v", c)
	}
}

// exchange sends a query for name (type A) to server over network and
// returns the response.
func exchange(t *testing.T, network string, server netip.AddrPort, name string) dnsmessage.Message {
	t.Helper()
	c, err := net.DialTimeout(network, server.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchangeOn(t, c, network, name)
}

// exchangeOn is exchange over the connection c.
func exchangeOn(t *testing.T, c net.Conn, network, name string) dnsmessage.Message {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	q := query(t, 4242, name, dnsmessage.TypeA)
	var resp []byte
	if network == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			t.Fatal(err)
		}
		r, err := readTCPMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		resp = r
	} else {
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		resp = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.ID != 4242 {
		t.Fatalf("response ID %d", m.ID)
	}
	return m
}

// lookupA returns the A record of name from server, or the response code.
func lookupA(t *testing.T, network string, server netip.AddrPort, name string) string {
	t.Helper()
	m := exchange(t, network, server, name)
	for _, a := range m.Answers {
		if ar, ok := a.Body.(*dnsmessage.AResource); ok {
			return netip.AddrFrom4(ar.A).String()
		}
	}
	return m.RCode.String()
}

// lookupAll is lookupA with every A record of the answer, space-separated.
func lookupAll(t *testing.T, network string, server netip.AddrPort, name string) string {
	t.Helper()
	m := exchange(t, network, server, name)
	var addrs []string
	for _, a := range m.Answers {
		if ar, ok := a.Body.(*dnsmessage.AResource); ok {
			addrs = append(addrs, netip.AddrFrom4(ar.A).String())
		}
	}
	if len(addrs) == 0 {
		return m.RCode.String()
	}
	return strings.Join(addrs, " ")
}

// fakeUpstream serves DNS on a UDP and a TCP port of 127.0.0.1, answering
// every A query with 192.0.2.7.
func fakeUpstream(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(pc.LocalAddr().String())
	l, err := net.Listen("tcp4", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	answer := func(q []byte) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
			return nil
		}
		m.Response = true
		m.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}},
		}}
		b, _ := m.Pack()
		return b
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := answer(buf[:n]); r != nil {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				q, err := readTCPMsg(c)
				if err == nil {
					_ = writeTCPMsg(c, answer(q))
				}
			}()
		}
	}()
	return ap
}

func TestDNS(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	up := fakeUpstream(t)
	// The first nameserver does not answer: the second one does.
	m := open(t, testOpts(t, netip.MustParseAddrPort("127.0.0.1:9"), up))
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, "front", "aaaa", "web", []string{"app"}, nil); err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(n.Gateway, 53)
	for _, tc := range []struct{ network, name, want string }{
		{"udp", "web.", "10.50.0.2"},
		{"udp", "Web.Front.", "10.50.0.2"},
		{"tcp", "web.front.", "10.50.0.2"},
		{"udp", "db.", "RCodeNameError"},
		{"udp", "db.front.", "RCodeNameError"},
		{"udp", "example.com.", "192.0.2.7"},
		{"tcp", "example.com.", "192.0.2.7"},
	} {
		if got := lookupA(t, tc.network, server, tc.name); got != tc.want {
			t.Errorf("%s over %s = %s, want %s", tc.name, tc.network, got, tc.want)
		}
	}
	// Kept current as arrows come and go.
	if _, err := m.Attach(ctx, "front", "bbbb", "db", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := lookupA(t, "udp", server, "db."); got != "10.50.0.3" {
		t.Errorf("db. after Attach = %s", got)
	}
	// An alias two arrows share (a compose service's two replicas)
	// resolves to both; over TCP as over UDP.
	if _, err := m.Attach(ctx, "front", "cccc", "web2", []string{"APP"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"udp", "tcp"} {
		if got := lookupAll(t, proto, server, "app."); got != "10.50.0.2 10.50.0.4" && got != "10.50.0.4 10.50.0.2" {
			t.Errorf("app. over %s, shared = %s", proto, got)
		}
	}
	if got := lookupAll(t, "udp", server, "app.front."); !strings.Contains(got, "10.50.0.2") || !strings.Contains(got, "10.50.0.4") {
		t.Errorf("app.front. = %s", got)
	}
	// A rename: the new name resolves, the old one no longer; the
	// aliases stay. A name another arrow has is refused.
	if err := m.SetName(ctx, "front", "aaaa", "DB"); !errors.Is(err, ErrExists) {
		t.Errorf("SetName to another's name = %v", err)
	}
	if err := m.SetName(ctx, "front", "zzzz", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetName of no endpoint = %v", err)
	}
	if err := m.SetName(ctx, "front", "aaaa", "site"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"site.": "10.50.0.2", "site.front.": "10.50.0.2", "web.": "RCodeNameError"} {
		if got := lookupA(t, "udp", server, name); got != want {
			t.Errorf("%s after SetName = %s, want %s", name, got, want)
		}
	}
	if got := lookupAll(t, "udp", server, "app."); !strings.Contains(got, "10.50.0.2") {
		t.Errorf("app. after SetName = %s", got)
	}
	// The alias goes with its arrow: the other replica keeps it.
	if err := m.Detach(ctx, "front", "aaaa"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"site.": "RCodeNameError", "app.": "10.50.0.4"} {
		if got := lookupAll(t, "udp", server, name); got != want {
			t.Errorf("%s after Detach = %s, want %s", name, got, want)
		}
	}
	if err := m.Detach(ctx, "front", "cccc"); err != nil {
		t.Fatal(err)
	}
	if got := lookupA(t, "udp", server, "app."); got != "RCodeNameError" {
		t.Errorf("app. once no arrow has it = %s", got)
	}
	// With no nameserver answering: SERVFAIL, in bounded time.
	m2 := open(t, testOpts(t, netip.MustParseAddrPort("127.0.0.1:9")))
	n2, err := m2.Create(ctx, "back", netip.MustParsePrefix("10.51.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := lookupA(t, "udp", netip.AddrPortFrom(n2.Gateway, 53), "example.com."); got != "RCodeServerFailure" {
		t.Errorf("with no upstream: %s", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("SERVFAIL took %s", d)
	}
	if err := m2.Remove(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	// A removed network's responder is gone.
	if c, err := net.Dial("tcp", netip.AddrPortFrom(n2.Gateway, 53).String()); err == nil {
		c.Close()
		t.Error("the removed network's responder still listens")
	}
}

// vmNetns returns a network namespace standing in for an arrow's VM, with
// the endpoint's address on a veth that replaces its tap on the bridge, and
// runs f in it (on a locked thread).
func vmNetns(t *testing.T, ep Endpoint, bridge string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	vm, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := netns.Set(host); err != nil {
		t.Fatal(err)
	}
	if err := netlinks.Delete(ep.Tap); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = ep.Tap
	attrs.MasterIndex = br.Attrs().Index
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerHardwareAddr: ep.MAC}); err != nil {
		t.Fatal(err)
	}
	veth, _ := netlink.LinkByName(ep.Tap)
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(vm)); err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(vm); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(host); err != nil {
			panic(err) // the thread must not go back to the pool in the wrong namespace
		}
	}()
	for _, name := range []string{"lo", "eth0"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	eth0, _ := netlink.LinkByName("eth0")
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ep.Address.Addr().AsSlice(), Mask: net.CIDRMask(ep.Address.Bits(), 32)}}
	if err := netlink.AddrAdd(eth0, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: ep.Gateway.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	f()
}

func TestTraffic(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	addUplink(t, "uplink", "192.0.2.1/24", 1500)
	m := open(t, testOpts(t, fakeUpstream(t)))
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := m.Attach(ctx, "front", "aaaa", "web", nil, []api.Port{{Proto: "tcp", HostPort: 8080, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		l   net.Listener
		dns net.Conn
	)
	vmNetns(t, ep, n.Bridge, func() {
		// Sockets belong to the namespace they are made in.
		if l, err = net.Listen("tcp4", ":80"); err != nil {
			t.Fatal(err)
		}
		if dns, err = net.Dial("udp4", netip.AddrPortFrom(ep.DNS[0], 53).String()); err != nil {
			t.Fatal(err)
		}
	})
	defer l.Close()
	defer dns.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s to %s\n", c.LocalAddr(), c.RemoteAddr())
			c.Close()
		}
	}()
	// From the VM: its own name, and a forwarded one.
	for name, want := range map[string]string{"web.front.": "10.50.0.2", "example.com.": "192.0.2.7"} {
		m := exchangeOn(t, dns, "udp", name)
		if len(m.Answers) != 1 || netip.AddrFrom4(m.Answers[0].Body.(*dnsmessage.AResource).A).String() != want {
			t.Errorf("%s from the VM: %+v", name, m)
		}
	}
	// The published port, from the host on its loopback and on another
	// of its addresses.
	for _, hostAddr := range []string{"127.0.0.1:8080", "192.0.2.1:8080", "10.50.0.1:8080"} {
		c, err := net.DialTimeout("tcp4", hostAddr, 3*time.Second)
		if err != nil {
			t.Errorf("dial %s: %v", hostAddr, err)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 200)
		k, _ := c.Read(buf)
		c.Close()
		if !strings.HasPrefix(string(buf[:k]), "hello from 10.50.0.2:80") {
			t.Errorf("via %s: %q", hostAddr, buf[:k])
		} else {
			t.Logf("via %s: %s", hostAddr, strings.TrimSpace(string(buf[:k])))
		}
	}
	if err := m.Detach(ctx, "front", "aaaa"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	if l := arrowLinks(t); len(l) != 0 {
		t.Errorf("links left: %v", l)
	}
}
