package run

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/spec"
	"github.com/arrowsys/arrow/vm"
)

// Networks of [Options.Network]. Any other name is a bridge network the
// caller (arrowd) set up, with [Options.Tap] saying how the run attaches
// to it.
const (
	// NetworkUser is QEMU's user-mode network (slirp): the guest reaches
	// what the host reaches, through QEMU's own sockets, and is reached
	// only through published ports. It needs no privilege. The default.
	NetworkUser = "user"
	// NetworkNone gives the guest its loopback interface only.
	NetworkNone = "none"
)

// TapAttachment attaches a run to a bridge network through a persistent
// tap device that the caller created and connected.
type TapAttachment struct {
	// Name is the tap device (at most 15 bytes).
	Name string
	// Interface is the guest's configuration on the network. An empty
	// MAC is derived from the run's ID.
	Interface guest.Interface
	// DNS are the guest's name servers.
	DNS []string
	// Search are the guest's DNS search domains.
	Search []string
	// Hosts are extra /etc/hosts entries (the network's other arrows).
	Hosts []guest.HostEntry
	// NetNS is the path of the network namespace the tap lives in (a
	// pod's, under CRI: see package podnet); empty for the caller's.
	// The tap is opened there; QEMU then uses it from anywhere.
	NetNS string
}

// The guest's address, gateway and DNS server in user mode: QEMU's
// defaults, which its DHCP server would hand out.
var (
	userGateway, userDNS, userGuest = vm.UserNetHosts(vm.DefaultUserNet)
	userAddress                     = netip.PrefixFrom(userGuest, vm.DefaultUserNet.Bits())
)

// network sets up the run's network: the VM's card and the guest's
// configuration. Published ports are checked here, before anything
// starts: a host port that is taken fails the run with nothing left
// behind.
func (p *plan) network(o *Options) error {
	name := o.Network
	if name == "" {
		name = NetworkUser
	}
	if o.HostAccess && name != NetworkUser {
		return failf(ExitArrowFailed, "--add-host NAME:host-gateway: host access is for the user network, not --network %s", name)
	}
	switch name {
	case NetworkNone:
		if len(o.Ports) > 0 {
			return failf(ExitArrowFailed, "-p %s: --network none has no network to publish a port on", o.Ports[0])
		}
		if o.Tap != nil {
			return failf(ExitArrowFailed, "--network none with a tap device")
		}
		p.netInfo = "none (loopback only)"
		return nil
	case NetworkUser:
		if o.Tap != nil {
			return failf(ExitArrowFailed, "--network user with a tap device")
		}
		return p.userNetwork(o)
	}
	if err := spec.CheckNetwork(name); err != nil {
		return failf(ExitArrowFailed, "--network: %w", err)
	}
	if o.Tap == nil {
		return failf(ExitArrowFailed, "--network %s: bridge networks are arrowd's: run the arrow with -d (or use --network user or none)", name)
	}
	if len(o.Ports) > 0 {
		return failf(ExitArrowFailed, "-p %s with --network %s: arrowd publishes a bridge network's ports", o.Ports[0], name)
	}
	return p.tapNetwork(o, name)
}

// userNetwork gives the guest QEMU's user-mode network with o's ports.
func (p *plan) userNetwork(o *Options) error {
	u := &vm.UserNet{Net: vm.DefaultUserNet}
	type binding struct {
		ip    string // "" for every address
		port  int
		proto string
	}
	var bound []binding
	var published []string
	for _, port := range o.Ports {
		switch {
		case port.GuestPort < 1 || port.GuestPort > 65535:
			return failf(ExitArrowFailed, "-p %s: guest port %d: want 1 to 65535", port, port.GuestPort)
		case port.HostPort < 1 || port.HostPort > 65535:
			return failf(ExitArrowFailed, "-p %s: host port %d: want 1 to 65535", port, port.HostPort)
		case port.Protocol() != api.TCP && port.Protocol() != api.UDP:
			return failf(ExitArrowFailed, "-p %s: protocol %q: want tcp or udp", port, port.Proto)
		}
		ip := port.HostIP
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return failf(ExitArrowFailed, "-p %s: host IP %q is not an IP address", port, ip)
			}
			if !a.Unmap().Is4() {
				return failf(ExitArrowFailed, "-p %s: user-mode networking listens on IPv4 addresses only", port)
			}
			if a.IsUnspecified() {
				ip = ""
			} else {
				ip = a.Unmap().String()
			}
		}
		for _, b := range bound {
			if b.port == port.HostPort && b.proto == port.Protocol() && (b.ip == ip || b.ip == "" || ip == "") {
				return failf(ExitArrowFailed, "-p %s: host port %d/%s is published twice", port, port.HostPort, port.Protocol())
			}
		}
		bound = append(bound, binding{ip, port.HostPort, port.Protocol()})
		if err := checkHostPort(ip, port.HostPort, port.Protocol()); err != nil {
			return fail(ExitArrowFailed, err)
		}
		u.Forwards = append(u.Forwards, api.Port{Proto: port.Protocol(), HostIP: ip, HostPort: port.HostPort, GuestPort: port.GuestPort})
		published = append(published, port.String())
	}
	mac := runMAC(p.id)
	p.nics = []vm.NIC{{MAC: mac, User: u}}
	p.net = &guest.Network{
		Interfaces: []guest.Interface{{MAC: mac, Address: userAddress.String(), Gateway: userGateway.String()}},
		DNS:        []string{userDNS.String()},
	}
	p.netInfo = fmt.Sprintf("user (QEMU user mode): %s via %s, DNS %s, MAC %s", userAddress, userGateway, userDNS, mac)
	if o.HostAccess {
		names := append([]string{HostGatewayName}, o.HostAliases...)
		p.net.Hosts = append(p.net.Hosts, guest.HostEntry{IP: userGateway.String(), Names: names})
		p.netInfo += ", host access at " + userGateway.String() + " (" + strings.Join(names, " ") + ")"
	}
	if len(published) > 0 {
		p.netInfo += ", publishing " + strings.Join(published, " ")
	}
	return nil
}

// HostGatewayName names the host in the guest's /etc/hosts when a run asks
// for host access, as host.docker.internal does in Docker.
const HostGatewayName = "host.arrow.internal"

// checkHostPort tries to listen on the host port a forward asks QEMU to
// listen on, as QEMU will (IPv4, with SO_REUSEADDR), so that a port that
// is taken, or one this user may not bind, fails the run before QEMU
// starts. QEMU may still lose a race for the port: boot reports that too.
func checkHostPort(ip string, port int, proto string) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	if ip == "" {
		addr = "0.0.0.0:" + strconv.Itoa(port)
	}
	var err error
	if proto == api.UDP {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			l.Close()
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("-p: host port %s/%s is already in use", addr, proto)
	case errors.Is(err, unix.EACCES):
		return fmt.Errorf("-p: host port %s/%s: listening on a port below %d needs root", addr, proto, vm.UnprivilegedPortStart())
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("-p: host address %s is not an address of this host", ip)
	}
	return fmt.Errorf("-p: host port %s/%s: %w", addr, proto, err)
}

// forwardFailure is what QEMU says when it cannot listen on a forwarded
// host port.
const forwardFailure = "Could not set up host forwarding rule"

// forwardError explains a QEMU that exited because it could not listen on
// a published port (it lost the race for a port checked free before it
// started); nil for any other QEMU error.
func forwardError(qemuErr error) error {
	if qemuErr == nil {
		return nil
	}
	msg := qemuErr.Error()
	i := strings.Index(msg, forwardFailure)
	if i < 0 {
		return nil
	}
	rule, _, _ := strings.Cut(strings.TrimSpace(msg[i+len(forwardFailure):]), "\n")
	return failf(ExitArrowFailed, "-p: QEMU could not listen on a published host port (%s): it is in use, or not allowed", strings.Trim(rule, "'"))
}

// tapNetwork attaches the guest to the tap device of a bridge network.
func (p *plan) tapNetwork(o *Options, name string) error {
	t := o.Tap
	tap, err := openTap(t.Name, t.NetNS)
	if err != nil {
		return fail(ExitArrowFailed, fmt.Errorf("--network %s: %w", name, err))
	}
	p.held = append(p.held, tap)
	iface := t.Interface
	if iface.MAC == "" {
		iface.MAC = runMAC(p.id)
	}
	p.nics = []vm.NIC{{MAC: iface.MAC, Tap: tap}}
	p.net = &guest.Network{Interfaces: []guest.Interface{iface}, DNS: t.DNS, Search: t.Search, Hosts: t.Hosts}
	p.netInfo = fmt.Sprintf("%s (tap %s): %s", name, t.Name, iface.Address)
	if t.NetNS != "" {
		p.netInfo = fmt.Sprintf("%s (tap %s in %s): %s", name, t.Name, t.NetNS, iface.Address)
	}
	if iface.Gateway != "" {
		p.netInfo += " via " + iface.Gateway
	}
	p.netInfo += ", MAC " + iface.MAC
	return nil
}

// openTap attaches to the persistent tap device name: /dev/net/tun with
// TUNSETIFF. IFF_NO_PI: frames come without tun's packet information
// header, which QEMU does not expect; IFF_VNET_HDR: with virtio-net's
// header, so that QEMU can pass checksum and segmentation offloads
// through (it checks the flag on the descriptor itself).
//
// TUNSETIFF finds the device by name in the namespace of the thread that
// calls it, so a tap of another network namespace (nsPath) is opened on a
// thread that entered it (package netnsdo); the descriptor stays bound to
// that tap wherever it is used afterwards.
func openTap(name, nsPath string) (*os.File, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ || strings.ContainsAny(name, "/ \t\n\x00") {
		return nil, fmt.Errorf("tap device %q: want a network interface name of 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	if nsPath == "" {
		return openTapHere(name)
	}
	var f *os.File
	err := netnsdo.Do(nsPath, func() error {
		var err error
		f, err = openTapHere(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tap device %s in network namespace %s: %w", name, nsPath, err)
	}
	return f, nil
}

// openTapHere is openTap in the calling thread's network namespace.
func openTapHere(name string) (*os.File, error) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tap device %s: %w", name, err)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		f.Close()
		return nil, err
	}
	req.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, req); err != nil {
		f.Close()
		return nil, fmt.Errorf("tap device %s: attach: %w", name, err)
	}
	return f, nil
}

// runMAC derives the guest's MAC address from the run's ID: locally
// administered (bit 1 of the first byte set) and unicast (bit 0 clear),
// so that it can clash with no vendor's card.
func runMAC(id string) string {
	h := sha256.Sum256([]byte("arrow-mac:" + id))
	h[0] = h[0]&^0x01 | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4], h[5])
}
