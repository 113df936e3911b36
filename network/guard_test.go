package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arrowsys/arrow/internal/netlinks"
)

// inNS runs f on a locked thread in the network namespace ns, and puts
// the thread back in the test's namespace after.
func inNS(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(host); err != nil {
			panic(err) // the thread must not go back to the pool in the wrong namespace
		}
	}()
	f()
}

// sideNetns moves the peer of the uplink name (name+"p") into a new
// network namespace, gives it addr (a CIDR) and a default route via gw,
// and returns the namespace: a machine on one of the host's other
// interfaces.
func sideNetns(t *testing.T, name, addr, gw string) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	side, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { side.Close() })
	if err := netns.Set(host); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName(name + "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(side)); err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(side); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(host); err != nil {
			panic(err)
		}
	}()
	for _, n := range []string{"lo", name + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := netlink.LinkByName(name + "p")
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		t.Fatal(err)
	}
	return side
}

// serve accepts connections on l and writes what to each, until l closes.
func serve(l net.Listener, what string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s to %s\n", what, c.RemoteAddr())
			c.Close()
		}
	}()
}

// listen listens on addr (TCP), closed at the end of the test.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// fetch dials addr over TCP, from local when valid, and returns the first
// line the server writes.
func fetch(addr string, local netip.Addr, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if len(b) == 0 && err == nil {
		err = errors.New("connection closed without a word")
	}
	return strings.TrimSpace(string(b)), err
}

// writeNetSysctl writes a sysctl of the calling thread's network
// namespace.
func writeNetSysctl(t *testing.T, key, value string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}

// routeLoopbackVia makes the calling thread's namespace (a VM's) send
// what it addresses to 127.0.0.0/8 to gw on eth0, as a guest root that
// attacks its host would (the CVE-2020-8558 way): no 127.0.0.1 of its own,
// route_localnet on, a route via the gateway.
func routeLoopbackVia(t *testing.T, gw netip.Addr) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("127.0.0.1/8")
	if err := netlink.AddrDel(lo, a); err != nil {
		t.Fatalf("delete 127.0.0.1/8 from lo: %v", err)
	}
	for _, k := range []string{"all", "eth0"} {
		writeNetSysctl(t, "net/ipv4/conf/"+k+"/route_localnet", "1")
	}
	eth0, err := netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	_, lonet, _ := net.ParseCIDR("127.0.0.0/8")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: lonet, Gw: gw.AsSlice()}); err != nil {
		t.Fatal(err)
	}
}

// TestGuestAgainstHost plays a guest on a bridge network that attacks its
// host: it reaches neither the host's loopback nor the host's addresses,
// nor can it send as another MAC or address; and checks that what it may
// do still works: the outside, its DNS, its published ports.
func TestGuestAgainstHost(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	const short = 700 * time.Millisecond
	// The host's uplink, with a machine of the outside behind it.
	addUplink(t, "uplink", "192.0.2.1/24", 1500)
	outside := sideNetns(t, "uplink", "192.0.2.2/24", "192.0.2.1")
	inNS(t, outside, func() { serve(listen(t, "192.0.2.2:7000"), "outside") })
	// The host's services: on its loopback alone, on its uplink address.
	serve(listen(t, "127.0.0.1:7001"), "host loopback")
	serve(listen(t, "192.0.2.1:7002"), "host uplink")

	m := open(t, testOpts(t, fakeUpstream(t)))
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The gateway is one of the host's addresses too.
	serve(listen(t, netip.AddrPortFrom(n.Gateway, 7003).String()), "host gateway")
	serve(listen(t, "0.0.0.0:7004"), "host wildcard")
	lo := "127.0.0.1"
	// The attacker publishes a port on 127.0.0.1, a neighbour one on
	// every address; another arrow, with no VM, is the one whose address
	// the attacker tries to take.
	ep, err := m.Attach(ctx, "front", "aaaa", "web", nil, []api.Port{{Proto: "tcp", HostIP: lo, HostPort: 8080, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	neighbour, err := m.Attach(ctx, "front", "bbbb", "db", nil, []api.Port{{Proto: "tcp", HostPort: 8081, GuestPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Attach(ctx, "front", "cccc", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	logRuleset(t)

	var vm netns.NsHandle
	vmNetns(t, neighbour, n.Bridge, func() { serve(listen(t, ":80"), "neighbour") })
	vmNetns(t, ep, n.Bridge, func() {
		var err error
		if vm, err = netns.Get(); err != nil {
			t.Fatal(err)
		}
		serve(listen(t, ":80"), "arrow")
		routeLoopbackVia(t, ep.Gateway)
	})
	defer vm.Close()

	// What the guest may do.
	inNS(t, vm, func() {
		// The outside, and (hairpin) a neighbour's published port
		// through the host's addresses.
		for _, addr := range []string{"192.0.2.2:7000", "192.0.2.1:8081", "10.50.0.1:8081"} {
			got, err := fetch(addr, netip.Addr{}, 3*time.Second)
			if err != nil {
				t.Errorf("from the arrow, %s: %v", addr, err)
			} else {
				t.Logf("from the arrow, %s: %s", addr, got)
			}
		}
		for _, network := range []string{"udp", "tcp"} {
			if got := lookupA(t, network, netip.AddrPortFrom(ep.DNS[0], 53), "web."); got != "10.50.0.2" {
				t.Errorf("DNS over %s from the arrow: %s", network, got)
			}
		}
	})
	// The published port on 127.0.0.1, from the host.
	if got, err := fetch("127.0.0.1:8080", netip.Addr{}, 3*time.Second); err != nil || !strings.HasPrefix(got, "arrow to ") {
		t.Errorf("the port published on 127.0.0.1, from the host: %q, %v", got, err)
	}

	// What the guest may not do.
	attacks := []struct {
		name  string
		addr  string
		local netip.Addr
	}{
		{"the host's loopback", "127.0.0.1:7001", netip.Addr{}},
		{"the host's loopback, another address of it", "127.0.0.2:7004", netip.Addr{}},
		{"the host's uplink address", "192.0.2.1:7002", netip.Addr{}},
		{"the host's wildcard service on its uplink address", "192.0.2.1:7004", netip.Addr{}},
		{"the gateway", "10.50.0.1:7003", netip.Addr{}},
		{"the gateway's wildcard service", "10.50.0.1:7004", netip.Addr{}},
		{"the outside, as another arrow's address", "192.0.2.2:7000", other.Address.Addr()},
		{"the outside, as a made-up address", "192.0.2.2:7000", netip.MustParseAddr("10.50.0.99")},
	}
	inNS(t, vm, func() {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		// The spoofed sources are the guest's own addresses too, so
		// that its kernel sends from them.
		for _, a := range []string{other.Address.Addr().String() + "/32", "10.50.0.99/32"} {
			addr, _ := netlink.ParseAddr(a)
			if err := netlink.AddrAdd(eth0, addr); err != nil {
				t.Fatal(err)
			}
		}
		for _, a := range attacks {
			if got, err := fetch(a.addr, a.local, short); err == nil {
				t.Errorf("from the arrow, %s (%s from %v): reached: %q", a.name, a.addr, a.local, got)
			}
		}
		// Another MAC: the ARP and the packets are dropped.
		if err := netlink.LinkSetHardwareAddr(eth0, other.MAC); err != nil {
			t.Fatal(err)
		}
		if got, err := fetch("192.0.2.2:7000", netip.Addr{}, short); err == nil {
			t.Errorf("from the arrow with another arrow's MAC: reached the outside: %q", got)
		}
		if err := netlink.LinkSetHardwareAddr(eth0, ep.MAC); err != nil {
			t.Fatal(err)
		}
		// Its own MAC and address again: it works.
		if _, err := fetch("192.0.2.2:7000", netip.Addr{}, 3*time.Second); err != nil {
			t.Errorf("from the arrow, back to its own MAC: %v", err)
		}
	})

	// Nor can it lure the host: it answers the host's ARP for another
	// arrow's address, and the host's connection to that arrow.
	spoofed := netip.AddrPortFrom(other.Address.Addr(), 80).String()
	if got, err := fetch(spoofed, netip.Addr{}, short); err == nil {
		t.Errorf("from the host, %s reached the arrow that took its address: %q", spoofed, got)
	}

	// The attacks are real: without the rules that guard the host, the
	// guest reaches its loopback and its addresses.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	for _, ch := range []string{chainPrefilter, chainInput} {
		c.FlushChain(&nftables.Chain{Name: ch, Table: table})
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	inNS(t, vm, func() {
		for _, a := range attacks {
			if got, err := fetch(a.addr, a.local, 3*time.Second); err != nil {
				t.Errorf("unguarded, from the arrow, %s (%s from %v): %v", a.name, a.addr, a.local, err)
			} else {
				t.Logf("unguarded, from the arrow, %s: %s", a.name, got)
			}
		}
	})
	if got, err := fetch(spoofed, netip.Addr{}, 3*time.Second); err != nil || !strings.HasPrefix(got, "arrow to ") {
		t.Errorf("unguarded, from the host, %s: %q, %v; want the arrow that took the address", spoofed, got, err)
	}
	// A rebuild from the state puts the guard back.
	if _, err := m.Attach(ctx, "front", "dddd", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	inNS(t, vm, func() {
		for _, a := range attacks {
			if got, err := fetch(a.addr, a.local, short); err == nil {
				t.Errorf("guarded again, from the arrow, %s (%s from %v): reached: %q", a.name, a.addr, a.local, got)
			}
		}
	})
	if got, err := fetch(spoofed, netip.Addr{}, short); err == nil {
		t.Errorf("guarded again, from the host, %s reached the arrow that took its address: %q", spoofed, got)
	}
}

// TestForwardingGuard checks that Arrow turning IPv4 forwarding on does
// not make the host a router between its other interfaces, and that a host
// that forwarded already keeps doing so.
func TestForwardingGuard(t *testing.T) {
	if !inNetns(t) {
		return
	}
	for _, tc := range []struct {
		name              string
		forwardingAlready bool
	}{
		{"forwarding off before", false},
		{"forwarding on before", true},
	} {
		t.Run(tc.name, func(t *testing.T) { forwardingGuard(t, tc.forwardingAlready) })
	}
}

func forwardingGuard(t *testing.T, already bool) {
	ctx := context.Background()
	const short = 700 * time.Millisecond
	// Two other interfaces of the host, a machine behind each.
	addUplink(t, "uplink", "192.0.2.1/24", 1500)
	outside := sideNetns(t, "uplink", "192.0.2.2/24", "192.0.2.1")
	addUplink(t, "lan", "198.51.100.1/24", 1500)
	lan := sideNetns(t, "lan", "198.51.100.2/24", "198.51.100.1")
	t.Cleanup(func() {
		_ = netlinks.Delete("uplink")
		_ = netlinks.Delete("lan")
	})
	inNS(t, outside, func() { serve(listen(t, "192.0.2.2:7000"), "outside") })
	forwarding := "0"
	if already {
		forwarding = "1"
	}
	writeNetSysctl(t, "net/ipv4/ip_forward", forwarding)

	opts := testOpts(t)
	m := open(t, opts)
	n, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := forwardingOn(); err != nil || !on {
		t.Fatalf("forwarding on = %v, %v", on, err)
	}
	ep, err := m.Attach(ctx, "front", "aaaa", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var vm netns.NsHandle
	vmNetns(t, ep, n.Bridge, func() {
		if vm, err = netns.Get(); err != nil {
			t.Fatal(err)
		}
	})
	defer vm.Close()
	inNS(t, vm, func() {
		if _, err := fetch("192.0.2.2:7000", netip.Addr{}, 3*time.Second); err != nil {
			t.Errorf("from the arrow, the outside: %v", err)
		}
	})
	// The guard survives a restart of the daemon: the rules rebuilt by
	// the next one have it too.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = open(t, opts)
	if _, err := m.Attach(ctx, "front", "bbbb", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	inNS(t, lan, func() {
		got, err := fetch("192.0.2.2:7000", netip.Addr{}, short)
		if already && err != nil {
			t.Errorf("the host forwarded before Arrow: from the lan, the outside: %v", err)
		}
		if !already && err == nil {
			t.Errorf("Arrow turned forwarding on: from the lan, the outside: reached: %q", got)
		}
	})
	for _, id := range []string{"aaaa", "bbbb"} {
		if err := m.Detach(ctx, "front", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	// The host's forwarding is as it was.
	if on, err := forwardingOn(); err != nil || on != already {
		t.Errorf("after the last network, forwarding on = %v, %v; want %v", on, err, already)
	}
	if c, _ := tableRules(t); c != nil {
		t.Errorf("table left: %v", c)
	}
}

// bridgeTable returns the rules of the bridge arrow table by chain, nil
// when there is no table.
func bridgeTable(t *testing.T) map[string][]*nftables.Rule {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table, err := c.ListTableOfFamily(TableName, nftables.TableFamilyBridge)
	if err != nil {
		return nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*nftables.Rule{}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rs, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatal(err)
		}
		out[ch.Name] = rs
	}
	return out
}

// cmpData returns the data of the rule's comparisons.
func cmpData(r *nftables.Rule) [][]byte {
	var out [][]byte
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Cmp); ok {
			out = append(out, c.Data)
		}
	}
	return out
}

// TestAntiSpoofingRules checks that the bridge table follows the
// endpoints: a chain per tap, with its MAC and address, none for a
// detached one, no table with no network.
func TestAntiSpoofingRules(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ctx := context.Background()
	m := open(t, testOpts(t))
	if _, err := m.Create(ctx, "front", netip.MustParsePrefix("10.50.0.0/24"), nil); err != nil {
		t.Fatal(err)
	}
	if tb := bridgeTable(t); len(tb) != 1 || len(tb[chainPrerouting]) != 0 {
		t.Errorf("with no endpoint: %v", tb)
	}
	a, err := m.Attach(ctx, "front", "aaaa", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Attach(ctx, "front", "bbbb", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tb := bridgeTable(t)
	if len(tb[chainPrerouting]) != 2 {
		t.Fatalf("prerouting: %d rules, want a jump per tap", len(tb[chainPrerouting]))
	}
	for _, ep := range []Endpoint{a, b} {
		rules := tb[ep.Tap]
		if len(rules) != 5 {
			t.Fatalf("chain %s: %d rules", ep.Tap, len(rules))
		}
		addr := ep.Address.Addr().As4()
		if d := cmpData(rules[0]); len(d) != 1 || !bytes.Equal(d[0], ep.MAC) {
			t.Errorf("%s: MAC rule compares %x, want %s", ep.Tap, d, ep.MAC)
		}
		if d := cmpData(rules[1]); len(d) != 2 || !bytes.Equal(d[1], addr[:]) {
			t.Errorf("%s: IPv4 rule compares %x, want %s", ep.Tap, d, ep.Address.Addr())
		}
		if d := cmpData(rules[3]); len(d) != 3 || !bytes.Equal(d[2], append(slices.Clone([]byte(ep.MAC)), addr[:]...)) {
			t.Errorf("%s: ARP rule compares %x", ep.Tap, d)
		}
		if v, ok := rules[4].Exprs[len(rules[4].Exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
			t.Errorf("%s: last rule %v, want drop", ep.Tap, rules[4].Exprs)
		}
	}
	if err := m.Detach(ctx, "front", "aaaa"); err != nil {
		t.Fatal(err)
	}
	tb = bridgeTable(t)
	if _, ok := tb[a.Tap]; ok || len(tb[chainPrerouting]) != 1 || len(tb[b.Tap]) != 5 {
		t.Errorf("after Detach: %v", tb)
	}
	if err := m.Detach(ctx, "front", "bbbb"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	if tb := bridgeTable(t); tb != nil {
		t.Errorf("bridge table left: %v", tb)
	}
}
