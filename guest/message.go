package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// Spec is the application arrow-init runs: what docker calls the process
// part of a container's configuration.
type Spec struct {
	// Version is the host's [ProtocolVersion]; arrow-init refuses a spec
	// of another version rather than misreading it.
	Version int `json:"version"`
	// Args is the program and its arguments. Args[0] is looked up in the
	// PATH of Env when it has no slash.
	Args []string `json:"args"`
	// Env is the application's environment, KEY=value.
	Env []string `json:"env,omitempty"`
	// Dir is the absolute working directory; it is created if missing.
	Dir string `json:"dir,omitempty"`
	// UID and GID are the credentials the application runs with.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Groups are supplementary group IDs.
	Groups []uint32 `json:"groups,omitempty"`
	// Hostname is the guest's host name.
	Hostname string `json:"hostname,omitempty"`
	// MachineID is the guest's /etc/machine-id: 32 lower-case hex digits,
	// new for every run, so that clones of one template (and arrows of
	// one image) are not one machine to software that keys state by it.
	MachineID string `json:"machine_id,omitempty"`
	// Stdin says whether the host forwards standard input. Without it the
	// application reads from /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY runs the application on a pseudo-terminal; its output then
	// arrives as [FrameStdout] only, as on a real terminal.
	TTY bool `json:"tty,omitempty"`
	// Size is the initial terminal size, in terminal mode.
	Size WindowSize `json:"size,omitempty"`
	// Rlimits are resource limits applied before the program starts.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// TimeUnixNano is the host's wall clock when the spec was sent. The
	// guest sets its clock from it, so that guests without a usable RTC
	// (and clones of an old snapshot) do not live in the past.
	TimeUnixNano int64 `json:"time,omitempty"`
	// Seed is fresh host randomness mixed into the guest's entropy pool
	// before the application starts.
	Seed []byte `json:"seed,omitempty"`
	// Root, when set, is the root file system the application runs in: a
	// disk image instead of the initramfs. Args[0], Dir, the PATH lookup
	// and the credentials all resolve inside it.
	Root *Root `json:"root,omitempty"`
	// Mounts are host directories (volumes) mounted in the guest before
	// the application starts, in the root file system it runs in.
	Mounts []Mount `json:"mounts,omitempty"`
	// Network configures the guest's network interfaces and name
	// resolution. Nil leaves the guest with its loopback interface only,
	// which arrow-init brings up in every guest.
	Network *Network `json:"network,omitempty"`
	// ReadyPort, when not 0, is a TCP port arrow-init connects to on the
	// guest's loopback while the application runs, until a connection
	// succeeds: it then sends [FrameHealthy]. Only the guest can tell a
	// listening application from one that is not listening yet: through
	// QEMU's user-mode network, the host's connection is accepted either
	// way.
	ReadyPort int `json:"ready_port,omitempty"`
	// ReadyOnInput makes arrow-init report [FrameHealthy] once the
	// application's process blocks reading its standard input (read on
	// descriptor 0, as /proc/PID/syscall shows it), with Stdin.
	ReadyOnInput bool `json:"ready_on_input,omitempty"`
	// Debug makes arrow-init log its steps and their timings on the
	// console, as arrow.debug on the kernel command line does; a clone
	// of a template has the template's command line, so it learns here.
	Debug bool `json:"debug,omitempty"`
	// Service, when set, is a systemd service arrow-init supervises
	// (see [Service]) rather than Args alone.
	Service *Service `json:"service,omitempty"`
}

// Network is the guest's static network configuration: the host decides
// every address, so the guest needs no DHCP client.
type Network struct {
	// Interfaces are the guest's network cards, found by MAC address.
	Interfaces []Interface `json:"interfaces,omitempty"`
	// DNS are the name servers written to /etc/resolv.conf, IPv4 or IPv6
	// addresses.
	DNS []string `json:"dns,omitempty"`
	// Search are the DNS search domains of /etc/resolv.conf.
	Search []string `json:"search,omitempty"`
	// Hosts are extra /etc/hosts entries.
	Hosts []HostEntry `json:"hosts,omitempty"`
}

// Interface is one network card of the guest and its configuration.
type Interface struct {
	// MAC is the card's address as the host set it (vm.NIC.MAC),
	// aa:bb:cc:dd:ee:ff: the guest finds the card by it.
	MAC string `json:"mac"`
	// CardMAC, when set, is the address the card has when arrow-init
	// starts, if it is not MAC: a clone of a VM template keeps its
	// template's card state. arrow-init finds the card by CardMAC and
	// gives it MAC (SIOCSIFHWADDR) before bringing it up.
	CardMAC string `json:"card_mac,omitempty"`
	// Address is the card's IPv4 address and prefix, CIDR notation
	// ("10.0.2.15/24").
	Address string `json:"address"`
	// Gateway, when set, is the IPv4 default route's next hop; it lies
	// inside Address's prefix.
	Gateway string `json:"gateway,omitempty"`
	// MTU is the card's MTU; 0 keeps the driver's (1500).
	MTU int `json:"mtu,omitempty"`
}

// HostEntry is one line of /etc/hosts: an address and its names.
type HostEntry struct {
	IP    string   `json:"ip"`
	Names []string `json:"names"`
}

// Root is a root file system on a virtio block device.
//
// By default arrow-init mounts the device read-only and puts an overlay
// with a tmpfs upper layer on it: the application may write anywhere, its
// changes live in guest memory and vanish with the VM, and the image is
// never modified. With ReadOnly the device is mounted alone, read-only, and
// writes outside the volumes and the tmpfs mounts fail with EROFS; the
// image must then bring the /proc, /sys and /dev directories arrow-init
// moves its mounts onto, and the mount points of every volume.
type Root struct {
	// Device names the block device: a /dev path ("/dev/vda"), or the
	// drive's virtio-blk serial number as the host set it (vm.Drive.Serial),
	// which the guest finds in /sys/block/*/serial. The serial is the
	// reliable name: the order of /dev/vd* follows device probing.
	Device string `json:"device"`
	// FSType is the device's file system: "erofs", "squashfs" or "ext4".
	FSType string `json:"fstype"`
	// ReadOnly mounts the device read-only with no writable layer.
	ReadOnly bool `json:"readonly,omitempty"`
}

// Mount is a host directory shared with the guest (vm.Share), mounted at
// Target. A missing Target is created (in the overlay), which fails on a
// read-only root.
type Mount struct {
	// Tag is the share's mount tag (vm.Share.Tag).
	Tag string `json:"tag"`
	// Target is the absolute, clean guest path the share is mounted on.
	Target string `json:"target"`
	// FSType is the share's transport: [MountVirtiofs] or [Mount9P], as the
	// host exported it (vm.Share.FS).
	FSType string `json:"fstype"`
	// ReadOnly mounts the share read-only in the guest too. The host
	// enforces it either way: this only makes the guest say EROFS sooner.
	ReadOnly bool `json:"readonly,omitempty"`
}

// File system types of [Mount.FSType].
const (
	MountVirtiofs = "virtiofs"
	Mount9P       = "9p"
)

// Rlimit is one resource limit, by its setrlimit name without the RLIMIT_
// prefix, in lower case ("nofile", "nproc", ...).
type Rlimit struct {
	Type string `json:"type"`
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// Limits bound what a Spec may carry, so that a hostile or broken peer
// cannot make the guest allocate without end.
const (
	maxArgs     = 4096
	maxEnv      = 4096
	maxStrLen   = 128 << 10
	maxRlimits  = 32
	maxSeedLen  = 512
	maxGroups   = 64
	maxHostname = 64
	// MaxMounts bounds [Spec.Mounts]; the VM has fewer device slots.
	MaxMounts = 16
	// maxTagLen is virtiofs's limit on a mount tag; 9p's is larger.
	maxTagLen = 36
	// maxSerialLen is virtio-blk's limit on a serial number.
	maxSerialLen = 20
	maxPathLen   = 4096
	// MaxInterfaces bounds [Network.Interfaces]; each takes a device slot.
	MaxInterfaces = 4
	maxDNS        = 8 // glibc reads 3; musl 3; leave room
	maxSearch     = 8
	maxHosts      = 256
	maxHostNames  = 16
	maxDomainLen  = 253
	minMTU        = 68 // IPv4's minimum
	maxMTU        = 65535
)

// Validate reports the first problem that makes s unusable.
func (s *Spec) Validate() error {
	switch {
	case s.Version != ProtocolVersion:
		return fmt.Errorf("spec: protocol version %d, arrow-init speaks %d: use arrow and arrow-init from the same build", s.Version, ProtocolVersion)
	case len(s.Args) == 0 || s.Args[0] == "":
		return errors.New("spec: no program to run")
	case s.ReadyOnInput && !s.Stdin:
		return errors.New("spec: ready on input without stdin")
	case s.ReadyPort < 0 || s.ReadyPort > 65535:
		return fmt.Errorf("spec: ready port %d: want 1 to 65535", s.ReadyPort)
	case s.MachineID != "" && !isMachineID(s.MachineID):
		return fmt.Errorf("spec: machine ID %q: want 32 lower-case hex digits", s.MachineID)
	case len(s.Args) > maxArgs:
		return fmt.Errorf("spec: %d arguments, at most %d", len(s.Args), maxArgs)
	case len(s.Env) > maxEnv:
		return fmt.Errorf("spec: %d environment variables, at most %d", len(s.Env), maxEnv)
	case len(s.Rlimits) > maxRlimits:
		return fmt.Errorf("spec: %d rlimits, at most %d", len(s.Rlimits), maxRlimits)
	case len(s.Seed) > maxSeedLen:
		return fmt.Errorf("spec: seed of %d bytes, at most %d", len(s.Seed), maxSeedLen)
	case len(s.Groups) > maxGroups:
		return fmt.Errorf("spec: %d groups, at most %d", len(s.Groups), maxGroups)
	case len(s.Hostname) > maxHostname:
		return fmt.Errorf("spec: host name of %d bytes, at most %d", len(s.Hostname), maxHostname)
	case s.Dir != "" && !path.IsAbs(s.Dir):
		return fmt.Errorf("spec: working directory %q is not absolute", s.Dir)
	}
	if err := checkStrings("spec", append([]string{s.Dir, s.Hostname}, s.Args...), s.Env); err != nil {
		return err
	}
	if s.Service != nil {
		if s.Stdin || s.TTY {
			return errors.New("spec: a service reads no input and has no terminal")
		}
		if err := s.Service.validate(); err != nil {
			return err
		}
	}
	if s.Root != nil {
		if err := s.Root.validate(); err != nil {
			return err
		}
	}
	if len(s.Mounts) > MaxMounts {
		return fmt.Errorf("spec: %d mounts, at most %d", len(s.Mounts), MaxMounts)
	}
	tags := make(map[string]bool, len(s.Mounts))
	targets := make(map[string]bool, len(s.Mounts))
	for _, m := range s.Mounts {
		if err := m.validate(); err != nil {
			return err
		}
		if tags[m.Tag] {
			return fmt.Errorf("spec: mount tag %q used twice", m.Tag)
		}
		if targets[m.Target] {
			return fmt.Errorf("spec: two mounts on %s", m.Target)
		}
		tags[m.Tag], targets[m.Target] = true, true
	}
	if s.Network != nil {
		if err := s.Network.validate(); err != nil {
			return err
		}
	}
	for _, r := range s.Rlimits {
		if _, ok := RlimitResource(r.Type); !ok {
			return fmt.Errorf("spec: unknown rlimit %q", r.Type)
		}
		if r.Soft > r.Hard {
			return fmt.Errorf("spec: rlimit %s soft limit %d above hard limit %d", r.Type, r.Soft, r.Hard)
		}
	}
	return nil
}

// checkStrings checks the strings of a process the guest starts, the
// application's ([Spec]) and an exec's ([ExecSpec]) alike: each of strs
// and env at most maxStrLen bytes and without NUL (execve would cut it
// there, so the process would not get what the host sent), and each of
// env KEY=value. what prefixes the error.
func checkStrings(what string, strs, env []string) error {
	for _, list := range [][]string{strs, env} {
		for _, a := range list {
			if len(a) > maxStrLen {
				return fmt.Errorf("%s: a string of %d bytes, at most %d", what, len(a), maxStrLen)
			}
			if strings.IndexByte(a, 0) >= 0 {
				return fmt.Errorf("%s: a string contains a NUL byte", what)
			}
		}
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%s: environment entry %.80q is not KEY=value", what, e)
		}
	}
	return nil
}

func (n *Network) validate() error {
	switch {
	case len(n.Interfaces) > MaxInterfaces:
		return fmt.Errorf("spec: %d network interfaces, at most %d", len(n.Interfaces), MaxInterfaces)
	case len(n.DNS) > maxDNS:
		return fmt.Errorf("spec: %d name servers, at most %d", len(n.DNS), maxDNS)
	case len(n.Search) > maxSearch:
		return fmt.Errorf("spec: %d search domains, at most %d", len(n.Search), maxSearch)
	case len(n.Hosts) > maxHosts:
		return fmt.Errorf("spec: %d hosts entries, at most %d", len(n.Hosts), maxHosts)
	}
	macs := make(map[string]bool, len(n.Interfaces))
	gateways := 0
	for _, i := range n.Interfaces {
		if err := i.validate(); err != nil {
			return err
		}
		if macs[i.MAC] {
			return fmt.Errorf("spec: network interface %s given twice", i.MAC)
		}
		macs[i.MAC] = true
		if i.Gateway != "" {
			gateways++
		}
	}
	if gateways > 1 {
		return errors.New("spec: more than one interface has a gateway: the guest has one default route")
	}
	for _, d := range n.DNS {
		if _, err := parseIP(d); err != nil {
			return fmt.Errorf("spec: name server: %w", err)
		}
	}
	for _, d := range n.Search {
		if !IsHostName(d) {
			return fmt.Errorf("spec: search domain %.80q: want a DNS name", d)
		}
	}
	for _, h := range n.Hosts {
		if _, err := parseIP(h.IP); err != nil {
			return fmt.Errorf("spec: hosts entry: %w", err)
		}
		if len(h.Names) == 0 || len(h.Names) > maxHostNames {
			return fmt.Errorf("spec: hosts entry %s: want 1 to %d names", h.IP, maxHostNames)
		}
		for _, name := range h.Names {
			if !IsHostName(name) {
				return fmt.Errorf("spec: hosts entry %s: name %.80q: want a DNS name", h.IP, name)
			}
		}
	}
	return nil
}

func (i *Interface) validate() error {
	if !IsMAC(i.MAC) {
		return fmt.Errorf("spec: network interface MAC %.40q: want six lower-case hex pairs, aa:bb:cc:dd:ee:ff", i.MAC)
	}
	if i.CardMAC != "" && !IsMAC(i.CardMAC) {
		return fmt.Errorf("spec: network interface %s: card MAC %.40q: want six lower-case hex pairs", i.MAC, i.CardMAC)
	}
	p, err := netip.ParsePrefix(i.Address)
	if err != nil || !p.Addr().Is4() || p.Bits() == 0 || p.Bits() < 31 && p.Addr() == p.Masked().Addr() {
		return fmt.Errorf("spec: interface %s: address %.60q: want an IPv4 host address with its prefix length (10.0.2.15/24)", i.MAC, i.Address)
	}
	if i.Gateway != "" {
		g, err := parseIP(i.Gateway)
		if err != nil || !g.Is4() || g == p.Addr() || !p.Contains(g) {
			return fmt.Errorf("spec: interface %s: gateway %.60q: want an IPv4 address inside %s other than the interface's", i.MAC, i.Gateway, p.Masked())
		}
	}
	if i.MTU != 0 && (i.MTU < minMTU || i.MTU > maxMTU) {
		return fmt.Errorf("spec: interface %s: MTU %d: want %d to %d", i.MAC, i.MTU, minMTU, maxMTU)
	}
	return nil
}

// parseIP parses a plain IPv4 or IPv6 address: no zone, not unspecified.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.IsUnspecified() || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%.60q is not an IP address", s)
	}
	return a, nil
}

// isMachineID reports whether s is a machine ID as machine-id(5) has it.
func isMachineID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IsMAC reports whether s is a MAC address as Arrow writes them: six
// lower-case hex pairs separated by colons.
func IsMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// IsHostName reports whether s is a DNS name /etc/hosts and resolv.conf
// can carry: dot-separated labels of letters, digits, '-' and '_', each 1
// to 63 bytes, 253 in all.
func IsHostName(s string) bool {
	if s == "" || len(s) > maxDomainLen {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (r *Root) validate() error {
	switch r.FSType {
	case "erofs", "squashfs", "ext4":
	default:
		return fmt.Errorf("spec: root file system type %q: want erofs, squashfs or ext4", r.FSType)
	}
	if strings.HasPrefix(r.Device, "/") {
		name, ok := strings.CutPrefix(r.Device, "/dev/")
		if !ok || !isName(name, 32) {
			return fmt.Errorf("spec: root device %q: want /dev/NAME or a drive serial", r.Device)
		}
		return nil
	}
	if !IsSerial(r.Device) {
		return fmt.Errorf("spec: root device %q: want /dev/NAME or a drive serial (1 to %d of A-Z a-z 0-9 . _ -)", r.Device, maxSerialLen)
	}
	return nil
}

func (m *Mount) validate() error {
	if !IsMountTag(m.Tag) {
		return fmt.Errorf("spec: mount tag %q: want 1 to %d of A-Z a-z 0-9 . _ -", m.Tag, maxTagLen)
	}
	if m.FSType != MountVirtiofs && m.FSType != Mount9P {
		return fmt.Errorf("spec: mount %s: file system type %q: want %s or %s", m.Tag, m.FSType, MountVirtiofs, Mount9P)
	}
	if err := checkTarget(m.Target); err != nil {
		return fmt.Errorf("spec: mount %s: %w", m.Tag, err)
	}
	return nil
}

// checkTarget accepts absolute, clean guest paths other than / and the
// kernel's own file systems.
func checkTarget(t string) error {
	switch {
	case len(t) > maxPathLen:
		return fmt.Errorf("target of %d bytes, at most %d", len(t), maxPathLen)
	case strings.IndexByte(t, 0) >= 0:
		return errors.New("target contains a NUL byte")
	case !path.IsAbs(t):
		return fmt.Errorf("target %q is not absolute", t)
	case path.Clean(t) != t:
		return fmt.Errorf("target %q is not clean (no //, /./, /../ or trailing slash)", t)
	case t == "/":
		return errors.New("target / would hide the root file system")
	}
	for _, reserved := range []string{"/proc", "/sys", "/dev"} {
		if t == reserved || strings.HasPrefix(t, reserved+"/") {
			return fmt.Errorf("target %s is inside %s, which the guest kernel owns", t, reserved)
		}
	}
	return nil
}

// IsMountTag reports whether tag is a valid share tag: 1 to 36 bytes of
// ASCII letters, digits, '.', '_' and '-'.
func IsMountTag(tag string) bool { return isName(tag, maxTagLen) }

// IsSerial reports whether s is a valid drive serial number: 1 to 20
// bytes of ASCII letters, digits, '.', '_' and '-'.
func IsSerial(s string) bool { return isName(s, maxSerialLen) }

func isName(s string, max int) bool {
	if s == "" || len(s) > max || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// rlimitResources maps rlimit names to their Linux resource numbers.
var rlimitResources = map[string]int{
	"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5,
	"nproc": 6, "nofile": 7, "memlock": 8, "as": 9, "locks": 10,
	"sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
}

// RlimitResource returns the Linux resource number of the named rlimit.
func RlimitResource(name string) (int, bool) {
	n, ok := rlimitResources[name]
	return n, ok
}

// WindowSize is a terminal's size in character cells.
type WindowSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Signal asks the guest to deliver a signal to the application.
type Signal struct {
	Number int `json:"signal"`
}

// Hello is what arrow-init announces when it is ready for a [Spec].
type Hello struct {
	// Version is arrow-init's protocol version.
	Version int `json:"version"`
	// Kernel is the guest kernel's release (uname -r).
	Kernel string `json:"kernel,omitempty"`
}

// Words on the guest kernel's command line that arrow-init reads.
const (
	// CmdlineDebug makes arrow-init log its steps (see Spec.Debug).
	CmdlineDebug = "arrow.debug"
	// CmdlineTemplate says the guest boots to become a VM template
	// (package template): it is snapshotted while it waits for its
	// application, and its clones run with other disks.
	CmdlineTemplate = "arrow.template"
)

// ProtocolVersion is the version of this protocol. A host refuses a guest
// announcing another one. Version 2 added [Spec.Root] and [Spec.Mounts];
// version 3 [Spec.Network] (and arrow-init bringing up the loopback
// interface); version 5 [FrameWarm] and [Spec.Debug]; version 6
// [Spec.MachineID]; version 7 [FrameExec] and the exec frames (arrow
// exec), [Spec.Service] (services from systemd units) and
// [FrameExitAck]; version 8 [FrameFreeze] and [FrameThaw] (application
// snapshots).
const ProtocolVersion = 8

// Warmed is arrow-init's answer to [FrameWarm]: what it exercised and how
// long that took. Under TCG, code runs slowly the first time a VM executes
// it (it is translated then), so a clone that ran these steps once while
// it waited in a pool starts its application faster.
type Warmed struct {
	// Steps name what ran, in order ("decode", "network", "disk",
	// "root", "exec").
	Steps []string `json:"steps"`
	// Error says which step failed and why, if one did.
	Error string `json:"error,omitempty"`
	// Nanos is how long the warm-up took in the guest.
	Nanos int64 `json:"ns"`
}

// ExitReason says how the application ended.
type ExitReason string

// Exit reasons.
const (
	// Exited: the application exited with Code.
	Exited ExitReason = "exited"
	// Signaled: the application was killed by Signal.
	Signaled ExitReason = "signaled"
	// NotFound: the program does not exist in the guest.
	NotFound ExitReason = "not-found"
	// NotExecutable: the program exists but cannot be executed.
	NotExecutable ExitReason = "not-executable"
	// InitFailed: arrow-init could not set up or start the application.
	InitFailed ExitReason = "init-failed"
)

// ExitStatus is the last thing the guest reports.
type ExitStatus struct {
	Reason ExitReason `json:"reason"`
	Code   int        `json:"code,omitempty"`
	Signal int        `json:"signal,omitempty"`
	// Message explains NotFound, NotExecutable and InitFailed.
	Message string `json:"message,omitempty"`
}

// ExitCode maps a status to the exit code docker run would give: the
// application's own code, 128+N for signal N, 127 when the program is not
// found, 126 when it cannot be executed and 125 when Arrow failed.
func (e ExitStatus) ExitCode() int {
	switch e.Reason {
	case Exited:
		if e.Code < 0 || e.Code > 255 {
			return 125
		}
		return e.Code
	case Signaled:
		if e.Signal <= 0 || e.Signal > 64 {
			return 125
		}
		return 128 + e.Signal
	case NotFound:
		return 127
	case NotExecutable:
		return 126
	}
	return 125
}

// Decode unmarshals a JSON payload into v, rejecting unknown fields so that
// a mismatched peer fails loudly rather than half-working.
func Decode(payload []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	if d.More() {
		return fmt.Errorf("decode %T: trailing data", v)
	}
	return nil
}

// SendJSON marshals v and sends it as one frame of type t.
func (c *Conn) SendJSON(t FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", t, err)
	}
	if len(b) > MaxPayload {
		return fmt.Errorf("%w: %s message of %d bytes", ErrFrameTooLarge, t, len(b))
	}
	return c.Send(t, b)
}

// SendJSONHeld is SendJSON by the holder of the connection.
func (c *Conn) SendJSONHeld(t FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", t, err)
	}
	return c.send(t, b)
}

// Thaw is what arrow-init is told when its guest runs again after
// [FrameFreeze] ([FrameThaw]): either the frozen arrow itself goes on
// (Clone false, nothing else set), or the guest is a new clone of an
// application snapshot, which is made unique before anything else runs
// in it, as a template's clone is by its [Spec]: clock, entropy, host
// name, machine ID and MAC.
type Thaw struct {
	// Clone says the guest is a clone of a snapshot, to be given the
	// identity below.
	Clone        bool   `json:"clone,omitempty"`
	TimeUnixNano int64  `json:"time,omitempty"`
	Seed         []byte `json:"seed,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	MachineID    string `json:"machine_id,omitempty"`
	// MAC is the clone's address on the network card the snapshot's
	// spec configured; empty keeps the card's.
	MAC string `json:"mac,omitempty"`
	// Signal, when not 0, is sent to the application once the clone is
	// unique: its hook to draw again what it drew from randomness
	// before the snapshot (a hash seed, session keys, a UUID).
	Signal int `json:"signal,omitempty"`
}

// MaxSeed bounds a Thaw's seed: the kernel mixes in at most a pool's worth.
const MaxSeed = 512

// Validate checks what a Thaw from the host asks of the guest.
func (t *Thaw) Validate() error {
	switch {
	case !t.Clone && (t.TimeUnixNano != 0 || len(t.Seed) > 0 || t.Hostname != "" || t.MachineID != "" || t.MAC != "" || t.Signal != 0):
		return errors.New("thaw: identity given to a guest that is not a clone")
	case len(t.Seed) > MaxSeed:
		return fmt.Errorf("thaw: seed of %d bytes, more than %d", len(t.Seed), MaxSeed)
	case t.Hostname != "" && !IsHostName(t.Hostname):
		return fmt.Errorf("thaw: bad host name %q", t.Hostname)
	case t.MachineID != "" && !isMachineID(t.MachineID):
		return fmt.Errorf("thaw: bad machine ID %q", t.MachineID)
	case t.MAC != "" && !IsMAC(t.MAC):
		return fmt.Errorf("thaw: bad MAC %q", t.MAC)
	case t.Signal < 0 || t.Signal > 64:
		return fmt.Errorf("thaw: bad signal %d", t.Signal)
	}
	return nil
}

// Frozen is arrow-init's answer to [FrameFreeze]; Error says why it
// cannot be frozen (an exec runs), and then it was not.
type Frozen struct {
	Error string `json:"error,omitempty"`
}

// Thawed is arrow-init's answer to [FrameThaw]; Error says which step of
// making the clone unique failed.
type Thawed struct {
	Error string `json:"error,omitempty"`
}
