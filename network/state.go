package network

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/arrowsys/arrow/api"
	bolt "go.etcd.io/bbolt"
)

// netsBucket holds one JSON netRecord per network, keyed by name.
var netsBucket = []byte("networks")

// hostBucket holds what the package changed on the host: forwardingKey is
// there, with the value "arrow", while Arrow owns IPv4 forwarding (see
// [Manager.claimForwarding]).
var (
	hostBucket    = []byte("host")
	forwardingKey = []byte("forwarding")
)

// netRecord is a network as persisted: its settings, its endpoints and the
// address allocator's cursor.
type netRecord struct {
	Name    string       `json:"name"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	MTU     int          `json:"mtu"`
	Created time.Time    `json:"created"`
	// Labels are the network's metadata (see Manager.Create).
	Labels map[string]string `json:"labels,omitempty"`
	// Next is the address handed out last: the allocator goes on from
	// it, so that a released address is the last to be handed out again.
	Next netip.Addr `json:"next,omitzero"`
	// Endpoints are the attached arrows' endpoints, by arrow ID. An
	// address is taken exactly when an endpoint here has it.
	Endpoints map[string]*Endpoint `json:"endpoints"`
}

// openState opens the bbolt file at path and reads the networks in it,
// and whether Arrow owns IPv4 forwarding.
func openState(path string) (*bolt.DB, map[string]*netRecord, bool, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, nil, false, fmt.Errorf("open state %s: %w", path, err)
	}
	nets := map[string]*netRecord{}
	ownsForwarding := false
	err = db.Update(func(tx *bolt.Tx) error {
		h, err := tx.CreateBucketIfNotExists(hostBucket)
		if err != nil {
			return err
		}
		ownsForwarding = string(h.Get(forwardingKey)) == "arrow"
		b, err := tx.CreateBucketIfNotExists(netsBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var n netRecord
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("network %q: %w", k, err)
			}
			if err := upgradePorts(v, &n); err != nil {
				return fmt.Errorf("network %q: %w", k, err)
			}
			if n.Endpoints == nil {
				n.Endpoints = map[string]*Endpoint{}
			}
			nets[n.Name] = &n
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, nil, false, fmt.Errorf("read state %s: %w", path, err)
	}
	return db, nets, ownsForwarding, nil
}

// putForwarding records, durably, whether Arrow owns IPv4 forwarding.
func putForwarding(db *bolt.DB, owns bool) error {
	if err := db.Update(func(tx *bolt.Tx) error {
		if owns {
			return tx.Bucket(hostBucket).Put(forwardingKey, []byte("arrow"))
		}
		return tx.Bucket(hostBucket).Delete(forwardingKey)
	}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// putNetwork writes the network n, durably.
func putNetwork(db *bolt.DB, n *netRecord) error {
	v, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(netsBucket).Put([]byte(n.Name), v)
	}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// deleteNetwork removes the network name from the state.
func deleteNetwork(db *bolt.DB, name string) error {
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(netsBucket).Delete([]byte(name))
	}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// allocate returns a free host address of the subnet, the first free one
// after the one handed out last (wrapping around), never the network
// address, the gateway or the broadcast address. The error wraps
// ErrExhausted when none is free.
func (n *netRecord) allocate() (netip.Addr, error) {
	taken := map[netip.Addr]bool{n.Gateway: true}
	for _, ep := range n.Endpoints {
		taken[ep.Address.Addr()] = true
	}
	first := n.Subnet.Addr().Next()
	last := lastAddr(n.Subnet).Prev() // below the broadcast address
	start := n.Next
	if !start.IsValid() || !n.Subnet.Contains(start) {
		start = first
	}
	a := start
	for {
		a = a.Next()
		if !a.IsValid() || a.Compare(last) > 0 {
			a = first
		}
		if !taken[a] {
			return a, nil
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("subnet %s: %w", n.Subnet, ErrExhausted)
		}
	}
}

// lastAddr is the last address of the prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		bits := min(host, 8)
		b[i] |= byte(1<<bits - 1)
		host -= bits
	}
	return netip.AddrFrom4(b)
}

// info returns the network's description.
func (n *netRecord) info() Info {
	eps := make([]Endpoint, 0, len(n.Endpoints))
	for _, ep := range n.Endpoints {
		eps = append(eps, ep.clone())
	}
	slices.SortFunc(eps, func(a, b Endpoint) int { return strings.Compare(a.ArrowID, b.ArrowID) })
	return Info{
		Name:     n.Name,
		Bridge:   n.Bridge,
		Subnet:   n.Subnet,
		Gateway:  n.Gateway,
		MTU:      n.MTU,
		Created:  n.Created,
		Labels:   maps.Clone(n.Labels),
		Attached: eps,
	}
}

// checkSubnet returns an error when subnet cannot be a network's: not
// IPv4, too small for a gateway and an arrow, or overlapping one of used
// (wrapping ErrOverlap).
func checkSubnet(subnet netip.Prefix, used []netip.Prefix) error {
	if !subnet.Addr().Is4() {
		return fmt.Errorf("subnet %s: only IPv4 subnets are supported", subnet)
	}
	if subnet.Bits() > 30 || subnet.Bits() < 8 {
		return fmt.Errorf("subnet %s: the prefix length must be between /8 and /30", subnet)
	}
	subnet = subnet.Masked()
	for _, u := range used {
		if u.Overlaps(subnet) {
			return fmt.Errorf("subnet %s: %w %s", subnet, ErrOverlap, u)
		}
	}
	return nil
}

// pickSubnet returns the first /24 of pool that overlaps none of used.
func pickSubnet(pool netip.Prefix, used []netip.Prefix) (netip.Prefix, error) {
	p := netip.PrefixFrom(pool.Addr(), 24)
	for pool.Contains(p.Addr()) {
		if checkSubnet(p, used) == nil {
			return p, nil
		}
		next := lastAddr(p).Next()
		if !next.IsValid() {
			break
		}
		p = netip.PrefixFrom(next, 24)
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 left in %s: %w", pool, ErrOverlap)
}

// v1Port is how an Arrow before api.Port, the one port type, recorded an
// endpoint's published port.
type v1Port struct {
	Proto     string     `json:"proto"`
	HostIP    netip.Addr `json:"hostIP,omitzero"`
	HostPort  uint16     `json:"hostPort"`
	GuestPort uint16     `json:"guestPort"`
}

// upgradePorts reads the published ports of n's endpoints that an older
// Arrow recorded in the first shape (data, the record as stored), which
// decoding into api.Port leaves without their numbers, so that an upgrade
// keeps them published. The next write of the network stores them in the
// new shape.
func upgradePorts(data []byte, n *netRecord) error {
	var old struct {
		Endpoints map[string]struct {
			Ports []v1Port `json:"ports"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(data, &old); err != nil {
		return err
	}
	for id, ep := range n.Endpoints {
		was := old.Endpoints[id].Ports
		if len(was) != len(ep.Ports) {
			continue
		}
		for i, p := range ep.Ports {
			o := was[i]
			if p.HostPort != 0 || o.HostPort == 0 {
				continue // already the new shape
			}
			np := api.Port{Proto: o.Proto, HostPort: int(o.HostPort), GuestPort: int(o.GuestPort)}
			if o.HostIP.IsValid() {
				np.HostIP = o.HostIP.String()
			}
			ep.Ports[i] = np
		}
	}
	return nil
}
