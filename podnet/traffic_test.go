package podnet

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/internal/netnstest"
)

// fakeGuest stands for a container's VM on its tap: it reads and writes
// the tap's Ethernet frames itself, with a fixed MAC.
type fakeGuest struct {
	f      *os.File
	mac    net.HardwareAddr
	tapMAC net.HardwareAddr
}

func openFakeGuest(t *testing.T, nsPath, tap string, mac string, addr netip.Addr) *fakeGuest {
	t.Helper()
	g := &fakeGuest{}
	g.mac, _ = net.ParseMAC(mac)
	if err := netnsdo.Do(nsPath, func() error {
		// Non-blocking, and handed to os.NewFile only after TUNSETIFF:
		// a tun descriptor polls only once attached, and Go's poller
		// must take it for read deadlines.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		req, err := unix.NewIfreq(tap)
		if err != nil {
			unix.Close(fd)
			return err
		}
		req.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
			unix.Close(fd)
			return err
		}
		g.f = os.NewFile(uintptr(fd), tap)
		iface, err := net.InterfaceByName(tap)
		if err != nil {
			return err
		}
		g.tapMAC = iface.HardwareAddr
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.f.Close() })
	// The namespace reaches the guest without asking ARP.
	netnstest.Run(t, "nsenter", "--net="+nsPath, "ip", "neigh", "replace", addr.String(), "lladdr", mac, "dev", tap, "nud", "permanent")
	return g
}

// sendUDP writes an IPv4 UDP datagram from src to dst.
func (g *fakeGuest) sendUDP(t *testing.T, src, dst netip.AddrPort, payload string) {
	t.Helper()
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload) // checksum 0: none, as IPv4 allows
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	frame := append(append(append(append([]byte{}, g.tapMAC...), g.mac...), 0x08, 0x00), append(ip, udp...)...)
	if _, err := g.f.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// recvUDP returns the next IPv4 UDP datagram the guest gets within d:
// its source, destination and payload; ok false when none came.
func (g *fakeGuest) recvUDP(t *testing.T, d time.Duration) (src, dst netip.AddrPort, payload string, ok bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		g.f.SetReadDeadline(deadline)
		n, err := g.f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fr := buf[:n]
		if n < 14+20+8 || fr[12] != 0x08 || fr[13] != 0x00 || fr[14+9] != unix.IPPROTO_UDP {
			continue // ARP, IPv6 router solicitations, …
		}
		ip := fr[14:]
		hl := int(ip[0]&0x0f) * 4
		udp := ip[hl:]
		s, _ := netip.AddrFromSlice(ip[12:16])
		dd, _ := netip.AddrFromSlice(ip[16:20])
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(udp[0:])), netip.AddrPortFrom(dd, binary.BigEndian.Uint16(udp[2:])),
			string(udp[8:binary.BigEndian.Uint16(udp[4:])]), true
	}
	return netip.AddrPort{}, netip.AddrPort{}, "", false
}

// TestTraffic sends real packets through the pod's namespace, with test
// code on the taps where the VMs would be: a guest's datagrams leave from
// the pod IP; spoofed ones are dropped; the node's datagrams to the pod
// IP reach the container that declared the port, or the first one; a
// container reaches another at the pod IP.
func TestTraffic(t *testing.T) {
	p := newTestPod(t)
	ctx := context.Background()
	runDir := t.TempDir()
	a, err := Attach(ctx, p.path, "ctr-a", Options{RunDir: runDir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attach(ctx, p.path, "ctr-b", Options{RunDir: runDir, Ports: []Port{{5353, UDP}}})
	if err != nil {
		t.Fatal(err)
	}
	ga := openFakeGuest(t, p.path, a.Tap, "02:00:00:00:00:0a", a.Address.Addr())
	gb := openFakeGuest(t, p.path, b.Tap, "02:00:00:00:00:0b", b.Address.Addr())

	// The node's side: a UDP socket made in its namespace.
	var node *net.UDPConn
	if err := netnsdo.Do(p.hostPath, func() (err error) {
		node, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.hostIP, 7777)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	nodeAddr := netip.AddrPortFrom(p.hostIP, 7777)
	recvNode := func() (netip.AddrPort, string, bool) {
		node.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		n, from, err := node.ReadFromUDPAddrPort(buf)
		if err != nil {
			return netip.AddrPort{}, "", false
		}
		return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), string(buf[:n]), true
	}

	// Egress leaves from the pod IP.
	ga.sendUDP(t, netip.AddrPortFrom(a.Address.Addr(), 4000), nodeAddr, "from a")
	from, msg, ok := recvNode()
	if !ok || msg != "from a" || from.Addr() != p.ip {
		t.Fatalf("egress: got %v %q %v, want %q from %s", from, msg, ok, "from a", p.ip)
	}
	// Spoofed sources go nowhere: another container's link address,
	// an address of the pod's network, the pod IP itself.
	for _, src := range []string{b.Address.Addr().String(), "10.233.7.77", p.ip.String()} {
		ga.sendUDP(t, netip.AddrPortFrom(netip.MustParseAddr(src), 4001), nodeAddr, "spoofed "+src)
		if from, msg, ok := recvNode(); ok {
			t.Errorf("spoofed source %s: the node got %q from %s", src, msg, from)
		}
	}

	// Ingress: a declared port goes to its container, any other to the
	// first container, with the port unchanged.
	for _, tc := range []struct {
		port  uint16
		guest *fakeGuest
		addr  netip.Addr
	}{{5353, gb, b.Address.Addr()}, {9, ga, a.Address.Addr()}} {
		msg := "to port " + netip.AddrPortFrom(p.ip, tc.port).String()
		if _, err := node.WriteToUDPAddrPort([]byte(msg), netip.AddrPortFrom(p.ip, tc.port)); err != nil {
			t.Fatal(err)
		}
		src, dst, got, ok := tc.guest.recvUDP(t, 2*time.Second)
		if !ok || got != msg || dst != netip.AddrPortFrom(tc.addr, tc.port) || src != nodeAddr {
			t.Fatalf("ingress to %d: got %v→%v %q %v, want %v→%v", tc.port, src, dst, got, ok, nodeAddr, netip.AddrPortFrom(tc.addr, tc.port))
		}
		// The reply leaves from the pod IP's port.
		tc.guest.sendUDP(t, dst, src, "reply")
		if from, msg, ok := recvNode(); !ok || msg != "reply" || from != netip.AddrPortFrom(p.ip, tc.port) {
			t.Fatalf("reply from port %d: got %v %q %v", tc.port, from, msg, ok)
		}
	}

	// Hairpin: a reaches b at the pod IP; b sees it come from its
	// gateway, and its reply reaches a from the pod IP.
	ga.sendUDP(t, netip.AddrPortFrom(a.Address.Addr(), 4002), netip.AddrPortFrom(p.ip, 5353), "a to b")
	src, dst, got, ok := gb.recvUDP(t, 2*time.Second)
	if !ok || got != "a to b" || dst != netip.AddrPortFrom(b.Address.Addr(), 5353) || src.Addr() != b.Gateway {
		t.Fatalf("hairpin: b got %v→%v %q %v", src, dst, got, ok)
	}
	gb.sendUDP(t, dst, src, "b to a")
	src, dst, got, ok = ga.recvUDP(t, 2*time.Second)
	if !ok || got != "b to a" || src != netip.AddrPortFrom(p.ip, 5353) || dst != netip.AddrPortFrom(a.Address.Addr(), 4002) {
		t.Fatalf("hairpin reply: a got %v→%v %q %v", src, dst, got, ok)
	}
}
