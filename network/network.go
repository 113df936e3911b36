// Package network gives arrows docker-like bridge networks on the host.
//
// A network is a Linux bridge named arw-<hash of the network's name> that
// holds the network's gateway address (the first host address of its
// subnet). An arrow joins a network through an endpoint: a persistent tap
// device arwt<hash>, enslaved to the bridge, that the arrow's QEMU opens,
// an address handed out from the subnet, and a MAC address derived from the
// arrow's ID. Traffic leaving a network is masqueraded; ports published by
// an endpoint are forwarded to it from the outside and from the host itself
// (127.0.0.1 included); each network has a DNS responder on its gateway
// that resolves the names of the arrows attached to it and forwards every
// other query to the host's nameservers.
//
// A guest is not trusted with the host: nothing from a bridge reaches the
// host's 127.0.0.0/8 or its addresses but the DNS responder, published
// ports and the replies to the host's own connections; a tap sends only
// its endpoint's MAC, IPv4 address and ARP; and when Arrow is the one
// that turned IPv4 forwarding on, the host forwards nothing that does not
// involve an arrow bridge.
//
// Everything the package sets up in the kernel is derived from the state
// it persists in a bbolt file: the nftables tables inet arrow and bridge
// arrow, which are the package's own and are rebuilt whole, in one atomic
// transaction, on every change; the bridges; the taps; and IPv4
// forwarding. [Manager.Reconcile] puts the kernel back in line
// with that state after a crash or a reboot.
package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/internal/netlinks"
)

// Errors that the Manager's methods wrap.
var (
	// ErrNotFound is wrapped when a network or an endpoint does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is wrapped when a network, an endpoint or an arrow's DNS
	// name already exists.
	ErrExists = errors.New("already exists")
	// ErrInUse is wrapped by Remove when arrows are attached to the network.
	ErrInUse = errors.New("network in use")
	// ErrPortInUse is wrapped when a host port to publish is published by
	// another endpoint or bound by a host process.
	ErrPortInUse = errors.New("port already in use")
	// ErrOverlap is wrapped when a subnet overlaps another network's or a
	// route of the host, or when no free subnet is left to pick.
	ErrOverlap = errors.New("subnet overlaps")
	// ErrExhausted is wrapped when a network has no free address left.
	ErrExhausted = errors.New("no free address")
	// ErrClosed is wrapped by the methods of a closed Manager.
	ErrClosed = errors.New("network manager closed")
)

// Bridge and tap names start with these; Reconcile removes links with
// these prefixes that the state does not know.
const (
	bridgePrefix = "arw-"
	tapPrefix    = "arwt"
)

// defaultPool is the range subnets are picked from when Create is given
// none and Options.Pool is zero: a /24 of it at a time.
var defaultPool = netip.MustParsePrefix("10.89.0.0/16")

// Options configure a Manager.
type Options struct {
	// StatePath is the bbolt file the networks and endpoints are kept in.
	StatePath string
	// Pool is the range Create picks subnets from, a /24 at a time;
	// 10.89.0.0/16 when zero.
	Pool netip.Prefix
	// ResolvConf is the file the DNS responders read the host's
	// nameservers from, on each forwarded query; /etc/resolv.conf when
	// empty.
	ResolvConf string
	// Nameservers, when not empty, replace the nameservers of ResolvConf.
	Nameservers []netip.AddrPort
	// DNSTimeout bounds the wait for one upstream nameserver's answer;
	// 2 s when zero.
	DNSTimeout time.Duration
	// Logf, when not nil, receives what the DNS responders cannot return
	// as an error.
	Logf func(format string, args ...any)
}

// PortString returns a published port as docker writes it,
// 127.0.0.1:8080->80/tcp.
func PortString(p api.Port) string {
	host := fmt.Sprint(p.HostPort)
	if p.HostIP != "" {
		host = net.JoinHostPort(p.HostIP, host)
	}
	return fmt.Sprintf("%s->%d/%s", host, p.GuestPort, p.Protocol())
}

// Endpoint is an arrow's attachment to a network: what its VM needs to
// configure its interface.
type Endpoint struct {
	// Network is the network's name.
	Network string `json:"network"`
	// ArrowID is the arrow's ID.
	ArrowID string `json:"arrowID"`
	// Name is the arrow's name, resolved by the network's DNS responder;
	// empty for none.
	Name string `json:"name,omitempty"`
	// Aliases are further names the responder resolves to the arrow;
	// unlike names, arrows may share one (see [Manager.Attach]).
	Aliases []string `json:"aliases,omitempty"`
	// Tap is the tap device the VM opens (QEMU's -netdev tap,ifname=).
	Tap string `json:"tap"`
	// MAC is the address of the VM's interface: locally administered,
	// derived from the arrow's ID and the network.
	MAC net.HardwareAddr `json:"mac"`
	// Address is the VM's address and the subnet's prefix length.
	Address netip.Prefix `json:"address"`
	// Gateway is the default gateway, the bridge's address.
	Gateway netip.Addr `json:"gateway"`
	// DNS are the nameservers the VM uses: the network's DNS responder.
	DNS []netip.Addr `json:"dns"`
	// MTU is the MTU of the VM's interface.
	MTU int `json:"mtu"`
	// Ports are the ports published on the host.
	Ports []api.Port `json:"ports,omitempty"`
}

// Info describes a network.
type Info struct {
	// Name is the network's name.
	Name string
	// Bridge is the Linux bridge's name.
	Bridge string
	// Subnet is the network's subnet.
	Subnet netip.Prefix
	// Gateway is the bridge's address.
	Gateway netip.Addr
	// MTU is the MTU of the bridge and of its taps.
	MTU int
	// Created is when the network was created.
	Created time.Time
	// Labels are the network's metadata, as given to Create.
	Labels map[string]string
	// Attached are the endpoints of the arrows attached, by arrow ID.
	Attached []Endpoint
}

// Manager creates and removes networks and attaches arrows to them. Its
// methods are safe for concurrent use.
type Manager struct {
	opts Options
	db   *bolt.DB

	mu     sync.Mutex
	closed bool
	nets   map[string]*netRecord
	dns    map[string]*responder
	// ownsForwarding is whether Arrow turned IPv4 forwarding on (see
	// claimForwarding), as persisted.
	ownsForwarding bool
}

// Open opens (creating it if need be) the state file and returns a Manager
// for the networks it records. Open changes nothing in the kernel: a daemon
// that starts calls [Manager.Reconcile] next.
func Open(opts Options) (*Manager, error) {
	if opts.StatePath == "" {
		return nil, errors.New("network: no state path")
	}
	if !opts.Pool.IsValid() {
		opts.Pool = defaultPool
	}
	if !opts.Pool.Addr().Is4() || opts.Pool.Bits() > 24 {
		return nil, fmt.Errorf("network: pool %s: not an IPv4 prefix of /24 or more addresses", opts.Pool)
	}
	opts.Pool = opts.Pool.Masked()
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.DNSTimeout <= 0 {
		opts.DNSTimeout = 2 * time.Second
	}
	db, nets, owns, err := openState(opts.StatePath)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return &Manager{opts: opts, db: db, nets: nets, dns: map[string]*responder{}, ownsForwarding: owns}, nil
}

// Close stops the DNS responders and closes the state file. The networks,
// their bridges, taps and rules stay: they outlive the daemon.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for name, r := range m.dns {
		r.close()
		delete(m.dns, name)
	}
	if err := m.db.Close(); err != nil {
		return fmt.Errorf("network: close state: %w", err)
	}
	return nil
}

// lock locks the Manager, failing when it is closed.
func (m *Manager) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("network: %w", ErrClosed)
	}
	return nil
}

// shortHash is the first n hex digits of the SHA-256 of the parts joined
// by NULs.
func shortHash(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:n]
}

// bridgeName is the bridge of the network name: arw- and 10 hex digits.
func bridgeName(name string) string { return bridgePrefix + shortHash(10, "bridge", name) }

// tapName is the tap of an arrow on a network: arwt and 11 hex digits.
func tapName(network, arrowID string) string {
	return tapPrefix + shortHash(11, "tap", network, arrowID)
}

// macAddr derives the MAC address of an arrow's interface on a network:
// locally administered (bit 1 of the first octet), unicast (bit 0 clear).
func macAddr(network, arrowID string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac\x00" + network + "\x00" + arrowID))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return slices.Clone(mac)
}

// Create creates the network name on subnet, or on a free /24 of the pool
// when subnet is zero, with its bridge, rules and DNS responder, and keeps
// labels with it (see [api.ValidateLabels]). The error wraps ErrExists
// when the network exists, ErrOverlap when the subnet overlaps another
// network's or a host route.
func (m *Manager) Create(ctx context.Context, name string, subnet netip.Prefix, labels map[string]string) (Info, error) {
	if !api.ValidNetworkName(name) {
		return Info{}, fmt.Errorf("network: invalid network name %q", name)
	}
	if err := api.ValidateLabels(labels); err != nil {
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	if err := m.lock(); err != nil {
		return Info{}, err
	}
	defer m.mu.Unlock()
	if _, ok := m.nets[name]; ok {
		return Info{}, fmt.Errorf("network %s: %w", name, ErrExists)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	used, err := usedPrefixes()
	if err != nil {
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	for _, n := range m.nets {
		used = append(used, n.Subnet)
	}
	if subnet.IsValid() {
		if err := checkSubnet(subnet, used); err != nil {
			return Info{}, fmt.Errorf("network %s: %w", name, err)
		}
		subnet = subnet.Masked()
	} else if subnet, err = pickSubnet(m.opts.Pool, used); err != nil {
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	mtu, err := defaultMTU()
	if err != nil {
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	rec := &netRecord{
		Name:      name,
		Bridge:    bridgeName(name),
		Subnet:    subnet,
		Gateway:   subnet.Addr().Next(),
		MTU:       mtu,
		Created:   time.Now().UTC(),
		Labels:    maps.Clone(labels),
		Endpoints: map[string]*Endpoint{},
	}
	if err := ensureBridge(rec); err != nil {
		_ = netlinks.Delete(rec.Bridge)
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	m.nets[name] = rec
	// Forwarding goes on last, once the rules that guard the host are
	// in place.
	err = m.claimForwarding()
	if err == nil {
		err = m.applyRules()
	}
	if err == nil {
		err = putNetwork(m.db, rec)
	}
	if err == nil {
		err = writeSysctl(ipForward, "1")
	}
	if err != nil {
		delete(m.nets, name)
		_ = deleteNetwork(m.db, name)
		_ = m.releaseForwarding()
		_ = m.applyRules()
		_ = netlinks.Delete(rec.Bridge)
		return Info{}, fmt.Errorf("network %s: %w", name, err)
	}
	// A network without name resolution still carries traffic: a
	// responder that cannot start is reported, and retried by Attach and
	// Reconcile.
	if err := m.startDNS(rec); err != nil {
		m.logf("network %s: DNS responder: %v", name, err)
	}
	return rec.info(), nil
}

// List returns the networks, by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	infos := make([]Info, 0, len(m.nets))
	for _, n := range m.nets {
		infos = append(infos, n.info())
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos
}

// Get returns the network name; the error wraps ErrNotFound when there is
// none.
func (m *Manager) Get(name string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nets[name]
	if !ok {
		return Info{}, fmt.Errorf("network %s: %w", name, ErrNotFound)
	}
	return n.info(), nil
}

// Remove removes the network name: its DNS responder, rules and bridge.
// The error wraps ErrInUse when arrows are attached to it, ErrNotFound
// when there is no such network.
func (m *Manager) Remove(ctx context.Context, name string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	n, ok := m.nets[name]
	if !ok {
		return fmt.Errorf("network %s: %w", name, ErrNotFound)
	}
	if len(n.Endpoints) > 0 {
		ids := make([]string, 0, len(n.Endpoints))
		for id := range n.Endpoints {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return fmt.Errorf("network %s: %w: %d arrows attached (%s)", name, ErrInUse, len(ids), strings.Join(ids, ", "))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := deleteNetwork(m.db, name); err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	delete(m.nets, name)
	m.stopDNS(name)
	var errs []error
	// Forwarding goes off before the rules that guard it go.
	if err := m.releaseForwarding(); err != nil {
		errs = append(errs, err)
	}
	if err := m.applyRules(); err != nil {
		errs = append(errs, err)
	}
	if err := netlinks.Delete(n.Bridge); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	return nil
}

// Attach attaches the arrow arrowID, named name for DNS, to network,
// publishing ports: it hands out an address, creates the tap and adds the
// rules. The network's DNS resolves name and each of aliases to the
// arrow's address; a name is one arrow's, an alias may be several arrows'
// (the replicas of a compose service), and resolves to all their
// addresses. The error wraps ErrPortInUse when a host port is taken
// (nothing is then left behind), ErrNotFound when there is no such
// network, ErrExists when the arrow is attached already or another one
// has the same name.
func (m *Manager) Attach(ctx context.Context, network, arrowID, name string, aliases []string, ports []api.Port) (Endpoint, error) {
	if arrowID == "" {
		return Endpoint{}, errors.New("network: empty arrow ID")
	}
	ports, err := normalizePorts(ports)
	if err != nil {
		return Endpoint{}, fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err)
	}
	if err := checkAliases(aliases); err != nil {
		return Endpoint{}, fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err)
	}
	if err := m.lock(); err != nil {
		return Endpoint{}, err
	}
	defer m.mu.Unlock()
	n, ok := m.nets[network]
	if !ok {
		return Endpoint{}, fmt.Errorf("network %s: %w", network, ErrNotFound)
	}
	wrap := func(err error) error { return fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err) }
	if _, ok := n.Endpoints[arrowID]; ok {
		return Endpoint{}, wrap(fmt.Errorf("endpoint %w", ErrExists))
	}
	if name != "" {
		for _, ep := range n.Endpoints {
			if strings.EqualFold(ep.Name, name) {
				return Endpoint{}, wrap(fmt.Errorf("name %s: %w (arrow %s)", name, ErrExists, ep.ArrowID))
			}
		}
	}
	if err := m.checkPorts(ports); err != nil {
		return Endpoint{}, wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return Endpoint{}, err
	}
	addr, err := n.allocate()
	if err != nil {
		return Endpoint{}, wrap(err)
	}
	ep := &Endpoint{
		Network: network,
		ArrowID: arrowID,
		Name:    name,
		Aliases: slices.Clone(aliases),
		Tap:     tapName(network, arrowID),
		MAC:     macAddr(network, arrowID),
		Address: netip.PrefixFrom(addr, n.Subnet.Bits()),
		Gateway: n.Gateway,
		DNS:     []netip.Addr{n.Gateway},
		MTU:     n.MTU,
		Ports:   ports,
	}
	prevNext := n.Next
	n.Next = addr
	n.Endpoints[arrowID] = ep
	undo := func() {
		delete(n.Endpoints, arrowID)
		n.Next = prevNext
		_ = m.applyRules()
		_ = netlinks.Delete(ep.Tap)
	}
	// The bridge may be gone (a network created before a reboot, the
	// daemon not reconciled yet): put it back first.
	if err := ensureBridge(n); err != nil {
		undo()
		return Endpoint{}, wrap(err)
	}
	if err := ensureTap(ep, n); err != nil {
		undo()
		return Endpoint{}, wrap(err)
	}
	if err := m.applyRules(); err != nil {
		undo()
		return Endpoint{}, wrap(err)
	}
	if err := putNetwork(m.db, n); err != nil {
		undo()
		return Endpoint{}, wrap(err)
	}
	if err := m.startDNS(n); err != nil {
		m.logf("network %s: DNS responder: %v", network, err)
	}
	m.updateDNS(n)
	return ep.clone(), nil
}

// SetName makes name the DNS name of the arrow arrowID on network (a
// renamed arrow), in place of the one it had; its aliases stay. The error
// wraps ErrNotFound when the arrow is not attached there, ErrExists when
// another arrow there has that name (in any case of letters).
func (m *Manager) SetName(ctx context.Context, network, arrowID, name string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err) }
	n, ok := m.nets[network]
	if !ok {
		return fmt.Errorf("network %s: %w", network, ErrNotFound)
	}
	ep, ok := n.Endpoints[arrowID]
	if !ok {
		return wrap(fmt.Errorf("endpoint %w", ErrNotFound))
	}
	if name != "" {
		for id, other := range n.Endpoints {
			if id != arrowID && strings.EqualFold(other.Name, name) {
				return wrap(fmt.Errorf("name %s: %w (arrow %s)", name, ErrExists, id))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	old := ep.Name
	ep.Name = name
	if err := putNetwork(m.db, n); err != nil {
		ep.Name = old
		return wrap(err)
	}
	m.updateDNS(n)
	return nil
}

// checkAliases checks the aliases given to Attach: the API validated
// them, but the responder's table is the host's, so the package bounds
// what it keeps itself.
func checkAliases(aliases []string) error {
	// One more than the API allows: the daemon adds the short ID.
	if len(aliases) > api.MaxNetworkAliases+1 {
		return fmt.Errorf("%d aliases: at most %d", len(aliases), api.MaxNetworkAliases+1)
	}
	for _, a := range aliases {
		if err := api.ValidateNetworkAlias(a); err != nil {
			return err
		}
	}
	return nil
}

// Detach detaches the arrow arrowID from network: it removes the tap and
// the rules and releases the address. Detaching an arrow that is not
// attached, or from a network that does not exist, does nothing.
func (m *Manager) Detach(ctx context.Context, network, arrowID string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	n, ok := m.nets[network]
	if !ok {
		return nil
	}
	ep, ok := n.Endpoints[arrowID]
	if !ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(n.Endpoints, arrowID)
	if err := putNetwork(m.db, n); err != nil {
		n.Endpoints[arrowID] = ep
		return fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err)
	}
	m.updateDNS(n)
	var errs []error
	if err := m.applyRules(); err != nil {
		errs = append(errs, err)
	}
	if err := netlinks.Delete(ep.Tap); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network %s: arrow %s: %w", network, arrowID, err)
	}
	return nil
}

// Reconcile puts the kernel back in line with the state, as a daemon does
// when it starts: it forgets the endpoints of arrows not in live (removing
// their taps), recreates missing bridges and taps, removes arw-* and arwt*
// links the state does not know, rebuilds the nftables table whole and
// (re)starts the DNS responders. A nil live means no arrow lives.
func (m *Manager) Reconcile(ctx context.Context, live map[string]bool) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	var errs []error
	known := map[string]bool{}
	for _, n := range m.nets {
		if err := ctx.Err(); err != nil {
			return err
		}
		changed := false
		for id, ep := range n.Endpoints {
			if !live[id] {
				delete(n.Endpoints, id)
				changed = true
				if err := netlinks.Delete(ep.Tap); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if changed {
			if err := putNetwork(m.db, n); err != nil {
				errs = append(errs, err)
			}
		}
		known[n.Bridge] = true
		if err := ensureBridge(n); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, err))
			continue
		}
		for _, ep := range n.Endpoints {
			known[ep.Tap] = true
			if err := ensureTap(ep, n); err != nil {
				errs = append(errs, fmt.Errorf("network %s: arrow %s: %w", n.Name, ep.ArrowID, err))
			}
		}
	}
	if err := removeStrayLinks(known); err != nil {
		errs = append(errs, err)
	}
	if len(m.nets) > 0 {
		// Forwarding goes on only once the rules that guard the host
		// are in place.
		err := m.claimForwarding()
		if err == nil {
			err = m.applyRules()
		}
		if err == nil {
			err = writeSysctl(ipForward, "1")
		}
		if err != nil {
			errs = append(errs, err)
		}
	} else {
		if err := m.releaseForwarding(); err != nil {
			errs = append(errs, err)
		}
		if err := m.applyRules(); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range m.dns {
		m.stopDNS(name)
	}
	for _, n := range m.nets {
		if err := m.startDNS(n); err != nil {
			errs = append(errs, fmt.Errorf("network %s: DNS responder: %w", n.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: reconcile: %w", err)
	}
	return nil
}

// applyRules rebuilds the nftables tables from the state.
func (m *Manager) applyRules() error {
	return applyRules(m.nets, m.ownsForwarding)
}

// claimForwarding decides, before a network needs IPv4 forwarding, whether
// Arrow owns it: it does when forwarding is off, and keeps owning it (as
// the state records) until the last network goes. While Arrow owns it,
// the rules drop IPv4 forwarding that involves no arrow bridge, so that
// turning it on for the networks does not make the host a router for its
// other interfaces. A host that forwarded already (a router, docker,
// Kubernetes) is left as it was: its forwarding is its own business, and
// a drop would break it. The ownership is recorded before forwarding goes
// on, so that a crash in between leaves the guard in force.
func (m *Manager) claimForwarding() error {
	if m.ownsForwarding {
		return nil
	}
	on, err := forwardingOn()
	if err != nil || on {
		return err
	}
	if err := putForwarding(m.db, true); err != nil {
		return err
	}
	m.ownsForwarding = true
	return nil
}

// releaseForwarding turns IPv4 forwarding back off when Arrow owns it and
// no network remains. While that fails, the ownership and with it the
// guard stay.
func (m *Manager) releaseForwarding() error {
	if len(m.nets) > 0 || !m.ownsForwarding {
		return nil
	}
	if err := writeSysctl(ipForward, "0"); err != nil {
		return err
	}
	if err := putForwarding(m.db, false); err != nil {
		return err
	}
	m.ownsForwarding = false
	return nil
}

// normalizePorts checks ports and fills in their defaults: GuestPort from
// HostPort, IPv4-mapped host addresses unmapped. The error wraps
// ErrPortInUse when the list publishes a host port twice.
func normalizePorts(ports []api.Port) ([]api.Port, error) {
	out := make([]api.Port, 0, len(ports))
	for _, p := range ports {
		p.Proto = strings.ToLower(p.Protocol())
		if p.Proto != api.TCP && p.Proto != api.UDP {
			return nil, fmt.Errorf("port %d: protocol %q is neither tcp nor udp", p.HostPort, p.Proto)
		}
		if p.HostPort < 1 || p.HostPort > 65535 {
			return nil, fmt.Errorf("port %s: want a host port from 1 to 65535", PortString(p))
		}
		if p.GuestPort == 0 {
			p.GuestPort = p.HostPort
		}
		if p.GuestPort < 1 || p.GuestPort > 65535 {
			return nil, fmt.Errorf("port %s: want a guest port from 1 to 65535", PortString(p))
		}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, fmt.Errorf("port %s: host IP: %w", PortString(p), err)
			}
			ip = ip.Unmap()
			switch {
			case ip.IsUnspecified():
				// 0.0.0.0 and [::] both mean every address.
				p.HostIP = ""
			case !ip.Is4():
				return nil, fmt.Errorf("port %s: only IPv4 host addresses are supported", PortString(p))
			default:
				// Canonical: one address is one string, for
				// portsClash.
				p.HostIP = ip.String()
			}
		}
		for _, q := range out {
			if portsClash(p, q) {
				return nil, fmt.Errorf("port %s: %w: published twice (%s)", PortString(p), ErrPortInUse, PortString(q))
			}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// portsClash reports whether two published ports (normalized) take the
// same host port.
func portsClash(p, q api.Port) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(p.HostIP == "" || q.HostIP == "" || p.HostIP == q.HostIP)
}

// checkPorts returns an error wrapping ErrPortInUse when one of ports is
// published by an endpoint already or bound by a host process.
func (m *Manager) checkPorts(ports []api.Port) error {
	for _, p := range ports {
		for _, n := range m.nets {
			for _, ep := range n.Endpoints {
				for _, q := range ep.Ports {
					if portsClash(p, q) {
						return fmt.Errorf("port %s: %w: published by arrow %s on network %s", PortString(p), ErrPortInUse, ep.ArrowID, n.Name)
					}
				}
			}
		}
		if err := probePort(p); errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %s: %w: bound by a host process", PortString(p), ErrPortInUse)
		} else if err != nil {
			return fmt.Errorf("port %s: %w", PortString(p), err)
		}
	}
	return nil
}

// probePort binds the host port p to see whether a host process holds it.
func probePort(p api.Port) error {
	addr := "0.0.0.0"
	if p.HostIP != "" {
		addr = p.HostIP
	}
	hostport := net.JoinHostPort(addr, fmt.Sprint(p.HostPort))
	if p.Proto == "udp" {
		c, err := net.ListenPacket("udp4", hostport)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen("tcp4", hostport)
	if err != nil {
		return err
	}
	return l.Close()
}

// logf reports what cannot be returned.
func (m *Manager) logf(format string, args ...any) {
	if m.opts.Logf != nil {
		m.opts.Logf(format, args...)
	}
}

// clone returns a copy of ep that shares nothing with it.
func (ep *Endpoint) clone() Endpoint {
	c := *ep
	c.MAC = slices.Clone(ep.MAC)
	c.DNS = slices.Clone(ep.DNS)
	c.Aliases = slices.Clone(ep.Aliases)
	c.Ports = slices.Clone(ep.Ports)
	return c
}
