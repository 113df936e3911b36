package network

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/nftexpr"
)

// TableName is the name of the two nftables tables the package owns: inet
// arrow (routing, NAT, filtering of what reaches the host) and bridge arrow
// (anti-spoofing on the taps). Both are rebuilt whole from the state on
// every change, in one transaction, and deleted when no network remains.
const TableName = "arrow"

// Chains of the inet table, with their hooks:
//
//	postrouting  nat    priority srcnat  masquerade: egress, loopback and hairpin
//	prerouting   nat    priority dstnat  published ports, from outside
//	output       nat    priority dstnat  published ports, from the host itself
//	prefilter    filter priority filter  hook prerouting: no 127.0.0.0/8 from a bridge
//	input        filter priority filter  no new connection from a bridge to the host
//	forward      filter priority filter  isolation between networks, the forwarding guard
//
// and of the bridge table:
//
//	prerouting   filter priority -200    jumps to the chain of the tap a frame enters by
//	arwt...      (one per endpoint)      the endpoint's MAC and IPv4 address, or drop
const (
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPrefilter   = "prefilter"
	chainInput       = "input"
	chainForward     = "forward"
)

// Ethernet types the taps' chains let through.
const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
)

// loopbackNet is 127.0.0.0/8.
var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// applyRules replaces the tables with the ones nets call for, in a single
// nftables transaction: no packet ever sees a half-built table, and no
// rule the state does not call for survives. guardForward adds the
// forwarding guard (see [Manager.claimForwarding]). With no network the
// tables are deleted, but for the guard when guardForward.
func applyRules(nets map[string]*netRecord, guardForward bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	buildRules(c, nets, guardForward)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write tables inet %s and bridge %s: %w", TableName, TableName, err)
	}
	return nil
}

// buildRules queues, on c, the transaction that applyRules flushes.
func buildRules(c *nftables.Conn, nets map[string]*netRecord, guardForward bool) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	bt := &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}
	// Adding a table first makes its deletion valid when it is absent.
	for _, tb := range []*nftables.Table{t, bt} {
		c.AddTable(tb)
		c.DelTable(tb)
	}
	if len(nets) == 0 && !guardForward {
		return
	}
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	post := c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	// The prefilter runs after dstnat, so that what a published port
	// redirected is seen with its new destination and its ct status.
	prefilter := c.AddChain(&nftables.Chain{Name: chainPrefilter, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: chainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	add := func(tb *nftables.Table, ch *nftables.Chain, comment string, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{
			Table:    tb,
			Chain:    ch,
			Exprs:    slices.Concat(exprs...),
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
		})
	}
	names := make([]string, 0, len(nets))
	for name := range nets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := nets[name]
		tag := "arrow network " + n.Name
		fromBridge := ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, n.Bridge)
		// Egress: what leaves the network for elsewhere takes the
		// host's address.
		add(t, post, tag+": egress", nftexpr.IPv4(), ipSaddr(n.Subnet), ipDaddrNot(n.Subnet),
			ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, n.Bridge), ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, "lo"), nftexpr.Masq())
		// Ports published on 127.0.0.1 reach the arrow from a loopback
		// source it could not answer.
		add(t, post, tag+": loopback", nftexpr.IPv4(), ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge),
			ipSaddr(loopbackNet), nftexpr.Masq())
		// Hairpin: an arrow reaching a port published by an arrow of
		// the same network through a host address.
		add(t, post, tag+": hairpin", nftexpr.IPv4(), ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge),
			ipSaddr(n.Subnet), nftexpr.CtDNATed(), nftexpr.Masq())
		// The DNS responder on the gateway is never redirected by a
		// published port 53.
		for _, proto := range []string{"udp", "tcp"} {
			add(t, pre, tag+": dns "+proto, nftexpr.IPv4(), fromBridge,
				ipDaddr(n.Gateway), l4port(proto, 53), nftexpr.Verdict(expr.VerdictAccept))
		}
		// The bridge has route_localnet=1, which ports published on
		// 127.0.0.1 need (the host's connection leaves by the bridge
		// with a loopback source), and which would otherwise let an
		// arrow reach the host's 127.0.0.0/8 services (the pattern of
		// CVE-2020-8558). Only the replies of those DNATed connections
		// may come in for a loopback address; nothing may come in from
		// one.
		add(t, prefilter, tag+": no loopback source", nftexpr.IPv4(), fromBridge, ipSaddr(loopbackNet), nftexpr.Verdict(expr.VerdictDrop))
		// (Accept ends this chain alone; a packet without conntrack
		// entry, which ct status does not match, is dropped.)
		add(t, prefilter, tag+": loopback destination if DNATed", nftexpr.IPv4(), fromBridge, ipDaddrIn(loopbackNet),
			nftexpr.CtDNATed(), nftexpr.Verdict(expr.VerdictAccept))
		add(t, prefilter, tag+": no loopback destination", nftexpr.IPv4(), fromBridge, ipDaddrIn(loopbackNet),
			nftexpr.Verdict(expr.VerdictDrop))
		// The host: an arrow reaches none of its addresses (what goes
		// through the input hook: local, broadcast and multicast
		// destinations alike) but for its network's DNS responder,
		// the replies to the host's own connections, and published
		// ports.
		add(t, in, tag+": host replies", fromBridge, nftexpr.CtStateEstablishedRelated(), nftexpr.Verdict(expr.VerdictAccept))
		add(t, in, tag+": host published", fromBridge, nftexpr.CtDNATed(), nftexpr.Verdict(expr.VerdictAccept))
		for _, proto := range []string{"udp", "tcp"} {
			add(t, in, tag+": host dns "+proto, nftexpr.IPv4(), fromBridge,
				ipDaddr(n.Gateway), l4port(proto, 53), nftexpr.Verdict(expr.VerdictAccept))
		}
		add(t, in, tag+": no host access", fromBridge, nftexpr.Verdict(expr.VerdictDrop))
		// Forwarding: networks do not reach each other; anything else
		// in or out of the bridge is accepted.
		add(t, fwd, tag+": isolation", fromBridge,
			ifnamePrefix(unix.NFT_META_OIFNAME, bridgePrefix), ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, n.Bridge),
			nftexpr.Verdict(expr.VerdictDrop))
		add(t, fwd, tag+": out", fromBridge, nftexpr.Verdict(expr.VerdictAccept))
		add(t, fwd, tag+": in", ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge), nftexpr.Verdict(expr.VerdictAccept))
	}
	if guardForward {
		// Arrow turned IPv4 forwarding on, which the kernel does for
		// every interface at once: forwarding that involves no arrow
		// bridge (accepted above) is dropped, so that the host does
		// not become a router for its other interfaces. The
		// per-interface conf/IF/forwarding cannot do this: it is
		// decided by the input interface, and the replies to the
		// arrows' egress come in by the uplink, whose forwarding would
		// then route everything else that comes in by it too.
		add(t, fwd, "arrow: no forwarding between other interfaces", nftexpr.IPv4(), nftexpr.Verdict(expr.VerdictDrop))
	}
	for _, name := range names {
		n := nets[name]
		for _, id := range sortedIDs(n) {
			ep := n.Endpoints[id]
			for _, p := range ep.Ports {
				comment := fmt.Sprintf("arrow %s on %s: publish %s", shortID(id), n.Name, PortString(p))
				match := [][]expr.Any{nftexpr.IPv4(), fibLocal()}
				if p.HostIP != "" {
					// Normalized by Attach: a valid IPv4 address.
					ip, err := netip.ParseAddr(p.HostIP)
					if err != nil {
						continue
					}
					match = append(match, ipDaddr(ip))
				}
				match = append(match, l4port(p.Proto, uint16(p.HostPort)), dnat(ep.Address.Addr(), uint16(p.GuestPort)))
				add(t, pre, comment, match...)
				add(t, out, comment, match...)
			}
		}
	}

	// Anti-spoofing, at the bridge's door: a frame that enters the
	// bridge from a tap carries the endpoint's MAC as its source, and is
	// either IPv4 from the endpoint's address or ARP that gives the
	// endpoint's MAC and address as the sender's. Everything else is
	// dropped: guests are configured statically (no DHCP, so no 0.0.0.0
	// source) and get no IPv6 address on a bridge network, and VLAN tags
	// would carry frames past these checks (the ether type is read with
	// the tag put back, as nftables does for link-layer payloads).
	if len(nets) == 0 {
		return
	}
	c.AddTable(bt)
	bpre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: bt, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	for _, name := range names {
		n := nets[name]
		for _, id := range sortedIDs(n) {
			ep := n.Endpoints[id]
			tag := fmt.Sprintf("arrow %s on %s", shortID(id), n.Name)
			ch := c.AddChain(&nftables.Chain{Name: ep.Tap, Table: bt})
			add(bt, bpre, tag+": from its tap", ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, ep.Tap),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ep.Tap}})
			mac := []byte(ep.MAC)
			addr := ep.Address.Addr().As4()
			add(bt, ch, tag+": source MAC", payloadCmp(expr.PayloadBaseLLHeader, 6, expr.CmpOpNeq, mac), nftexpr.Verdict(expr.VerdictDrop))
			ipType := payloadCmp(expr.PayloadBaseLLHeader, 12, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(etherTypeIPv4))
			add(bt, ch, tag+": source IPv4", ipType,
				payloadCmp(expr.PayloadBaseNetworkHeader, 12, expr.CmpOpNeq, addr[:]), nftexpr.Verdict(expr.VerdictDrop))
			add(bt, ch, tag+": IPv4", ipType, nftexpr.Verdict(expr.VerdictAccept))
			// ARP for Ethernet and IPv4 (htype 1, ptype 0x0800, hlen 6,
			// plen 4), any operation, sender the endpoint.
			add(bt, ch, tag+": ARP",
				payloadCmp(expr.PayloadBaseLLHeader, 12, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(etherTypeARP)),
				payloadCmp(expr.PayloadBaseNetworkHeader, 0, expr.CmpOpEq, []byte{0, 1, 0x08, 0x00, 6, 4}),
				payloadCmp(expr.PayloadBaseNetworkHeader, 8, expr.CmpOpEq, slices.Concat(mac, addr[:])),
				nftexpr.Verdict(expr.VerdictAccept))
			add(bt, ch, tag+": anything else", nftexpr.Verdict(expr.VerdictDrop))
		}
	}
}

// sortedIDs returns the arrow IDs of n's endpoints, sorted.
func sortedIDs(n *netRecord) []string {
	ids := make([]string, 0, len(n.Endpoints))
	for id := range n.Endpoints {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// shortID shortens an arrow ID for a rule's comment.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ipSaddr matches ip saddr p.
func ipSaddr(p netip.Prefix) []expr.Any { return ipField(12, p) }

// ipDaddr matches ip daddr a.
func ipDaddr(a netip.Addr) []expr.Any { return ipField(16, netip.PrefixFrom(a, 32)) }

// ipDaddrNot matches ip daddr != p.
func ipDaddrNot(p netip.Prefix) []expr.Any {
	e := ipField(16, p)
	e[len(e)-1].(*expr.Cmp).Op = expr.CmpOpNeq
	return e
}

// ipField matches the IPv4 address at offset in the header against p.
func ipField(offset uint32, p netip.Prefix) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), p.Bits()).Masked().Addr().As4()
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)})
	}
	a := p.Masked().Addr().As4()
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
}

// ifname matches iifname or oifname (key) against name exactly.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// ifnamePrefix matches iifname or oifname (key) against prefix*.
func ifnamePrefix(key expr.MetaKey, prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
	}
}

// l4port matches meta l4proto proto th dport port.
func l4port(proto string, port uint16) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if strings.EqualFold(proto, "udp") {
		p = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// fibLocal matches fib daddr type local: packets for an address of the
// host.
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ipDaddrIn matches ip daddr in p.
func ipDaddrIn(p netip.Prefix) []expr.Any { return ipField(16, p) }

// payloadCmp compares the len(data) bytes at offset of the header base
// with data.
func payloadCmp(base expr.PayloadBase, offset uint32, op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: uint32(len(data))},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// dnat is dnat ip to addr:port.
func dnat(addr netip.Addr, port uint16) []expr.Any {
	a := addr.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}
