package vm

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
)

// NIC is a virtio-net card of the guest and the host side it is plugged
// into: exactly one of User and Tap.
type NIC struct {
	// MAC is the card's address, aa:bb:cc:dd:ee:ff in lower case; the
	// guest finds the card by it (guest.Interface.MAC). It should be
	// locally administered and unicast.
	MAC string
	// User is QEMU's user-mode network (slirp): the guest reaches the
	// outside through QEMU's own sockets, with no privilege and no host
	// interface, and only forwarded ports reach the guest.
	User *UserNet
	// Tap is an open tap device (/dev/net/tun after TUNSETIFF), which
	// QEMU inherits like the VM's other channels; whoever created the
	// device connects it (to a bridge, say).
	Tap *os.File
	// Placeholder plugs the card into nothing: QEMU's socket backend on
	// a socket pair whose other end the Machine holds, never reading or
	// writing it, until QEMU exits. It is for VM templates whose clones
	// get a tap: unlike the user-mode network, the socket backend keeps
	// no state in a snapshot, so a clone can plug the same card into a
	// tap (package template).
	Placeholder bool
}

// UserNet is the configuration of a user-mode network.
type UserNet struct {
	// Net is the guest's network; [DefaultUserNet] when not valid. In it
	// QEMU's gateway is .2, its DNS forwarder .3 and the guest .15, the
	// address forwarded ports lead to.
	Net netip.Prefix
	// Forwards publish guest ports on host ports. QEMU's user-mode
	// forwarding listens on IPv4 only: a HostIP is an IPv4 address.
	Forwards []api.Port
}

// DefaultUserNet is QEMU's default user-mode network.
var DefaultUserNet = netip.MustParsePrefix("10.0.2.0/24")

// MaxNICs bounds [Config.NICs]; each also takes a device slot.
const MaxNICs = guest.MaxInterfaces

// MaxForwards bounds a user-mode network's forwards.
const MaxForwards = 256

// UserNetHosts returns the addresses of a user-mode network net: QEMU's
// gateway (the host, as the guest sees it), its DNS forwarder and the
// guest's own address.
func UserNetHosts(net netip.Prefix) (gateway, dns, guestAddr netip.Addr) {
	if !net.IsValid() {
		net = DefaultUserNet
	}
	base := net.Masked().Addr().As4()
	at := func(n byte) netip.Addr {
		a := base
		a[3] += n
		return netip.AddrFrom4(a)
	}
	return at(2), at(3), at(15)
}

// UnprivilegedPortStart is the lowest port an unprivileged process may
// listen on (net.ipv4.ip_unprivileged_port_start; 1024 by default).
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

func (n NIC) validate() error {
	if !guest.IsMAC(n.MAC) {
		return fmt.Errorf("MAC %q: want six lower-case hex pairs, aa:bb:cc:dd:ee:ff", n.MAC)
	}
	if n.MAC[1] == '1' || n.MAC[1] == '3' || n.MAC[1] == '5' || n.MAC[1] == '7' || n.MAC[1] == '9' || n.MAC[1] == 'b' || n.MAC[1] == 'd' || n.MAC[1] == 'f' {
		return fmt.Errorf("MAC %s is a multicast address", n.MAC)
	}
	backends := 0
	for _, b := range []bool{n.User != nil, n.Tap != nil, n.Placeholder} {
		if b {
			backends++
		}
	}
	switch {
	case backends != 1:
		return errors.New("want exactly one of a user-mode network, a tap device and a placeholder")
	case n.User == nil:
		return nil
	}
	u := n.User
	if u.Net.IsValid() {
		if !u.Net.Addr().Is4() || u.Net.Bits() < 8 || u.Net.Bits() > 28 {
			return fmt.Errorf("user-mode network %s: want an IPv4 prefix of /8 to /28", u.Net)
		}
	}
	if len(u.Forwards) > MaxForwards {
		return fmt.Errorf("%d forwarded ports, at most %d", len(u.Forwards), MaxForwards)
	}
	for _, f := range u.Forwards {
		if p := f.Protocol(); p != api.TCP && p != api.UDP {
			return fmt.Errorf("forward %s: protocol %q: want tcp or udp", hostfwd(f), f.Proto)
		}
		if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
			return fmt.Errorf("forward %s: ports are 1 to 65535", hostfwd(f))
		}
		if f.HostIP != "" {
			a, err := netip.ParseAddr(f.HostIP)
			if err != nil || !a.Is4() {
				return fmt.Errorf("forward %s: host IP %q: user-mode networking listens on IPv4 addresses only", hostfwd(f), f.HostIP)
			}
		}
	}
	return nil
}

// hostfwd is a forward as QEMU's hostfwd option spells it:
// tcp:127.0.0.1:8080-:80. The guest address is left out: QEMU takes the
// first address its DHCP server hands out, .15, which is the address
// Arrow gives the guest.
func hostfwd(f api.Port) string {
	return f.Protocol() + ":" + f.HostIP + ":" + strconv.Itoa(f.HostPort) + "-:" + strconv.Itoa(f.GuestPort)
}

// netdevID is the QEMU id of NIC i's network backend.
func netdevID(i int) string { return "net" + strconv.Itoa(i) }

// args are QEMU's arguments for NIC i; a tap NIC's device is inherited on
// fd.
// args are QEMU's arguments for card i. jailed leaves UDP forwards out:
// see [Machine.publishUDP].
func (n NIC) args(i, fd int, jailed bool) []string {
	id := netdevID(i)
	var netdev string
	switch {
	case n.Tap != nil:
		// QEMU probes the descriptor for IFF_VNET_HDR itself (TUNGETIFF).
		netdev = "tap,id=" + id + ",fd=" + strconv.Itoa(fd)
	case n.Placeholder:
		netdev = "socket,id=" + id + ",fd=" + strconv.Itoa(fd)
	default:
		u := n.User
		net := u.Net
		if !net.IsValid() {
			net = DefaultUserNet
		}
		// ipv6=off: the guest's configuration is static IPv4; with
		// QEMU's IPv6 router advertisements the guest kernel would give
		// itself an fec0:: address and applications would try IPv6
		// first through a host that may have none.
		netdev = "user,id=" + id + ",net=" + net.Masked().String() + ",ipv6=off"
		for _, f := range u.Forwards {
			if jailed && f.Protocol() == api.UDP {
				continue
			}
			netdev += ",hostfwd=" + hostfwd(f)
		}
	}
	return []string{"-netdev", netdev, "-device", "virtio-net-device,netdev=" + id + ",mac=" + n.MAC}
}
