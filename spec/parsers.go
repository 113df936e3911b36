package spec

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
)

// Limits on a machine's size, as `arrow run` applies them.
const (
	// MinMemoryMiB is the least memory a guest gets, 32M.
	MinMemoryMiB = 32
	// MaxMemoryMiB is the most memory a guest gets, 1T.
	MaxMemoryMiB = 1 << 20
	// MaxCPUs is the most vCPUs a guest gets.
	MaxCPUs = 255
)

// maxPathLen bounds every path (PATH_MAX).
const maxPathLen = 4096

// ParseMemory parses a memory size into MiB: a number of MiB ("512"), or a
// number with a binary unit K, M, G or T, in any case, optionally followed
// by B or iB ("256M", "1g", "1.5GiB", "524288K"). The size must be a whole
// number of MiB from 32M to 1T. It is what --memory and the spec's memory
// field accept.
func ParseMemory(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := len(t)
	for i > 0 && t[i-1] >= 'a' && t[i-1] <= 'z' {
		i--
	}
	num, unit := t[:i], t[i:]
	var kib int64 // the unit, in KiB
	switch unit {
	case "":
		kib = 1 << 10
	case "k", "kb", "kib":
		kib = 1
	case "m", "mb", "mib":
		kib = 1 << 10
	case "g", "gb", "gib":
		kib = 1 << 20
	case "t", "tb", "tib":
		kib = 1 << 30
	default:
		return 0, fmt.Errorf("%s is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)", quote(s))
	}
	if !isDecimal(num) {
		return 0, fmt.Errorf("%s is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)", quote(s))
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%s is not a size", quote(s))
	}
	r.Mul(r, big.NewRat(kib, 1<<10))
	if !r.IsInt() {
		return 0, fmt.Errorf("%s is not a whole number of MiB", quote(s))
	}
	if r.Cmp(big.NewRat(MinMemoryMiB, 1)) < 0 || r.Cmp(big.NewRat(MaxMemoryMiB, 1)) > 0 {
		return 0, fmt.Errorf("%s is out of range (32M to 1T)", quote(s))
	}
	return int(r.Num().Int64()), nil
}

// isDecimal reports whether s is digits with an optional fraction, as in
// "256" or "1.5", short enough to be a size.
func isDecimal(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || !isDigits(whole) {
		return false
	}
	return !dot || (frac != "" && isDigits(frac))
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ParseVolume parses the short form of a volume, SOURCE:TARGET[:MODE], as
// --volume and the spec's volumes accept it. SOURCE is a host path that
// starts with /, ./ or ../ (or is . or ..), or the name of a named volume
// (docker's rule: a source without "/" is a name, which must match
// [a-zA-Z0-9][a-zA-Z0-9_.-]+). TARGET is an absolute guest path other
// than / and outside /proc, /sys and /dev; it is returned clean. MODE is
// rw (the default) or ro. A source holding ':' needs the spec's long
// form.
func ParseVolume(s string) (api.Volume, error) {
	parts := strings.Split(s, ":")
	var v api.Volume
	switch len(parts) {
	case 2:
	case 3:
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return api.Volume{}, fmt.Errorf("mode %s: want ro or rw", quote(parts[2]))
		}
	default:
		return api.Volume{}, fmt.Errorf("%s is not SOURCE:TARGET[:ro|rw]", quote(s))
	}
	if err := checkSource(parts[0]); err != nil {
		return api.Volume{}, fmt.Errorf("source %w", err)
	}
	target, err := checkTarget(parts[1])
	if err != nil {
		return api.Volume{}, fmt.Errorf("target %w", err)
	}
	v.Source, v.Target = parts[0], target
	return v, nil
}

// checkSource accepts host paths that say they are paths, and volume
// names.
func checkSource(s string) error {
	if err := checkPath(s); err != nil {
		return err
	}
	if s == "." || s == ".." || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		return nil
	}
	if api.IsVolumeName(s) {
		if api.ValidateVolumeName(s) != nil {
			return fmt.Errorf("%s: a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)", quote(s))
		}
		return nil
	}
	return fmt.Errorf("%s: want a host path starting with /, ./ or ../, or a volume name", quote(s))
}

// checkPath rejects what no path can be.
func checkPath(s string) error {
	switch {
	case s == "":
		return errors.New(`"" is not a path`)
	case len(s) > maxPathLen:
		return fmt.Errorf("%s is longer than %d bytes", quote(s), maxPathLen)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte", quote(s))
	}
	return nil
}

// checkGuestPath accepts absolute guest paths.
func checkGuestPath(s string) error {
	if err := checkPath(s); err != nil {
		return err
	}
	if !path.IsAbs(s) {
		return fmt.Errorf("%s is not an absolute path", quote(s))
	}
	return nil
}

// checkTarget accepts a volume's target and returns it clean.
func checkTarget(s string) (string, error) {
	if err := checkGuestPath(s); err != nil {
		return "", err
	}
	for _, elem := range strings.Split(s, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%s contains \"..\"", quote(s))
		}
	}
	t := path.Clean(s)
	if t == "/" {
		return "", fmt.Errorf("%s would hide the guest's root file system", quote(s))
	}
	for _, owned := range []string{"/proc", "/sys", "/dev"} {
		if t == owned || strings.HasPrefix(t, owned+"/") {
			return "", fmt.Errorf("%s is inside %s, which the guest kernel owns", quote(s), owned)
		}
	}
	return t, nil
}

// ParsePort parses a published port, [IP:]HOST:GUEST[/PROTOCOL], as
// --publish and the spec's ports accept it: "8080:80",
// "127.0.0.1:5353:53/udp", "[::1]:8443:443". Both ports are 1 to 65535:
// there are no random host ports and no ranges. PROTOCOL is tcp (the
// default) or udp. IP is an IPv4 or IPv6 address, IPv6 in brackets.
func ParsePort(s string) (api.Port, error) {
	p := api.Port{Proto: api.TCP}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p.Proto = rest[i+1:]
		rest = rest[:i]
		if p.Proto != api.TCP && p.Proto != api.UDP {
			return api.Port{}, fmt.Errorf("protocol %s: want tcp or udp", quote(p.Proto))
		}
	}
	var ip, host, guest string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return api.Port{}, fmt.Errorf("%s is not [IP:]HOST:GUEST[/tcp|udp]", quote(s))
		}
		ip, rest = rest[1:end], rest[end+2:]
		var ok bool
		if host, guest, ok = strings.Cut(rest, ":"); !ok {
			return api.Port{}, fmt.Errorf("%s is not [IP:]HOST:GUEST[/tcp|udp]", quote(s))
		}
	} else {
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 2:
			host, guest = parts[0], parts[1]
		case 3:
			ip, host, guest = parts[0], parts[1], parts[2]
			if ip == "" {
				return api.Port{}, fmt.Errorf("%s: empty host IP (leave it out to listen on every address)", quote(s))
			}
		default:
			if len(parts) > 3 {
				return api.Port{}, fmt.Errorf("%s is not [IP:]HOST:GUEST[/tcp|udp] (put IPv6 addresses in brackets)", quote(s))
			}
			return api.Port{}, fmt.Errorf("%s is not [IP:]HOST:GUEST[/tcp|udp] (the host port is required)", quote(s))
		}
	}
	if ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil || addr.Zone() != "" {
			return api.Port{}, fmt.Errorf("host IP %s is not an IP address", quote(ip))
		}
		if strings.HasPrefix(s, "[") != addr.Is6() {
			return api.Port{}, fmt.Errorf("%s is not [IP:]HOST:GUEST[/tcp|udp] (IPv6 addresses, and only they, go in brackets)", quote(s))
		}
		p.HostIP = addr.String()
	}
	var err error
	if p.HostPort, err = portNumber(host); err != nil {
		return api.Port{}, fmt.Errorf("host port %w", err)
	}
	if p.GuestPort, err = portNumber(guest); err != nil {
		return api.Port{}, fmt.Errorf("guest port %w", err)
	}
	return p, nil
}

func portNumber(s string) (int, error) {
	if !isDigits(s) || len(s) > 5 {
		return 0, fmt.Errorf("%s: want a number from 1 to 65535", quote(s))
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s: want a number from 1 to 65535", quote(s))
	}
	return n, nil
}

// maxRetries bounds on-failure:N.
const maxRetries = 1_000_000

// ParseRestart parses a restart policy, as --restart and the spec's
// restart field accept it: no, on-failure[:N], always or unless-stopped.
// N is the most restarts on-failure makes, 0 (the default) for no limit.
func ParseRestart(s string) (api.RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	switch name {
	case api.RestartNo, api.RestartAlways, api.RestartUnlessStopped, api.RestartOnFailure:
	default:
		return api.RestartPolicy{}, fmt.Errorf("%s is not a restart policy (want no, on-failure[:N], always or unless-stopped)", quote(s))
	}
	if !hasCount {
		return api.RestartPolicy{Name: name}, nil
	}
	if name != api.RestartOnFailure {
		return api.RestartPolicy{}, fmt.Errorf("%s: only on-failure takes a retry count", quote(s))
	}
	if !isDigits(count) || len(count) > 7 {
		return api.RestartPolicy{}, fmt.Errorf("%s: want a retry count from 0 to %d", quote(s), maxRetries)
	}
	n, _ := strconv.Atoi(count)
	if n > maxRetries {
		return api.RestartPolicy{}, fmt.Errorf("%s: want a retry count from 0 to %d", quote(s), maxRetries)
	}
	return api.RestartPolicy{Name: name, MaxRetries: n}, nil
}

// User is who an application runs as, as --user and the user field give
// it (docker's syntax): a user and an optional group, each a name or a
// number. Names are resolved later, in the image's own /etc/passwd and
// /etc/group.
type User struct {
	// Name is the user's name; empty when the user is given by UID.
	Name string
	// UID is the user's ID when Name is empty.
	UID uint32
	// Group is the group's name; empty when the group is given by GID or
	// not given.
	Group string
	// GID is the group's ID when HasGroup is set and Group is empty.
	GID uint32
	// HasGroup says whether a group was given.
	HasGroup bool
}

// maxUserNameLen bounds user and group names.
const maxUserNameLen = 256

// ParseUser parses a user: "name", "uid", "name:group", "uid:gid",
// "name:gid" or "uid:group". A part made of digits is an ID (0 to
// 4294967294); anything else is a name: 1 to 256 printable ASCII
// characters other than ':', '/' and spaces, not starting with '-'.
func ParseUser(s string) (User, error) {
	var u User
	name, group, hasGroup := strings.Cut(s, ":")
	var err error
	if u.Name, u.UID, err = parseUserPart(name); err != nil {
		return User{}, fmt.Errorf("%s: user %w (want NAME|UID[:GROUP|GID])", quote(s), err)
	}
	if hasGroup {
		u.HasGroup = true
		if u.Group, u.GID, err = parseUserPart(group); err != nil {
			return User{}, fmt.Errorf("%s: group %w (want NAME|UID[:GROUP|GID])", quote(s), err)
		}
	}
	return u, nil
}

// String formats u as ParseUser reads it.
func (u User) String() string {
	s := u.Name
	if s == "" {
		s = strconv.FormatUint(uint64(u.UID), 10)
	}
	switch {
	case !u.HasGroup:
	case u.Group != "":
		s += ":" + u.Group
	default:
		s += ":" + strconv.FormatUint(uint64(u.GID), 10)
	}
	return s
}

// parseUserPart parses one side of a user: an ID, or a name.
func parseUserPart(s string) (string, uint32, error) {
	if s == "" {
		return "", 0, errors.New("is empty")
	}
	if isDigits(s) {
		if !isID(s) {
			return "", 0, fmt.Errorf("ID %s is out of range (0 to 4294967294)", s)
		}
		n, _ := strconv.ParseUint(s, 10, 32)
		return "", uint32(n), nil
	}
	if len(s) > maxUserNameLen {
		return "", 0, fmt.Errorf("name of %d bytes: at most %d", len(s), maxUserNameLen)
	}
	if s[0] == '-' {
		return "", 0, fmt.Errorf("name %s starts with '-'", quote(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' || c == '/' {
			return "", 0, fmt.Errorf("name %s: only printable ASCII other than ':', '/' and spaces", quote(s))
		}
	}
	return s, 0, nil
}

// checkUser accepts what ParseUser does.
func checkUser(s string) error {
	_, err := ParseUser(s)
	return err
}

func isID(s string) bool {
	if !isDigits(s) || len(s) > 10 {
		return false
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n <= 1<<32-2 // (uid_t)-1 means "no change"
}

// checkName accepts DNS labels.
func checkName(s string) error {
	ok := len(s) >= 1 && len(s) <= 63 && s[0] != '-' && s[len(s)-1] != '-'
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("%s: want 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'", quote(s))
	}
	return nil
}

// CheckNetwork checks a network's name as the network field and --network
// take it: user, none, or a bridge network's name (api.ValidNetworkName).
func CheckNetwork(s string) error {
	if s != "user" && s != "none" && !api.ValidNetworkName(s) {
		return fmt.Errorf("network %s: want user, none, or a network's name (1 to %d letters, digits, '_', '.' and '-', starting with a letter or digit)", quote(s), api.MaxNetworkNameLen)
	}
	return nil
}
