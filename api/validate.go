package api

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// Restart policy names.
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// Limits on what a request may ask for. They keep a single request from
// making the daemon allocate or store unbounded amounts.
const (
	maxNameLen   = 128
	maxArgs      = 4096
	maxArgBytes  = 128 << 10
	maxLabels    = 256
	maxVolumes   = 64
	maxMemoryMiB = 1 << 20
	maxCPUs      = 256
	maxRetries   = 1 << 20
	maxPorts     = 256
	// MaxTimeoutSeconds bounds boot_timeout and stop_timeout: a day, as
	// the API's ?t= of stop and restart. Far below where seconds
	// overflow a time.Duration (about 9.2e9).
	MaxTimeoutSeconds = 24 * 3600
)

// ValidName reports whether name may name an arrow: as in docker, a
// letter or digit, then letters, digits, '_', '.' or '-'.
func ValidName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// MaxNetworkNameLen bounds the name of a bridge network.
const MaxNetworkNameLen = 32

// ValidNetworkName reports whether name may name a bridge network: the
// rule of [ValidName], at most MaxNetworkNameLen bytes, and not "user" or
// "none", which --network takes for the user-mode network and none.
func ValidNetworkName(name string) bool {
	return ValidName(name) && len(name) <= MaxNetworkNameLen && name != "user" && name != "none"
}

// Validate checks a request before anything is created, so that a bad one
// changes nothing. Its errors name the offending field.
func (r *CreateRequest) Validate() error {
	if r.Name != "" && !ValidName(r.Name) {
		return fmt.Errorf("name %q: want a letter or digit, then letters, digits, '_', '.' or '-' (at most %d)", r.Name, maxNameLen)
	}
	if r.V1Restart != nil {
		if r.Config.Restart != (RestartPolicy{}) {
			return errors.New("restart: given twice, beside the config and in it")
		}
		if err := r.V1Restart.Validate(); err != nil {
			return err
		}
	}
	if r.V1Labels != nil {
		if r.Config.Labels != nil {
			return errors.New("labels: given twice, beside the config and in it")
		}
		if err := checkLabels(r.V1Labels); err != nil {
			return err
		}
	}
	if r.AutoRemove {
		pol := r.Config.Restart
		if r.V1Restart != nil {
			pol = *r.V1Restart
		}
		if pol.Name != "" && pol.Name != RestartNo {
			return fmt.Errorf("auto_remove with restart policy %q: an arrow removed when its run ends cannot be restarted", pol.Name)
		}
	}
	return r.Config.Validate()
}

// checkLabels bounds labels.
func checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("labels: at most %d", maxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k)+len(v) > 4096 || strings.IndexByte(k+v, 0) >= 0 {
			return fmt.Errorf("label %.40q: want a non-empty key and at most 4 KiB", k)
		}
	}
	return nil
}

// Validate checks a restart policy.
func (p RestartPolicy) Validate() error {
	switch p.Name {
	case "", RestartNo, RestartAlways, RestartUnlessStopped:
		if p.MaxRetries != 0 {
			return fmt.Errorf("restart: only %s takes a retry count", RestartOnFailure)
		}
	case RestartOnFailure:
		if p.MaxRetries < 0 || p.MaxRetries > maxRetries {
			return fmt.Errorf("restart: retry count %d out of range", p.MaxRetries)
		}
	default:
		return fmt.Errorf("restart: %q is not a policy (want no, on-failure[:N], always or unless-stopped)", p.Name)
	}
	return nil
}

// String formats p as --restart takes it.
func (p RestartPolicy) String() string {
	if p.Name == "" {
		return RestartNo
	}
	if p.Name == RestartOnFailure && p.MaxRetries > 0 {
		return fmt.Sprintf("%s:%d", p.Name, p.MaxRetries)
	}
	return p.Name
}

// validUnitName reports whether s may name a service unit.
func validUnitName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return false
		}
	}
	return true
}

// Validate checks what a config can be checked for without the host: one
// thing to run, absolute paths, sizes in range.
func (c *Config) Validate() error {
	if err := c.Restart.Validate(); err != nil {
		return err
	}
	if err := checkLabels(c.Labels); err != nil {
		return err
	}
	if c.Snapshot != "" {
		if err := c.validateSnapshot(); err != nil {
			return err
		}
	}
	switch {
	case c.Snapshot != "":
	case c.Image != "" && (c.Program != "" || c.RootFS != ""):
		return errors.New("config: image, or program (with or without rootfs), not both")
	case c.Service != "" && (c.Program != "" || len(c.Args) > 0 || len(c.Entrypoint) > 0):
		return errors.New("config: a service's unit says what runs: no program, args or entrypoint with it")
	case c.Service != "" && (c.Stdin || c.TTY):
		return errors.New("config: a service reads no input and has no terminal")
	case c.Service != "" && !validUnitName(c.Service):
		return fmt.Errorf("config: service %.80q: want a unit name (letters, digits and : - _ . \\ @, at most 255 bytes)", c.Service)
	case c.Image == "" && c.Program == "" && len(c.Entrypoint) == 0 && c.Service == "":
		return errors.New("config: nothing to run: want image, program or service")
	}
	for field, p := range map[string]string{"program": c.Program, "rootfs": c.RootFS, "workdir": c.Dir, "kernel": c.Kernel} {
		if p != "" && !filepath.IsAbs(p) && !(field == "program" && c.RootFS == "" && !strings.Contains(p, "/")) {
			return fmt.Errorf("config: %s %q: want an absolute path", field, p)
		}
	}
	n := len(c.Args) + len(c.Entrypoint) + len(c.Env) + len(c.Includes)
	if n > maxArgs {
		return fmt.Errorf("config: at most %d args, entrypoint words, env entries and includes together", maxArgs)
	}
	size := 0
	for _, list := range [][]string{c.Args, c.Entrypoint, c.Env, c.Includes} {
		for _, s := range list {
			size += len(s)
			if strings.IndexByte(s, 0) >= 0 {
				return errors.New("config: a NUL byte in an argument, environment entry or include")
			}
		}
	}
	if size > maxArgBytes {
		return fmt.Errorf("config: args, env and includes exceed %d bytes", maxArgBytes)
	}
	for field, v := range map[string]string{"image": c.Image, "program": c.Program, "rootfs": c.RootFS, "workdir": c.Dir,
		"kernel": c.Kernel, "kernel_args": c.KernelArgs, "hostname": c.Hostname, "user": c.User} {
		if strings.IndexByte(v, 0) >= 0 || len(v) > 4096 {
			return fmt.Errorf("config: %s: a NUL byte, or longer than 4 KiB", field)
		}
	}
	if c.Hostname != "" && !validHostname(c.Hostname) {
		return fmt.Errorf("config: hostname %q: want letters, digits, '-' and '.', at most 64", c.Hostname)
	}
	if strings.ContainsAny(c.User, " \t\n/") {
		return fmt.Errorf("config: user %q: want NAME|UID[:GROUP|GID]", c.User)
	}
	for _, e := range c.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" || !strings.Contains(e, "=") {
			return fmt.Errorf("config: env %q: want KEY=value", e)
		}
	}
	for _, p := range c.Includes {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("config: include %q: want an absolute path", p)
		}
	}
	if len(c.Volumes) > maxVolumes {
		return fmt.Errorf("config: at most %d volumes", maxVolumes)
	}
	for _, v := range c.Volumes {
		if strings.IndexByte(v.Source+v.Target, 0) >= 0 {
			return errors.New("config: a NUL byte in a volume")
		}
		if v.Named() {
			if err := ValidateVolumeName(v.Source); err != nil {
				return fmt.Errorf("config: volume %s:%s: %w", v.Source, v.Target, err)
			}
		} else if !filepath.IsAbs(v.Source) {
			return fmt.Errorf("config: volume %s:%s: want an absolute path or a volume name", v.Source, v.Target)
		}
		if !filepath.IsAbs(v.Target) {
			return fmt.Errorf("config: volume %s:%s: want an absolute target", v.Source, v.Target)
		}
	}
	switch {
	case c.MemoryMiB < 0 || c.MemoryMiB > maxMemoryMiB:
		return fmt.Errorf("config: memory %d MiB out of range", c.MemoryMiB)
	case c.CPUs < 0 || c.CPUs > maxCPUs:
		return fmt.Errorf("config: cpus %d out of range", c.CPUs)
	case c.BootTimeout < 0 || c.StopTimeout < 0:
		return errors.New("config: negative timeout")
	case c.BootTimeout > MaxTimeoutSeconds:
		return fmt.Errorf("config: boot timeout %g s: want at most %d s (a day)", c.BootTimeout, MaxTimeoutSeconds)
	case c.StopTimeout > MaxTimeoutSeconds:
		return fmt.Errorf("config: stop timeout %g s: want at most %d s (a day)", c.StopTimeout, MaxTimeoutSeconds)
	}
	switch c.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("config: accel %q: want auto, kvm or tcg", c.Accel)
	}
	if err := c.validateNetwork(); err != nil {
		return err
	}
	return c.validateAliases()
}

// validHostname accepts a host name the guest can take: letters, digits,
// '-' and '.', not starting with '-' or '.'.
func validHostname(h string) bool {
	if len(h) > 64 || h[0] == '-' || h[0] == '.' {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validateNetwork checks the network's name and the published ports: no
// two bind the same host port and protocol on overlapping addresses.
// maxHostAliases bounds Config.HostAliases.
const maxHostAliases = 16

func (c *Config) validateNetwork() error {
	if c.ReadyOnInput && (!c.Stdin || c.ReadyPort > 0 || c.Service != "") {
		return errors.New("config: ready_on_input needs stdin, and no ready port or service")
	}
	if c.ReadyPort < 0 || c.ReadyPort > 65535 {
		return fmt.Errorf("config: ready port %d: want 1 to 65535", c.ReadyPort)
	}
	if c.ReadyPort > 0 && c.Network == "none" {
		return errors.New("config: a ready port with network none: nothing can connect to it")
	}
	if c.ReadyPort > 0 && (c.Network == "" || c.Network == "user") {
		published := false
		for _, p := range c.Ports {
			published = published || p.GuestPort == c.ReadyPort && p.Protocol() == TCP
		}
		if !published {
			return fmt.Errorf("config: ready port %d: in user mode it must be published (-p HOST:%d)", c.ReadyPort, c.ReadyPort)
		}
	}
	if c.Network != "" && !ValidName(c.Network) {
		return fmt.Errorf("config: network %q: want user, none or a network's name", c.Network)
	}
	if len(c.HostAliases) > 0 && !c.HostAccess {
		return errors.New("config: host aliases without host access")
	}
	if c.HostAccess && c.Network != "" && c.Network != "user" {
		return fmt.Errorf("config: host access is for the user network, not %q", c.Network)
	}
	if len(c.HostAliases) > maxHostAliases {
		return fmt.Errorf("config: at most %d host aliases", maxHostAliases)
	}
	for _, h := range c.HostAliases {
		if !validHostname(h) {
			return fmt.Errorf("config: host alias %q: want a host name", h)
		}
	}
	if c.Network == "none" && len(c.Ports) > 0 {
		return errors.New("config: ports with network none: there is no network to publish them on")
	}
	if len(c.Ports) > maxPorts {
		return fmt.Errorf("config: at most %d ports", maxPorts)
	}
	for i, p := range c.Ports {
		switch {
		case p.HostPort < 1 || p.HostPort > 65535:
			return fmt.Errorf("config: ports[%d]: host port %d: want 1 to 65535", i, p.HostPort)
		case p.GuestPort < 1 || p.GuestPort > 65535:
			return fmt.Errorf("config: ports[%d]: guest port %d: want 1 to 65535", i, p.GuestPort)
		case p.Proto != "" && p.Proto != "tcp" && p.Proto != "udp":
			return fmt.Errorf("config: ports[%d]: protocol %q: want tcp or udp", i, p.Proto)
		}
		if p.HostIP != "" {
			if a, err := netip.ParseAddr(p.HostIP); err != nil || a.Zone() != "" {
				return fmt.Errorf("config: ports[%d]: host IP %q is not an IP address", i, p.HostIP)
			}
		}
		for j, q := range c.Ports[:i] {
			if q.HostPort == p.HostPort && q.Protocol() == p.Protocol() && (q.HostIP == p.HostIP || anyAddr(q.HostIP) || anyAddr(p.HostIP)) {
				return fmt.Errorf("config: ports[%d]: host port %d/%s is already published by ports[%d]", i, p.HostPort, p.Protocol(), j)
			}
		}
	}
	return nil
}

func anyAddr(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return ip == "" || err == nil && a.IsUnspecified()
}

// validateSnapshot refuses what a clone of an application snapshot
// cannot be given: what runs and how is the snapshot's.
func (c *Config) validateSnapshot() error {
	if !ValidName(c.Snapshot) {
		return fmt.Errorf("config: snapshot %.80q: want a snapshot's name", c.Snapshot)
	}
	given := map[string]bool{
		"image": c.Image != "", "program": c.Program != "", "rootfs": c.RootFS != "", "service": c.Service != "",
		"args": len(c.Args) > 0, "entrypoint": len(c.Entrypoint) > 0, "env": len(c.Env) > 0, "workdir": c.Dir != "",
		"user": c.User != "", "include": len(c.Includes) > 0, "read_only": c.ReadOnly, "volumes": len(c.Volumes) > 0,
		"tty": c.TTY, "kernel": c.Kernel != "", "kernel_args": c.KernelArgs != "", "cold": c.Cold,
	}
	for _, f := range []string{"image", "program", "rootfs", "service", "args", "entrypoint", "env", "workdir", "user",
		"include", "read_only", "volumes", "tty", "kernel", "kernel_args", "cold"} {
		if given[f] {
			return fmt.Errorf("config: %s with snapshot %s: a snapshot's clone runs what the snapshot's arrow ran, as it ran it", f, c.Snapshot)
		}
	}
	return nil
}
