package jail

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// GuardTable is the nftables table (family inet) that keeps guests on
// QEMU's user-mode network off the host.
//
// On that network QEMU itself (slirp) opens the sockets for whatever the
// guest connects to, and maps the gateway, 10.0.2.2, to the host's
// loopback: without a guard a guest reaches every service the host binds
// on 127.0.0.1, and on its other addresses. Every jailed QEMU runs as a
// uid of the jail's range, so one output rule can tell its packets apart:
// a new connection or datagram from such a uid to an address of the host
// itself (fib daddr type local: loopback, and every address of every
// interface) is rejected, unless the uid is in the host_ok set (the run
// asked for host access). Replies on connections the host opened to a
// published port are established, and pass. Port 53 stays reachable:
// slirp forwards the guest's DNS to the host's resolvers, which on many
// hosts listen on loopback (systemd-resolved, dnsmasq).
const GuardTable = "arrow-jail"

const guardSet = "host_ok"

// guardChain is the output chain of r: one per range, so that runs with
// another range ($ARROW_JAIL_UIDS, tests) never rewrite the rules that
// guard the default one, and an arrowd beside them stays guarded.
func guardChain(r Range) string { return "output-" + r.String() }

// GuardHost installs the guard for r (idempotent: r's chain is rewritten
// whole in one transaction) and sets whether uid may reach the host. It
// fails when nftables cannot be used: a jailed VM on the user network
// never starts unguarded.
func GuardHost(r Range, uid uint32, hostAccess bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("jail: host guard: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: GuardTable})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: guardChain(r), Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	set := &nftables.Set{Table: t, Name: guardSet, KeyType: nftables.TypeUID}
	if err := c.AddSet(set, nil); err != nil {
		return fmt.Errorf("jail: host guard: %w", err)
	}
	c.FlushChain(ch)
	for _, rule := range guardRules(r) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, rule.comment)})
	}
	// Adding then deleting the element is valid whether or not the
	// previous holder of the uid left it there.
	el := []nftables.SetElement{{Key: binaryutil.NativeEndian.PutUint32(uid)}}
	if err := c.SetAddElements(set, el); err != nil {
		return fmt.Errorf("jail: host guard: %w", err)
	}
	if err := c.SetDeleteElements(set, el); err != nil {
		return fmt.Errorf("jail: host guard: %w", err)
	}
	if hostAccess {
		if err := c.SetAddElements(set, el); err != nil {
			return fmt.Errorf("jail: host guard: %w", err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("jail: host guard: nftables table inet %s: %w", GuardTable, err)
	}
	return nil
}

type guardRule struct {
	comment string
	exprs   []expr.Any
}

// guardRules are the output chain's rules for r, in order.
func guardRules(r Range) []guardRule {
	inRange := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Range{Op: expr.CmpOpEq, Register: 1,
			FromData: binaryutil.BigEndian.PutUint32(r.First),
			ToData:   binaryutil.BigEndian.PutUint32(r.First + r.Count - 1)},
	}
	local := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
	with := func(parts ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	established := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
	hostOK := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: guardSet},
	}
	dns := func(proto byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(53)},
		}
	}
	addrType := func(t uint32) []expr.Any {
		return []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(t)},
		}
	}
	// Arrow's bridges (arw-…) and taps (arwt…, package network): the host
	// routes to bridge networks' arrows itself, past the bridge's forward
	// rules.
	oifPrefix := func(prefix string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
		}
	}
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	reject := []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}
	return []guardRule{
		{"jailed VMs: replies and related traffic", with(inRange, established, accept)},
		{"jailed VMs: host access asked for", with(inRange, hostOK, accept)},
		{"jailed VMs: DNS over udp to the host's resolvers", with(inRange, local, dns(unix.IPPROTO_UDP), accept)},
		{"jailed VMs: DNS over tcp to the host's resolvers", with(inRange, local, dns(unix.IPPROTO_TCP), accept)},
		{"jailed VMs: nothing else of the host", with(inRange, local, reject)},
		{"jailed VMs: no broadcast through the host", with(inRange, addrType(unix.RTN_BROADCAST), reject)},
		{"jailed VMs: no multicast through the host", with(inRange, addrType(unix.RTN_MULTICAST), reject)},
		{"jailed VMs: no bridge network's arrows", with(inRange, oifPrefix("arw-"), reject)},
		{"jailed VMs: no arrow's tap", with(inRange, oifPrefix("arwt"), reject)},
	}
}
