//go:build linux

package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// The guest's network is configured with the old socket ioctls
// (SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFMTU, SIOCADDRT), not
// netlink (github.com/vishvananda/netlink): a static IPv4 configuration
// needs nothing more, and under TCG every code path arrow-init runs for the
// first time is translated first. Measured with `arrow run --debug
// --console` under TCG, 5 to 6 boots each, both done inline after the
// spec arrived: lo alone took 12 to 22 ms (median 16) with the ioctls and
// 24 to 56 ms (median 37) with vishvananda/netlink; lo plus one user-mode
// interface with its default route 25 to 51 ms (median 38) against 46 to
// 76 ms (median 52). netlink also grew arrow-init by 310 KB (the
// initramfs every boot unpacks) and runs its package initialisation on
// every boot, network or not. (lo now comes up while arrow-init waits for
// the host, off the critical path.)

// nicWait bounds how long arrow-init waits for a network card to appear.
// Built-in drivers probe virtio-mmio devices before init starts and
// modules probe while they load, so this only matters on an odd kernel.
const nicWait = 2 * time.Second

// loopbackUp brings up the loopback interface, which every guest has; the
// kernel gives it 127.0.0.1/8 (and ::1) as it comes up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := ifUp(fd, "lo"); err != nil {
		return fmt.Errorf("network: loopback: %w", err)
	}
	return nil
}

// setupNetwork configures the interfaces n describes.
func setupNetwork(n *guest.Network) error {
	if n == nil || len(n.Interfaces) == 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: socket: %w", err)
	}
	defer unix.Close(fd)
	for _, i := range n.Interfaces {
		if err := configure(fd, i); err != nil {
			return fmt.Errorf("network: interface %s: %w", i.MAC, err)
		}
	}
	return nil
}

// configure sets up the card with MAC i.MAC as i says.
func configure(fd int, i guest.Interface) error {
	card := i.MAC
	if i.CardMAC != "" {
		card = i.CardMAC
	}
	name, err := findNIC(card, nicWait)
	if err != nil {
		return err
	}
	// A gratuitous ARP when the card comes up: QEMU's user-mode network
	// (or a bridge) may hold the address the card had in a template or
	// a spare's warm-up, and would send a published port's first
	// connection to it, where nothing receives it, for as long as the
	// guest says nothing on its own.
	if err := announceOnUp(name); err != nil {
		return err
	}
	if card != i.MAC {
		if err := setMAC(fd, name, i.MAC); err != nil {
			return err
		}
	}
	prefix, err := netip.ParsePrefix(i.Address)
	if err != nil || !prefix.Addr().Is4() {
		return fmt.Errorf("address %q: not IPv4 CIDR", i.Address)
	}
	if i.MTU > 0 {
		req, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		req.SetUint32(uint32(i.MTU))
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, req); err != nil {
			return fmt.Errorf("%s: MTU %d: %w", name, i.MTU, err)
		}
	}
	addr := prefix.Addr().As4()
	var maskBytes [4]byte
	bits := prefix.Bits()
	for b := 0; b < bits; b++ {
		maskBytes[b/8] |= 0x80 >> (b % 8)
	}
	for _, set := range []struct {
		req uint
		ip  [4]byte
		op  string
	}{{unix.SIOCSIFADDR, addr, "address"}, {unix.SIOCSIFNETMASK, maskBytes, "netmask"}} {
		req, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := req.SetInet4Addr(set.ip[:]); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, set.req, req); err != nil {
			return fmt.Errorf("%s: %s %s: %w", name, set.op, i.Address, err)
		}
	}
	if err := ifUp(fd, name); err != nil {
		return err
	}
	if i.Gateway != "" {
		gw, err := netip.ParseAddr(i.Gateway)
		if err != nil || !gw.Is4() {
			return fmt.Errorf("gateway %q: not IPv4", i.Gateway)
		}
		if err := addDefaultRoute(fd, gw.As4()); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", name, gw, err)
		}
	}
	return nil
}

// setMAC gives the (down) interface name the address mac: a clone of a
// VM template gets its own address on its template's card. virtio-net
// tells QEMU's device too (VIRTIO_NET_CTRL_MAC_ADDR_SET).
func setMAC(fd int, name, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%s: MAC %q: %v", name, mac, err)
	}
	var req struct {
		name [unix.IFNAMSIZ]byte
		addr unix.RawSockaddr
		_    [8]byte // the rest of the ifreq union
	}
	copy(req.name[:], name)
	req.addr.Family = unix.ARPHRD_ETHER
	for k, b := range hw {
		req.addr.Data[k] = int8(b)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("%s: set MAC %s: %w", name, mac, errno)
	}
	return nil
}

// ifUp sets IFF_UP on the interface name.
func ifUp(fd int, name string) error { return setUp(fd, name, true) }

// setUp sets or clears IFF_UP on the interface name.
func setUp(fd int, name string, up bool) error {
	req, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, req); err != nil {
		return fmt.Errorf("%s: flags: %w", name, err)
	}
	flags, what := req.Uint16()|unix.IFF_UP, "up"
	if !up {
		flags, what = req.Uint16()&^unix.IFF_UP, "down"
	}
	req.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, req); err != nil {
		return fmt.Errorf("%s: %s: %w", name, what, err)
	}
	return nil
}

// unconfigure takes the interfaces of n down and removes their addresses
// (and with them their routes): it undoes setupNetwork, for the warm-up.
// It does not give back a card's own MAC (Interface.CardMAC): warm-ups
// configure cards with the MAC they have.
func unconfigure(n *guest.Network) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, i := range n.Interfaces {
		name, err := findNIC(i.MAC, 0)
		if err != nil {
			return err
		}
		if err := setUp(fd, name, false); err != nil {
			return err
		}
		// SIOCSIFADDR with 0.0.0.0 deletes the address.
		req, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := req.SetInet4Addr([]byte{0, 0, 0, 0}); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, req); err != nil {
			return fmt.Errorf("%s: remove the address: %w", name, err)
		}
	}
	return nil
}

// rtentry is the kernel's struct rtentry (linux/route.h), which x/sys/unix
// does not define. Its layout follows the C one on 32- and 64-bit
// platforms alike: unsigned long and pointers are uintptr-sized.
type rtentry struct {
	pad1    uintptr
	dst     unix.RawSockaddrInet4 // struct sockaddr: 16 bytes
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uintptr
	pad4    uintptr
	metric  int16
	dev     uintptr // char *: nil, the kernel finds the device by gateway
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

// addDefaultRoute adds 0.0.0.0/0 via gw.
func addDefaultRoute(fd int, gw [4]byte) error {
	rt := rtentry{
		dst:     unix.RawSockaddrInet4{Family: unix.AF_INET},
		gateway: unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: gw},
		genmask: unix.RawSockaddrInet4{Family: unix.AF_INET},
		flags:   unix.RTF_UP | unix.RTF_GATEWAY,
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt)))
	if errno != 0 {
		return errno
	}
	return nil
}

// findNIC returns the name of the network interface whose address is mac,
// waiting up to wait for it to appear.
func findNIC(mac string, wait time.Duration) (string, error) {
	const dir = "/sys/class/net"
	deadline := time.Now().Add(wait)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		for _, e := range ents {
			b, err := os.ReadFile(dir + "/" + e.Name() + "/address")
			if err == nil && strings.EqualFold(strings.TrimSpace(string(b)), mac) {
				return e.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no network card with this MAC address (the guest kernel needs virtio-net)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resolvConf is /etc/resolv.conf for n; empty when n names no name server
// and no search domain.
func resolvConf(n *guest.Network) string {
	if n == nil || len(n.DNS) == 0 && len(n.Search) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# written by arrow-init\n")
	if len(n.Search) > 0 {
		b.WriteString("search " + strings.Join(n.Search, " ") + "\n")
	}
	for _, d := range n.DNS {
		b.WriteString("nameserver " + d + "\n")
	}
	return b.String()
}

// hostsFile is /etc/hosts: localhost, the guest's own name and n's
// entries.
func hostsFile(hostname string, n *guest.Network) string {
	s := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	if n != nil {
		for _, h := range n.Hosts {
			s += h.IP + "\t" + strings.Join(h.Names, " ") + "\n"
		}
	}
	return s
}

// announceOnUp has the kernel send a gratuitous ARP for the interface
// name when it comes up or its address changes (arp_notify).
func announceOnUp(name string) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/arp_notify", []byte("1\n"), 0); err != nil {
		return fmt.Errorf("%s: arp_notify: %w", name, err)
	}
	return nil
}
