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
)

// TableName is the nftables table (family inet) the package owns. It is
// rebuilt whole from the state on every change and deleted when no network
// remains.
const TableName = "arrow"

// Chains of the table, with their hooks:
//
//	postrouting  nat    priority srcnat  masquerade: egress, loopback and hairpin
//	prerouting   nat    priority dstnat  published ports, from outside
//	output       nat    priority dstnat  published ports, from the host itself
//	forward      filter priority filter  isolation between networks, accept
const (
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainForward     = "forward"
)

// ipsDstNAT is IPS_DST_NAT of ct status: the connection was DNATed.
const ipsDstNAT = 1 << 5

// applyRules replaces the table with the one nets call for, in a single
// nftables transaction: no packet ever sees a half-built table, and no
// rule the state does not call for survives. With no network the table is
// deleted.
func applyRules(nets map[string]*netRecord) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	buildRules(c, nets)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write table inet %s: %w", TableName, err)
	}
	return nil
}

// buildRules queues, on c, the transaction that applyRules flushes.
func buildRules(c *nftables.Conn, nets map[string]*netRecord) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Adding the table first makes the deletion valid when it is absent.
	c.AddTable(t)
	c.DelTable(t)
	if len(nets) == 0 {
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
	fwd := c.AddChain(&nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	add := func(ch *nftables.Chain, comment string, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{
			Table:    t,
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
		// Egress: what leaves the network for elsewhere takes the
		// host's address.
		add(post, tag+": egress", ipv4(), ipSaddr(n.Subnet), ipDaddrNot(n.Subnet),
			ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, n.Bridge), ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, "lo"), masq())
		// Ports published on 127.0.0.1 reach the arrow from a loopback
		// source it could not answer.
		add(post, tag+": loopback", ipv4(), ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge),
			ipSaddr(netip.MustParsePrefix("127.0.0.0/8")), masq())
		// Hairpin: an arrow reaching a port published by an arrow of
		// the same network through a host address.
		add(post, tag+": hairpin", ipv4(), ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge),
			ipSaddr(n.Subnet), ctDNATed(), masq())
		// The DNS responder on the gateway is never redirected by a
		// published port 53.
		for _, proto := range []string{"udp", "tcp"} {
			add(pre, tag+": dns "+proto, ipv4(), ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, n.Bridge),
				ipDaddr(n.Gateway), l4port(proto, 53), verdict(expr.VerdictAccept))
		}
		// Forwarding: networks do not reach each other; anything else
		// in or out of the bridge is accepted.
		add(fwd, tag+": isolation", ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, n.Bridge),
			ifnamePrefix(unix.NFT_META_OIFNAME, bridgePrefix), ifname(unix.NFT_META_OIFNAME, expr.CmpOpNeq, n.Bridge),
			verdict(expr.VerdictDrop))
		add(fwd, tag+": out", ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, n.Bridge), verdict(expr.VerdictAccept))
		add(fwd, tag+": in", ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, n.Bridge), verdict(expr.VerdictAccept))
	}
	for _, name := range names {
		n := nets[name]
		ids := make([]string, 0, len(n.Endpoints))
		for id := range n.Endpoints {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			ep := n.Endpoints[id]
			for _, p := range ep.Ports {
				comment := fmt.Sprintf("arrow %s on %s: publish %s", shortID(id), n.Name, p)
				match := [][]expr.Any{ipv4(), fibLocal()}
				if p.HostIP.IsValid() {
					match = append(match, ipDaddr(p.HostIP))
				}
				match = append(match, l4port(p.Proto, p.HostPort), dnat(ep.Address.Addr(), p.GuestPort))
				add(pre, comment, match...)
				add(out, comment, match...)
			}
		}
	}
}

// shortID shortens an arrow ID for a rule's comment.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ipv4 matches IPv4 packets (meta nfproto ipv4), which the inet family
// needs before IPv4 header fields are read.
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
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

// ctDNATed matches ct status dnat.
func ctDNATed() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// masq is masquerade.
func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

// verdict is accept or drop.
func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

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
