package dockerapi

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/store"
)

// stateOf is a container's Docker state: Arrow's, with paused (a running
// arrow whose VM is stopped) and starting counted as running.
func stateOf(a *api.Arrow) container.ContainerState {
	switch {
	case a.Paused:
		return container.StatePaused
	case a.State == api.Running || a.State == api.Starting:
		return container.StateRunning
	case a.State == api.Restarting:
		return container.StateRestarting
	case a.State == api.Created:
		return container.StateCreated
	}
	return container.StateExited
}

// statusOf is the human status `docker ps` shows: "Up 5 minutes",
// "Exited (0) 2 seconds ago", "Created".
func statusOf(a *api.Arrow, now time.Time) string {
	switch stateOf(a) {
	case container.StatePaused:
		return "Up " + humanDuration(now.Sub(a.StartedAt)) + " (Paused)"
	case container.StateRunning:
		s := "Up " + humanDuration(now.Sub(a.StartedAt))
		if a.Health != "" {
			s += " (" + a.Health + ")"
		}
		return s
	case container.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", a.ExitCode, humanDuration(now.Sub(a.FinishedAt)))
	case container.StateCreated:
		return "Created"
	}
	if a.FinishedAt.IsZero() {
		return fmt.Sprintf("Exited (%d)", a.ExitCode)
	}
	return fmt.Sprintf("Exited (%d) %s ago", a.ExitCode, humanDuration(now.Sub(a.FinishedAt)))
}

// humanDuration renders d as docker ps does, roughly.
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case d.Minutes() < 2:
		return "About a minute"
	case d.Minutes() < 60:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d.Hours() < 2:
		return "About an hour"
	case d.Hours() < 48:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case d.Hours() < 24*7*2:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d.Hours() < 24*30*2:
		return fmt.Sprintf("%d weeks", int(d.Hours()/24/7))
	case d.Hours() < 24*365*2:
		return fmt.Sprintf("%d months", int(d.Hours()/24/30))
	}
	return fmt.Sprintf("%d years", int(d.Hours()/24/365))
}

// dockerTime formats a time as dockerd does; the zero time as Go's zero
// time, which clients read as "never".
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// imageName is the image as the client named it.
func imageName(a *api.Arrow) string {
	if x := extraOf(a.Config.Labels); x.Image != "" {
		return x.Image
	}
	return a.Source()
}

// networkModeOf is HostConfig.NetworkMode: as given, or what Arrow's
// network is in Docker's words.
func networkModeOf(a *api.Arrow) string {
	if x := extraOf(a.Config.Labels); x.NetworkMode != "" {
		return x.NetworkMode
	}
	switch a.Config.Network {
	case "", "user":
		return "bridge"
	}
	return a.Config.Network
}

// networkName is the key of the container's network in
// NetworkSettings.Networks: Docker's "bridge" for Arrow's user network.
func networkName(a *api.Arrow) string {
	switch a.Config.Network {
	case "", "user":
		return "bridge"
	}
	return a.Config.Network
}

// endpointOf describes the container on its network, with the IDs the
// network endpoints give it (netID, netEndpointID). On Arrow's user
// network every running guest has QEMU's one address; on a bridge
// network the arrow's endpoint is its own for its whole life.
func endpointOf(a *api.Arrow, gateway string) *network.EndpointSettings {
	name := networkName(a)
	es := &network.EndpointSettings{Aliases: a.Config.NetworkAliases, NetworkID: netID(name)}
	running := stateOf(a) == container.StateRunning || stateOf(a) == container.StatePaused
	switch a.Config.Network {
	case "none":
		if running {
			es.EndpointID = netEndpointID(name, a.ID)
		}
		return es
	case "", "user":
		if running {
			es.EndpointID = netEndpointID(name, a.ID)
			es.IPAddress, es.IPPrefixLen, es.Gateway = userGuest.Addr(), userGuest.Bits(), userGateway
		}
		return es
	}
	if ep := a.Endpoint; ep != nil {
		es.EndpointID = netEndpointID(name, a.ID)
		// An address with its prefix length, or without (then the
		// network's is unknown here).
		if p, err := netip.ParsePrefix(ep.Address); err == nil {
			es.IPAddress, es.IPPrefixLen = p.Addr(), p.Bits()
		} else if ip, err := netip.ParseAddr(ep.Address); err == nil {
			es.IPAddress = ip
		}
		if mac, err := net.ParseMAC(ep.MAC); err == nil {
			es.MacAddress = network.HardwareAddr(mac)
		}
		if g, err := netip.ParseAddr(gateway); err == nil {
			es.Gateway = g
		}
		es.DNSNames = append([]string{a.Name}, a.Config.NetworkAliases...)
		if len(a.ID) >= 12 {
			es.DNSNames = append(es.DNSNames, a.ID[:12])
		}
	}
	return es
}

// portMapOf is NetworkSettings.Ports: each exposed or published port,
// with its bindings.
func portMapOf(a *api.Arrow, exposed []string) network.PortMap {
	pm := network.PortMap{}
	for _, e := range exposed {
		if p, err := network.ParsePort(e); err == nil {
			pm[p] = nil
		}
	}
	for _, p := range a.Config.Ports {
		port, ok := network.PortFrom(uint16(p.GuestPort), network.IPProtocol(p.Protocol()))
		if !ok {
			continue
		}
		pm[port] = append(pm[port], network.PortBinding{HostIP: hostIPOf(p), HostPort: strconv.Itoa(p.HostPort)})
	}
	return pm
}

// exposedOf is the container's exposed ports: as create recorded them,
// with the published ones.
func exposedOf(a *api.Arrow) []string {
	out := slices.Clone(extraOf(a.Config.Labels).Exposed)
	for _, p := range a.Config.Ports {
		out = append(out, fmt.Sprintf("%d/%s", p.GuestPort, p.Protocol()))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// mountsOf are the container's mounts as Docker shows them.
func mountsOf(a *api.Arrow) []container.MountPoint {
	out := []container.MountPoint{}
	for _, v := range a.Config.Volumes {
		m := container.MountPoint{Destination: v.Target, RW: !v.ReadOnly, Propagation: mount.PropagationRPrivate}
		if !v.ReadOnly {
			m.Mode = "rw"
		} else {
			m.Mode = "ro"
		}
		if v.Named() {
			m.Type, m.Name, m.Driver, m.Propagation = mount.TypeVolume, v.Source, "local", ""
			m.Mode = "z"
		} else {
			m.Type, m.Source = mount.TypeBind, v.Source
		}
		out = append(out, m)
	}
	return out
}

// imageDefaults is what a container's image says of how it runs, for
// inspect and list: dockerd shows a container's config merged with its
// image's.
type imageDefaults struct {
	// ID is the image's ID ("sha256:..."); empty when the store has it
	// no more (or there is no store).
	ID     string
	Config ocispec.ImageConfig
}

// effectiveConfig is the container's command line, environment, working
// directory and user as it runs them: its own over its image's, as
// docker run combines them (an entrypoint given drops the image's Cmd).
func effectiveConfig(a *api.Arrow, img *imageDefaults) (entrypoint, cmd, env []string, dir, user string) {
	c := &a.Config
	if c.Image == "" {
		// A host program: its command line is its own.
		line := a.Command()
		if len(line) > 0 {
			entrypoint, cmd = line[:1], line[1:]
		}
		return entrypoint, cmd, c.Env, c.Dir, c.User
	}
	ic := &img.Config
	entrypoint, cmd = c.Entrypoint, c.Args
	if entrypoint == nil {
		entrypoint = ic.Entrypoint
		if len(cmd) == 0 {
			cmd = ic.Cmd
		}
	}
	env = slices.Clone(ic.Env)
	for _, e := range c.Env {
		k, _, _ := strings.Cut(e, "=")
		env = slices.DeleteFunc(env, func(x string) bool { xk, _, _ := strings.Cut(x, "="); return xk == k })
		env = append(env, e)
	}
	dir, user = c.Dir, c.User
	if dir == "" {
		dir = ic.WorkingDir
	}
	if user == "" {
		user = ic.User
	}
	return entrypoint, cmd, env, dir, user
}

// inspectOf is GET /containers/{id}/json's answer. imageID is the
// image's ID ("sha256:...") if the store has it, gateway the bridge
// network's gateway address.
func inspectOf(a *api.Arrow, img imageDefaults, gateway string) container.InspectResponse {
	x := extraOf(a.Config.Labels)
	st := stateOf(a)
	entrypoint, cmd, env, dir, user := effectiveConfig(a, &img)
	line := append(slices.Clone(entrypoint), cmd...)
	pathName, args := "", []string{}
	if len(line) > 0 {
		pathName, args = line[0], line[1:]
	}
	exposed := exposedOf(a)
	state := &container.State{
		Status:     st,
		Running:    st == container.StateRunning || st == container.StatePaused,
		Paused:     a.Paused,
		Restarting: a.State == api.Restarting,
		OOMKilled:  a.OOMKilled,
		Pid:        a.Pid,
		ExitCode:   a.ExitCode,
		Error:      a.Error,
		StartedAt:  dockerTime(a.StartedAt),
		FinishedAt: dockerTime(a.FinishedAt),
	}
	if a.Health != "" {
		state.Health = &container.Health{Status: container.HealthStatus(a.Health)}
	}
	if !state.Running {
		state.Pid = 0
	}
	cfg := &container.Config{
		Hostname:     a.Config.Hostname,
		User:         user,
		Tty:          a.Config.TTY,
		OpenStdin:    a.Config.Stdin,
		StdinOnce:    x.StdinOnce,
		Env:          nilToEmpty(env),
		Cmd:          cmd,
		Image:        imageName(a),
		WorkingDir:   dir,
		Entrypoint:   entrypoint,
		Labels:       publicLabels(a.Config.Labels),
		ExposedPorts: network.PortSet{},
	}
	for _, e := range exposed {
		if p, err := network.ParsePort(e); err == nil {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if a.Config.StopTimeout > 0 {
		t := int(a.Config.StopTimeout)
		cfg.StopTimeout = &t
	}
	hc := &container.HostConfig{
		Binds:           x.Binds,
		NetworkMode:     container.NetworkMode(networkModeOf(a)),
		PortBindings:    network.PortMap{},
		RestartPolicy:   container.RestartPolicy{Name: container.RestartPolicyMode(restartName(a.Config.Restart)), MaximumRetryCount: a.Config.Restart.MaxRetries},
		AutoRemove:      x.AutoRemove,
		PublishAllPorts: x.PublishAllPorts,
		ReadonlyRootfs:  a.Config.ReadOnly,
		ConsoleSize:     x.ConsoleSize,
		LogConfig:       container.LogConfig{Type: "json-file", Config: map[string]string{}},
		Runtime:         "arrow",
		Resources: container.Resources{
			Memory:   int64(a.Config.MemoryMiB) << 20,
			NanoCPUs: int64(a.Config.CPUs) * 1e9,
		},
	}
	if x.Memory != 0 {
		hc.Memory = x.Memory
	}
	if x.NanoCPUs != 0 {
		hc.NanoCPUs = x.NanoCPUs
	}
	for _, h := range a.Config.HostAliases {
		hc.ExtraHosts = append(hc.ExtraHosts, h+":host-gateway")
	}
	for _, p := range a.Config.Ports {
		port, ok := network.PortFrom(uint16(p.GuestPort), network.IPProtocol(p.Protocol()))
		if !ok {
			continue
		}
		b := network.PortBinding{HostPort: strconv.Itoa(p.HostPort)}
		if p.HostIP != "" {
			b.HostIP = hostIPOf(p)
		}
		hc.PortBindings[port] = append(hc.PortBindings[port], b)
	}
	ns := &container.NetworkSettings{
		SandboxID: a.ID,
		Ports:     portMapOf(a, exposed),
		Networks:  map[string]*network.EndpointSettings{networkName(a): endpointOf(a, gateway)},
	}
	if stateOf(a) != container.StateRunning && stateOf(a) != container.StatePaused {
		// dockerd shows no bindings of a container that is not running.
		ns.Ports = network.PortMap{}
	}
	return container.InspectResponse{
		ID:              a.ID,
		Created:         dockerTime(a.Created),
		Path:            pathName,
		Args:            args,
		State:           state,
		Image:           img.ID,
		LogPath:         a.LogPath,
		Name:            "/" + a.Name,
		RestartCount:    a.Restarts,
		Driver:          "arrow",
		Platform:        "linux",
		HostConfig:      hc,
		Mounts:          mountsOf(a),
		Config:          cfg,
		ExecIDs:         nil,
		NetworkSettings: ns,
	}
}

func restartName(p api.RestartPolicy) string {
	if p.Name == "" {
		return api.RestartNo
	}
	return p.Name
}

func nilToEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// summaryOf is one container of GET /containers/json.
func summaryOf(a *api.Arrow, img imageDefaults, gateway string, now time.Time) container.Summary {
	entrypoint, cmd, _, _, _ := effectiveConfig(a, &img)
	s := container.Summary{
		ID:      a.ID,
		Names:   []string{"/" + a.Name},
		Image:   imageName(a),
		ImageID: img.ID,
		Command: strings.Join(append(slices.Clone(entrypoint), cmd...), " "),
		Created: a.Created.Unix(),
		Ports:   []container.PortSummary{},
		Labels:  publicLabels(a.Config.Labels),
		State:   stateOf(a),
		Status:  statusOf(a, now),
		Mounts:  mountsOf(a),
		NetworkSettings: &container.NetworkSettingsSummary{
			Networks: map[string]*network.EndpointSettings{networkName(a): endpointOf(a, gateway)},
		},
	}
	s.HostConfig.NetworkMode = networkModeOf(a)
	if a.Health != "" {
		s.Health = &container.HealthSummary{Status: container.HealthStatus(a.Health)}
	}
	running := s.State == container.StateRunning || s.State == container.StatePaused
	for _, p := range a.Config.Ports {
		ps := container.PortSummary{PrivatePort: uint16(p.GuestPort), Type: p.Protocol()}
		if running {
			ps.IP, ps.PublicPort = hostIPOf(p), uint16(p.HostPort)
		}
		s.Ports = append(s.Ports, ps)
	}
	return s
}

// containerFilter is GET /containers/json's (and prune's) filters,
// parsed.
type containerFilter struct {
	f dockerFilters
	// names are the compiled name patterns.
	names []*regexp.Regexp
	// ancestorIDs are the IDs ("sha256:...") of the images the ancestor
	// filter names, as the store resolves them (see resolveAncestors).
	ancestorIDs map[string]bool
}

// resolveAncestors resolves the ancestor filter's images to their IDs,
// so that a container matches whichever way it named its image.
func (cf *containerFilter) resolveAncestors(imgs []store.Image) {
	cf.ancestorIDs = map[string]bool{}
	for v := range cf.f["ancestor"] {
		if img, _, err := imgFind(imgs, v); err == nil {
			cf.ancestorIDs["sha256:"+img.ID] = true
		}
	}
}

// containerFilterKeys are the filters of GET /containers/json Arrow
// applies; dockerd's others are refused rather than ignored.
var containerFilterKeys = []string{"id", "name", "label", "status", "ancestor", "network", "exited", "volume", "health", "until"}

func newContainerFilter(f dockerFilters, allowed []string) (*containerFilter, error) {
	for k := range f {
		if !slices.Contains(allowed, k) {
			return nil, invalidf("invalid filter '%s'", k)
		}
	}
	cf := &containerFilter{f: f}
	for n := range f["name"] {
		if len(n) > 256 {
			return nil, invalidf("name filter %.40q...: too long", n)
		}
		re, err := regexp.Compile(n)
		if err != nil {
			return nil, invalidf("name filter %q: %v", n, err)
		}
		cf.names = append(cf.names, re)
	}
	for s := range f["status"] {
		if container.ValidateContainerState(container.ContainerState(s)) != nil {
			return nil, invalidf("invalid filter 'status=%s': want created, restarting, running, removing, paused, exited or dead", s)
		}
	}
	for e := range f["exited"] {
		if _, err := strconv.Atoi(e); err != nil {
			return nil, invalidf("invalid filter 'exited=%s': want an exit code", e)
		}
	}
	for u := range f["until"] {
		if _, err := parseTimeParam(u, time.Now()); err != nil {
			return nil, invalidf("invalid filter 'until=%s': %v", u, err)
		}
	}
	return cf, nil
}

// match reports whether the container passes every filter: within one
// key any value may match, as in dockerd.
func (cf *containerFilter) match(a *api.Arrow, imageID string) bool {
	f := cf.f
	if ids := f["id"]; len(ids) > 0 && !anyOf(ids, func(v string) bool { return strings.HasPrefix(a.ID, v) }) {
		return false
	}
	if len(cf.names) > 0 && !slices.ContainsFunc(cf.names, func(re *regexp.Regexp) bool { return re.MatchString("/" + a.Name) }) {
		return false
	}
	if ls := f["label"]; len(ls) > 0 && !matchLabels(ls, publicLabels(a.Config.Labels)) {
		return false
	}
	if ss := f["status"]; len(ss) > 0 && !ss[string(stateOf(a))] {
		return false
	}
	if es := f["exited"]; len(es) > 0 && (stateOf(a) != container.StateExited || !es[strconv.Itoa(a.ExitCode)]) {
		return false
	}
	if as := f["ancestor"]; len(as) > 0 && !cf.ancestorIDs[imageID] && !anyOf(as, func(v string) bool {
		name := imageName(a)
		id := strings.TrimPrefix(v, "sha256:")
		return v == name || v == a.Config.Image || imgSameName(name, v) || imgSameName(a.Config.Image, v) ||
			imageID != "" && len(id) >= 4 && isHexID(id) && strings.HasPrefix(strings.TrimPrefix(imageID, "sha256:"), id)
	}) {
		return false
	}
	if ns := f["network"]; len(ns) > 0 && !ns[networkName(a)] && !ns[a.Config.Network] {
		return false
	}
	if vs := f["volume"]; len(vs) > 0 && !slices.ContainsFunc(a.Config.Volumes, func(v api.Volume) bool { return vs[v.Source] || vs[v.Target] }) {
		return false
	}
	if hs := f["health"]; len(hs) > 0 && !hs[a.Health] && !(a.Health == "" && hs["none"]) {
		return false
	}
	for u := range f["until"] {
		if t, err := parseTimeParam(u, time.Now()); err == nil && !a.Created.Before(t) {
			return false
		}
	}
	return true
}

func anyOf(set map[string]bool, f func(string) bool) bool {
	for v := range set {
		if f(v) {
			return true
		}
	}
	return false
}

// matchLabels reports whether labels has every one of want: "key" (any
// value) or "key=value". (dockerd requires all labels to match.)
func matchLabels(want map[string]bool, labels map[string]string) bool {
	for w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}
