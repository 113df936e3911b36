package podnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/internal/netlinks"
	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/run"
)

// linkNet is where the containers' point-to-point links take their /30s:
// link-local, so the pod's network never routes it, and clear of
// 169.254.169.254 (cloud metadata services).
var linkNet = netip.MustParsePrefix("169.254.77.0/24")

// maxContainers is how many /30s linkNet holds.
const maxContainers = 64

// TapPrefix begins the name of every tap this package makes.
const TapPrefix = "arwp"

// TapName is the tap of container id in its pod's namespace: TapPrefix
// and 11 hex digits of a hash of id, 15 bytes, the most a link name has.
func TapName(id string) string {
	h := sha256.Sum256([]byte("arrow-pod-tap:" + id))
	return TapPrefix + hex.EncodeToString(h[:])[:unix.IFNAMSIZ-1-len(TapPrefix)]
}

// linkAddrs are the gateway (the tap's) and guest addresses of the /30
// of index i.
func linkAddrs(i int) (gateway, guestAddr netip.Addr) {
	b := linkNet.Addr().As4()
	b[3] = byte(4*i + 1)
	gateway = netip.AddrFrom4(b)
	return gateway, gateway.Next()
}

// Options are what Attach and Detach need besides the namespace and the
// container.
type Options struct {
	// RunDir keeps the pods' state files and locks; DefaultRunDir when
	// empty. Every process attaching to a pod must use the same.
	RunDir string
	// Ports are the ports the container declared (see [ParsePorts]).
	Ports []Port
	// ResolvConf is the pod's resolv.conf, as CRI wrote it (the file the
	// container's spec mounts at /etc/resolv.conf); the guest's DNS. The
	// host's /etc/resolv.conf when empty.
	ResolvConf string
}

func (o Options) runDir() string {
	if o.RunDir == "" {
		return DefaultRunDir
	}
	return o.RunDir
}

// Attachment is one container's link into its pod's network namespace.
type Attachment struct {
	// NetNS is the namespace's path, as Attach was given it.
	NetNS string
	// Tap is the persistent tap in NetNS that the container's VM opens.
	Tap string
	// PodInterface and PodIP are the pod's interface (CNI's eth0) and
	// address.
	PodInterface string
	PodIP        netip.Addr
	// Address is the guest's address on its link; Gateway, the tap's.
	Address netip.Prefix
	Gateway netip.Addr
	// MTU is the pod interface's, given to the tap and the guest.
	MTU int
	// DNS and Search are the guest's name servers and search domains.
	DNS, Search []string
}

// TapAttachment is how run attaches the container's VM: to the tap in the
// pod's namespace, with the guest's link address and default route. The
// guest's MAC is left to run (derived from the run's ID).
func (a Attachment) TapAttachment() *run.TapAttachment {
	return &run.TapAttachment{
		Name:   a.Tap,
		NetNS:  a.NetNS,
		DNS:    slices.Clone(a.DNS),
		Search: slices.Clone(a.Search),
		Interface: guest.Interface{
			Address: a.Address.String(),
			Gateway: a.Gateway.String(),
			MTU:     a.MTU,
		},
	}
}

// Network is Attach in the form of the containerd shim's hook: the tap
// attachment to run the container's VM with, and a function that
// detaches it (errors go to logf, which may be nil).
func Network(ctx context.Context, nsPath, id string, o Options, logf func(string, ...any)) (*run.TapAttachment, func(), error) {
	a, err := Attach(ctx, nsPath, id, o)
	if err != nil {
		return nil, nil, err
	}
	detach := func() {
		if err := Detach(context.WithoutCancel(ctx), nsPath, id, o); err != nil && logf != nil {
			logf("pod network: %v", err)
		}
	}
	return a.TapAttachment(), detach, nil
}

// Attach connects container id to the pod network namespace at nsPath:
// a tap with a /30 link, forwarding, and the pod's table rebuilt with
// the container's ports. It fails, leaving the namespace and the state
// as they were, when the namespace has no pod interface (an IPv4 default
// route and an address on its interface), when id is attached already,
// when another container of the pod declared one of its ports, or when
// the pod has 64 containers attached.
func Attach(ctx context.Context, nsPath, id string, o Options) (Attachment, error) {
	if id == "" {
		return Attachment{}, errors.New("pod network: empty container ID")
	}
	var dns, search []string
	resolv := o.ResolvConf
	if resolv == "" {
		resolv = "/etc/resolv.conf"
	}
	dns, search, err := ReadResolvConf(resolv)
	if err != nil {
		return Attachment{}, fmt.Errorf("pod network of %s: %w", id, err)
	}
	l, err := lockPod(ctx, o.runDir(), nsPath)
	if err != nil {
		return Attachment{}, fmt.Errorf("pod network of %s: %w", id, err)
	}
	defer l.unlock()
	s, err := l.load()
	if err != nil {
		return Attachment{}, fmt.Errorf("pod network of %s: %w", id, err)
	}
	a := Attachment{NetNS: nsPath, Tap: TapName(id), DNS: dns, Search: search}
	err = netnsdo.Do(nsPath, func() error { return attachHere(s, &a, id, o.Ports) })
	if err != nil {
		if len(s.Containers) == 0 {
			// Nothing attached: no state file or lock file either.
			err = errors.Join(err, l.save(s))
		}
		return Attachment{}, fmt.Errorf("pod network of %s in %s: %w", id, nsPath, err)
	}
	if err := l.save(s); err != nil {
		// Undo: nothing is left that the state does not know of.
		netnsdo.Do(nsPath, func() error { return detachHere(s, id) })
		return Attachment{}, fmt.Errorf("pod network of %s: %w", id, err)
	}
	return a, nil
}

// attachHere is Attach on a thread in the pod's namespace: it adds id to
// s and fills a, or leaves the namespace and s as they were.
func attachHere(s *podState, a *Attachment, id string, ports []Port) (err error) {
	pod, err := podInterface()
	if err != nil {
		return err
	}
	a.PodInterface, a.PodIP, a.MTU = pod.name, pod.ip, pod.mtu
	if err := dropStale(s); err != nil {
		return err
	}
	used := map[int]bool{}
	for _, c := range s.Containers {
		if c.ID == id {
			return fmt.Errorf("container %s is attached already (tap %s)", id, c.Tap)
		}
		used[c.Index] = true
		for _, p := range c.Ports {
			if slices.Contains(ports, p) {
				return fmt.Errorf("port %s is declared by container %s of the pod already", p, c.ID)
			}
		}
	}
	index := -1
	for i := range maxContainers {
		if !used[i] {
			index = i
			break
		}
	}
	if index < 0 {
		return fmt.Errorf("the pod has %d containers attached, the most it may have", maxContainers)
	}
	gw, addr := linkAddrs(index)
	a.Gateway, a.Address = gw, netip.PrefixFrom(addr, 30)

	prev := *s
	prev.Containers = slices.Clone(s.Containers)
	first := len(s.Containers) == 0
	if first {
		if s.Forwarding, err = readSysctl(ipForward); err != nil {
			return err
		}
	}
	// Undo on failure, in reverse.
	defer func() {
		if err == nil {
			return
		}
		errs := []error{err}
		if e := netlinks.Delete(a.Tap); e != nil {
			errs = append(errs, e)
		}
		if e := applyRules(prev.Containers, pod); e != nil {
			errs = append(errs, e)
		}
		if first {
			if e := writeSysctl(ipForward, s.Forwarding); e != nil {
				errs = append(errs, e)
			}
		}
		*s = prev
		err = errors.Join(errs...)
	}()
	if err := makeTap(a.Tap, gw, pod.mtu); err != nil {
		return err
	}
	s.Seq++
	s.Containers = append(s.Containers, container{ID: id, Tap: a.Tap, Index: index, Seq: s.Seq, Ports: slices.Clone(ports)})
	if err := applyRules(s.Containers, pod); err != nil {
		return err
	}
	return writeSysctl(ipForward, "1")
}

// Detach disconnects container id from the pod network namespace at
// nsPath: its tap, its rules and its link addresses go; the last
// container's detach deletes the table and puts ip_forward back. A
// container that is not attached is no error.
func Detach(ctx context.Context, nsPath, id string, o Options) error {
	l, err := lockPod(ctx, o.runDir(), nsPath)
	if err != nil {
		return fmt.Errorf("pod network of %s: %w", id, err)
	}
	defer l.unlock()
	s, err := l.load()
	if err != nil {
		return fmt.Errorf("pod network of %s: %w", id, err)
	}
	err = netnsdo.Do(nsPath, func() error { return detachHere(s, id) })
	// Save whatever was undone, even after an error.
	if serr := l.save(s); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("pod network of %s in %s: %w", id, nsPath, err)
	}
	return nil
}

// detachHere is Detach on a thread in the pod's namespace.
func detachHere(s *podState, id string) error {
	var errs []error
	if err := netlinks.Delete(TapName(id)); err != nil {
		errs = append(errs, err)
	}
	s.Containers = slices.DeleteFunc(s.Containers, func(c container) bool { return c.ID == id })
	if err := dropStale(s); err != nil {
		errs = append(errs, err)
	}
	if len(s.Containers) == 0 {
		if err := deleteTable(); err != nil {
			errs = append(errs, err)
		}
		if s.Forwarding != "" {
			if err := writeSysctl(ipForward, s.Forwarding); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	pod, err := podInterface()
	if err != nil {
		// The pod's interface went away (CNI tore it down first): no
		// rule can match anything; the table goes with the namespace.
		return errors.Join(append(errs, err)...)
	}
	if err := applyRules(s.Containers, pod); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dropStale forgets the containers whose tap is gone from the namespace
// (a namespace whose inode a dead one's state file still names).
func dropStale(s *podState) error {
	var errs []error
	s.Containers = slices.DeleteFunc(s.Containers, func(c container) bool {
		l, err := netlinks.ByName(c.Tap)
		if err != nil {
			errs = append(errs, err)
			return false
		}
		return l == nil
	})
	return errors.Join(errs...)
}

// pod describes the pod's interface.
type pod struct {
	name string
	ip   netip.Addr
	mtu  int
}

// podInterface finds the pod's interface: the one of the IPv4 default
// route (CNI's eth0), and its IPv4 address.
func podInterface() (pod, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return pod{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.LinkIndex == 0 || (r.Dst != nil && !isDefault(r.Dst)) {
			continue
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return pod{}, fmt.Errorf("link of the default route: %w", err)
		}
		if strings.HasPrefix(l.Attrs().Name, TapPrefix) {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return pod{}, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && a.Scope == unix.RT_SCOPE_UNIVERSE && !linkNet.Contains(ip.Unmap()) {
				return pod{name: l.Attrs().Name, ip: ip.Unmap(), mtu: l.Attrs().MTU}, nil
			}
		}
		return pod{}, fmt.Errorf("the default route's interface %s has no IPv4 address", l.Attrs().Name)
	}
	return pod{}, errors.New("no IPv4 default route: not a pod's network namespace set up by CNI")
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// makeTap creates the container's tap: persistent, owned by root (the
// VM's opener is the shim, as root, which hands QEMU the descriptor),
// with the gateway address of its /30 and the pod's MTU, up. A link of
// that name that is there already is an error: it is some other's.
func makeTap(name string, gw netip.Addr, mtu int) error {
	if l, err := netlinks.ByName(name); err != nil {
		return err
	} else if l != nil {
		return fmt.Errorf("link %s exists already", name)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	tap := &netlink.Tuntap{
		LinkAttrs: attrs,
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | unix.IFF_TUN_EXCL,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("create tap %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("tap %s: MTU %d: %w", name, mtu, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(30, 32)}}
	if err := netlink.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("tap %s: address %s: %w", name, addr.IPNet, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("tap %s: up: %w", name, err)
	}
	return nil
}

// ipForward is the namespace's IPv4 forwarding sysctl. /proc/sys/net
// shows the namespace of the thread that opens it.
const ipForward = "net/ipv4/ip_forward"

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}
