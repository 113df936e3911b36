package podnet

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/nftexpr"
)

// TableName is the nftables table (family inet) of a pod's namespace.
const TableName = "arrow-pod"

// Chains of the table:
//
//	prerouting   nat    dstnat  the pod IP's ports to their containers
//	output       nat    dstnat  the same, for the namespace's own processes
//	postrouting  nat    srcnat  egress from the pod IP; hairpin
//	input        filter filter  the namespace itself: only replies and ICMP from the taps
//	forward      filter filter  anti-spoofing; into a tap only replies and DNATed connections
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainInput       = "input"
	chainForward     = "forward"
)

// applyRules replaces the table with the one cs call for, in one
// transaction (no packet sees half a table, no rule of a detached
// container survives); with no container the table is deleted.
func applyRules(cs []container, p pod) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	buildRules(c, cs, p)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write table inet %s: %w", TableName, err)
	}
	return nil
}

// deleteTable deletes the table, if there is one.
func deleteTable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	buildRules(c, nil, pod{})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// buildRules queues on c the transaction of applyRules.
func buildRules(c *nftables.Conn, cs []container, p pod) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Adding the table first makes its deletion valid when it is absent.
	c.AddTable(t)
	c.DelTable(t)
	if len(cs) == 0 {
		return
	}
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b container) int { return int(a.Seq) - int(b.Seq) })
	c.AddTable(t)
	accept, drop := nftables.ChainPolicyAccept, nftables.ChainPolicyDrop
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	in := c.AddChain(&nftables.Chain{Name: chainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	// The forward chain ends in drop: the namespace forwards only what
	// this table's containers send or are sent.
	fwd := c.AddChain(&nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	add := func(ch *nftables.Chain, comment string, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(exprs...),
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
	}
	fromTap := ifnamePrefix(unix.NFT_META_IIFNAME, TapPrefix)
	toTap := ifnamePrefix(unix.NFT_META_OIFNAME, TapPrefix)

	// Declared ports, in the order the containers came: Attach refuses
	// a port declared twice, so the order decides nothing but is stable.
	for _, ct := range cs {
		_, guest := linkAddrs(ct.Index)
		for _, port := range ct.Ports {
			comment := fmt.Sprintf("container %s: port %s", shortID(ct.ID), port)
			rule := [][]expr.Any{nftexpr.IPv4(), ipDaddr(p.ip), l4port(port.Proto, port.Port), dnat(guest)}
			add(pre, comment, rule...)
			add(out, comment, rule...)
		}
	}
	// Every other port of the pod IP: the pod's first container.
	_, first := linkAddrs(cs[0].Index)
	for _, proto := range []string{TCP, UDP} {
		comment := fmt.Sprintf("container %s: first of the pod, every other %s port", shortID(cs[0].ID), proto)
		rule := [][]expr.Any{nftexpr.IPv4(), ipDaddr(p.ip), l4proto(proto), dnat(first)}
		add(pre, comment, rule...)
		add(out, comment, rule...)
	}

	// Egress leaves from the pod IP.
	add(post, "egress from the pod IP", nftexpr.IPv4(), ifname(unix.NFT_META_OIFNAME, p.name), ipSaddr(linkNet), nftexpr.Masq())
	// Hairpin: a container reaching a container of the pod (or itself)
	// at the pod IP. Without this the reply would go straight back to
	// the sender's link address, past the DNAT it must undo (or, to
	// itself, arrive from its own address, which a guest drops).
	add(post, "hairpin between containers", nftexpr.IPv4(), toTap, ipSaddr(linkNet), nftexpr.CtDNATed(), nftexpr.Masq())

	// The namespace holds no service of its own for the containers.
	add(in, "replies from containers", fromTap, nftexpr.CtStateEstablishedRelated(), nftexpr.Verdict(expr.VerdictAccept))
	add(in, "ICMP from containers", nftexpr.IPv4(), fromTap, l4proto("icmp"), nftexpr.Verdict(expr.VerdictAccept))
	add(in, "nothing else from containers", fromTap, nftexpr.Verdict(expr.VerdictDrop))

	for _, ct := range cs {
		_, guest := linkAddrs(ct.Index)
		tag := "container " + shortID(ct.ID)
		from := ifname(unix.NFT_META_IIFNAME, ct.Tap)
		add(fwd, tag+": IPv4 only", from, nfprotoNot(unix.NFPROTO_IPV4), nftexpr.Verdict(expr.VerdictDrop))
		add(fwd, tag+": its own source address", from, ipSaddrNot(guest), nftexpr.Verdict(expr.VerdictDrop))
		add(fwd, tag+": out", from, nftexpr.Verdict(expr.VerdictAccept))
	}
	add(fwd, "replies to containers", toTap, nftexpr.CtStateEstablishedRelated(), nftexpr.Verdict(expr.VerdictAccept))
	add(fwd, "connections to the pod IP's ports", toTap, nftexpr.CtDNATed(), nftexpr.Verdict(expr.VerdictAccept))
}

// shortID shortens a container ID for a rule's comment.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// nfprotoNot matches meta nfproto != proto.
func nfprotoNot(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{proto}},
	}
}

// ipAddr compares the IPv4 address at offset of the header with prefix p.
func ipAddr(offset uint32, op expr.CmpOp, p netip.Prefix) []expr.Any {
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), p.Bits()).Masked().Addr().As4()
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)})
	}
	a := p.Masked().Addr().As4()
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: a[:]})
}

func ipSaddr(p netip.Prefix) []expr.Any { return ipAddr(12, expr.CmpOpEq, p) }

func ipSaddrNot(a netip.Addr) []expr.Any {
	return ipAddr(12, expr.CmpOpNeq, netip.PrefixFrom(a, 32))
}

func ipDaddr(a netip.Addr) []expr.Any { return ipAddr(16, expr.CmpOpEq, netip.PrefixFrom(a, 32)) }

// ifname matches iifname or oifname (key) == name.
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// ifnamePrefix matches iifname or oifname (key) prefix*.
func ifnamePrefix(key expr.MetaKey, prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
	}
}

// l4proto matches meta l4proto tcp, udp or icmp.
func l4proto(proto string) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	switch proto {
	case UDP:
		p = unix.IPPROTO_UDP
	case "icmp":
		p = unix.IPPROTO_ICMP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// l4port matches meta l4proto proto th dport port.
func l4port(proto string, port uint16) []expr.Any {
	return append(l4proto(proto),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	)
}

// dnat is dnat ip to addr, the port unchanged (no proto range: with
// NF_NAT_RANGE_PROTO_SPECIFIED and no port registers the port would be 0).
func dnat(addr netip.Addr) []expr.Any {
	a := addr.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}
