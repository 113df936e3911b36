package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/netlinks"
)

// dumpRetries bounds the retries of a netlink dump the kernel interrupted
// because what it listed changed meanwhile.
const dumpRetries = 5

// retryDump calls f again while the kernel reports an interrupted dump.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		v   []T
		err error
	)
	for range dumpRetries {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ensureBridge creates the network's bridge when it is missing and gives
// it its MTU, its gateway address and the up state, and lets it route
// 127.0.0.0/8 sources (for ports published on the loopback address; the
// prefilter chain drops what an arrow sends to or from 127.0.0.0/8).
func ensureBridge(n *netRecord) error {
	l, err := netlinks.ByName(n.Bridge)
	if err != nil {
		return err
	}
	if l != nil && l.Type() != "bridge" {
		return fmt.Errorf("link %s exists and is a %s, not a bridge", n.Bridge, l.Type())
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.Bridge
		attrs.MTU = n.MTU
		br := &netlink.Bridge{LinkAttrs: attrs}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if l, err = netlink.LinkByName(n.Bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
	}
	if l.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(l, n.MTU); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", n.Bridge, n.MTU, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   n.Gateway.AsSlice(),
		Mask: net.CIDRMask(n.Subnet.Bits(), 32),
	}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("bridge %s: address %s: %w", n.Bridge, addr.IPNet, err)
	}
	if err := writeSysctl("net/ipv4/conf/"+n.Bridge+"/route_localnet", "1"); err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: up: %w", n.Bridge, err)
	}
	return nil
}

// ensureTap creates the endpoint's tap when it is missing: persistent,
// owned by root, single-queue (QEMU opens it with ifname=), then enslaves
// it to the network's bridge with the network's MTU and brings it up.
func ensureTap(ep *Endpoint, n *netRecord) error {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	l, err := netlinks.ByName(ep.Tap)
	if err != nil {
		return err
	}
	if l != nil && l.Type() != "tuntap" {
		return fmt.Errorf("link %s exists and is a %s, not a tap", ep.Tap, l.Type())
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = ep.Tap
		tap := &netlink.Tuntap{
			LinkAttrs: attrs,
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | unix.IFF_TUN_EXCL,
			Owner:     0,
			Group:     0,
		}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create tap %s: %w", ep.Tap, err)
		}
		if l, err = netlink.LinkByName(ep.Tap); err != nil {
			return fmt.Errorf("tap %s: %w", ep.Tap, err)
		}
	}
	if l.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(l, n.MTU); err != nil {
			return fmt.Errorf("tap %s: set MTU %d: %w", ep.Tap, n.MTU, err)
		}
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("tap %s: enslave to %s: %w", ep.Tap, n.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("tap %s: up: %w", ep.Tap, err)
	}
	return nil
}

// removeStrayLinks deletes the links named like Arrow's bridges and taps
// that are not in known.
func removeStrayLinks(known map[string]bool) error {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if known[name] || !(strings.HasPrefix(name, bridgePrefix) || strings.HasPrefix(name, tapPrefix)) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete stray link %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// defaultMTU is the MTU of the interface of the host's IPv4 default route,
// 1500 when there is none.
func defaultMTU() (int, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex == 0 {
			continue
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		if mtu := l.Attrs().MTU; mtu >= 576 {
			return mtu, nil
		}
	}
	return 1500, nil
}

// usedPrefixes returns the IPv4 prefixes the host routes (in every routing
// table, but for default routes) or has addresses in.
func usedPrefixes() ([]netip.Prefix, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var used []netip.Prefix
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			used = append(used, p.Masked())
		}
	}
	return used, nil
}

// prefixOf converts an IPv4 net.IPNet.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	a = a.Unmap()
	if !a.Is4() || (bits != 32 && bits != 128) {
		return netip.Prefix{}, false
	}
	if bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), ones >= 0
}

// ipForward is the sysctl of IPv4 forwarding (net.ipv4.ip_forward).
const ipForward = "net/ipv4/ip_forward"

// forwardingOn reports whether IPv4 forwarding is on.
func forwardingOn() (bool, error) {
	b, err := os.ReadFile("/proc/sys/" + ipForward)
	if err != nil {
		return false, fmt.Errorf("sysctl net.ipv4.ip_forward: %w", err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

// writeSysctl writes value to /proc/sys/<key> when it holds another.
func writeSysctl(key, value string) error {
	path := "/proc/sys/" + key
	if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}
