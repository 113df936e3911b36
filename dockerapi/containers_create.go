package dockerapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/vm"
)

// apiError is an error whose message is the client's answer, wrapping the
// sentinel that chooses its status in writeErr.
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

// invalidf is a 400: the request is wrong.
func invalidf(format string, args ...any) error {
	return &apiError{daemon.ErrInvalid, fmt.Sprintf(format, args...)}
}

// lacking is a 501: the request asks for what Arrow does not have.
func lacking(format string, args ...any) error {
	return &apiError{errNotImplemented, "Arrow does not support " + fmt.Sprintf(format, args...)}
}

// notFoundf is a 404.
func notFoundf(format string, args ...any) error {
	return &apiError{daemon.ErrNotFound, fmt.Sprintf(format, args...)}
}

// extraLabel is the label under which a container keeps what the Docker
// API says of it that api.Config has no field for (AutoRemove, StdinOnce,
// the image as the client named it, ...): with the arrow's record, so it
// survives arrowd's restarts. It is never shown as a label.
const extraLabel = "io.arrowsys.docker"

// dockerExtra is the content of extraLabel, JSON.
type dockerExtra struct {
	// Image is the image as the client named it ("busybox"), when the
	// store knows it by another name ("busybox:latest").
	Image      string `json:"image,omitempty"`
	AutoRemove bool   `json:"autoRemove,omitempty"`
	StdinOnce  bool   `json:"stdinOnce,omitempty"`
	// Exposed are the exposed ports ("80/tcp"), the image's and the
	// request's.
	Exposed []string `json:"exposed,omitempty"`
	// NetworkMode is HostConfig.NetworkMode as given ("default").
	NetworkMode     string `json:"networkMode,omitempty"`
	PublishAllPorts bool   `json:"publishAll,omitempty"`
	// Binds are HostConfig.Binds as given, for inspect.
	Binds []string `json:"binds,omitempty"`
	// Memory and NanoCPUs as given (Arrow rounds them).
	Memory   int64 `json:"memory,omitempty"`
	NanoCPUs int64 `json:"nanoCpus,omitempty"`
	// ConsoleSize is the TTY's initial size (height, width).
	ConsoleSize [2]uint `json:"consoleSize,omitzero"`
}

// extraOf reads a container's dockerExtra; the zero value for an arrow
// made without the Docker API.
func extraOf(labels map[string]string) dockerExtra {
	var x dockerExtra
	if s, ok := labels[extraLabel]; ok {
		_ = json.Unmarshal([]byte(s), &x)
	}
	return x
}

// publicLabels are a container's labels without extraLabel.
func publicLabels(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		if k != extraLabel {
			out[k] = v
		}
	}
	return out
}

// imageInfo is what create needs of an image in the store.
type imageInfo struct {
	// ID is the image's ID (hex, without "sha256:"); empty when no store
	// was consulted.
	ID string
	// Ref is how the daemon is to name it: the name the store has.
	Ref string
	// Exposed are the image's exposed ports ("80/tcp").
	Exposed []string
}

// translator turns a Docker create request into Arrow's; its functions
// reach the host (the image store, free ports), replaced in tests.
type translator struct {
	// image resolves an image reference; its error wraps
	// daemon.ErrNotFound for an image the store does not have.
	image func(ref string) (imageInfo, error)
	// freePorts picks n distinct free host ports of proto on ip ("" for
	// every address), within [lo, hi] when lo > 0.
	freePorts func(proto, ip string, lo, hi, n int) ([]int, error)
}

// Bounds on what a request may carry, beyond api.Config's: they keep a
// request from making Arrow bind ports or allocate without bound.
const (
	maxPortBindings = 256
	maxBinds        = 64
)

// translate turns POST /containers/create's body into an api.CreateRequest
// that records the arrow without starting it. It refuses, naming it, any
// option set that Arrow cannot honour; the zero values clients always send
// pass. Warnings are for the client (docker prints them).
func (t translator) translate(name string, req *container.CreateRequest) (*api.CreateRequest, []string, error) {
	name = strings.TrimPrefix(name, "/")
	if name != "" && !api.ValidName(name) {
		return nil, nil, invalidf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	if req.Config == nil {
		return nil, nil, invalidf("config cannot be empty in order to create a container")
	}
	cfg := req.Config
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	if err := refuseConfig(cfg); err != nil {
		return nil, nil, err
	}
	if err := refuseHostConfig(hc); err != nil {
		return nil, nil, err
	}
	if cfg.Image == "" {
		return nil, nil, invalidf("Config.Image: an image is required: Arrow runs containers from images")
	}
	img, err := t.image(cfg.Image)
	if err != nil {
		return nil, nil, err
	}
	x := dockerExtra{StdinOnce: cfg.StdinOnce, AutoRemove: hc.AutoRemove, PublishAllPorts: hc.PublishAllPorts,
		NetworkMode: string(hc.NetworkMode), Binds: hc.Binds, Memory: hc.Memory, NanoCPUs: hc.NanoCPUs, ConsoleSize: hc.ConsoleSize}
	if img.Ref != cfg.Image {
		x.Image = cfg.Image
	}
	c := api.Config{
		Image:    img.Ref,
		Env:      setEnv(cfg.Env),
		Dir:      cfg.WorkingDir,
		User:     cfg.User,
		Hostname: cfg.Hostname,
		TTY:      cfg.Tty,
		Stdin:    cfg.OpenStdin,
		ReadOnly: hc.ReadonlyRootfs,
	}
	if err := commandOf(cfg, &c); err != nil {
		return nil, nil, err
	}
	if c.Dir != "" && !path.IsAbs(c.Dir) {
		return nil, nil, invalidf("the working directory '%s' is invalid, it needs to be an absolute path", c.Dir)
	}
	if cfg.StopTimeout != nil {
		if *cfg.StopTimeout < 0 || *cfg.StopTimeout > api.MaxTimeoutSeconds {
			return nil, nil, invalidf("Config.StopTimeout %d: want 0 to %d seconds", *cfg.StopTimeout, api.MaxTimeoutSeconds)
		}
		c.StopTimeout = float64(*cfg.StopTimeout)
	}
	if c.MemoryMiB, err = memoryMiB(hc.Memory); err != nil {
		return nil, nil, err
	}
	if c.CPUs, err = cpusOf(&hc.Resources); err != nil {
		return nil, nil, err
	}
	if c.Restart, err = restartOf(hc.RestartPolicy); err != nil {
		return nil, nil, err
	}
	if hc.AutoRemove && c.Restart.Name != api.RestartNo && c.Restart.Name != "" {
		return nil, nil, invalidf("can't create 'AutoRemove' container with restart policy")
	}
	if c.Network, c.NetworkAliases, err = networkOf(hc.NetworkMode, cfg.NetworkDisabled, req.NetworkingConfig); err != nil {
		return nil, nil, err
	}
	if c.HostAccess, c.HostAliases, err = extraHostsOf(hc.ExtraHosts); err != nil {
		return nil, nil, err
	}
	if c.Volumes, err = volumesOf(hc.Binds, hc.Mounts); err != nil {
		return nil, nil, err
	}
	for target := range cfg.Volumes {
		if !slices.ContainsFunc(c.Volumes, func(v api.Volume) bool { return path.Clean(v.Target) == path.Clean(target) }) {
			return nil, nil, lacking("anonymous volumes (Config.Volumes %q): name the volume (-v NAME:%s) or bind a host directory", target, target)
		}
	}
	exposed := slices.Clone(img.Exposed)
	for p := range cfg.ExposedPorts {
		exposed = append(exposed, p.String())
	}
	slices.Sort(exposed)
	x.Exposed = slices.Compact(exposed)
	if c.Ports, err = t.portsOf(hc.PortBindings, hc.PublishAllPorts, x.Exposed); err != nil {
		return nil, nil, err
	}
	if len(c.Ports) > 0 && c.Network == "none" {
		return nil, nil, invalidf("published ports with network mode none: there is no network to publish them on")
	}
	c.Labels = make(map[string]string, len(cfg.Labels)+1)
	for k, v := range cfg.Labels {
		if k == extraLabel {
			return nil, nil, invalidf("label %s is Arrow's own", extraLabel)
		}
		c.Labels[k] = v
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, nil, fmt.Errorf("docker settings: %w", err)
	}
	c.Labels[extraLabel] = string(b)
	if err := c.Validate(); err != nil {
		return nil, nil, invalidf("%v", err)
	}
	return &api.CreateRequest{Name: name, Config: c, NoStart: true}, nil, nil
}

// setEnv drops the entries without "=": a variable the client named but
// had no value for (docker run -e FOO, compose's environment: [FOO]) is
// not set, as in dockerd.
func setEnv(env []string) []string {
	var out []string
	for _, e := range env {
		if strings.Contains(e, "=") {
			out = append(out, e)
		}
	}
	return out
}

// commandOf sets what runs: Docker's Entrypoint and Cmd over the image's.
// An Entrypoint given (even empty) replaces the image's and drops its Cmd;
// an empty one ([] or [""]) means none, so Cmd is the whole command line.
func commandOf(cfg *container.Config, c *api.Config) error {
	switch {
	case cfg.Entrypoint == nil:
		c.Args = cfg.Cmd
	case len(cfg.Entrypoint) == 0 || len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "":
		if len(cfg.Cmd) == 0 || cfg.Cmd[0] == "" {
			return invalidf("no command specified: the entrypoint is reset and there is no Cmd")
		}
		c.Entrypoint, c.Args = cfg.Cmd[:1], cfg.Cmd[1:]
	default:
		c.Entrypoint, c.Args = cfg.Entrypoint, cfg.Cmd
	}
	if len(c.Args) == 0 {
		c.Args = nil
	}
	return nil
}

// refuseConfig refuses the container options Arrow cannot honour.
func refuseConfig(cfg *container.Config) error {
	switch {
	case cfg.Domainname != "":
		return lacking("a domain name (Config.Domainname)")
	case cfg.Healthcheck != nil && len(cfg.Healthcheck.Test) > 0 && cfg.Healthcheck.Test[0] != "NONE":
		return lacking("health checks (Config.Healthcheck): Arrow reports a container healthy when a ready port accepts connections (arrow run --ready-port)")
	case cfg.StopSignal != "" && !strings.EqualFold(strings.TrimPrefix(strings.ToUpper(cfg.StopSignal), "SIG"), "TERM") && cfg.StopSignal != "15":
		return lacking("a stop signal other than SIGTERM (Config.StopSignal %q)", cfg.StopSignal)
	}
	return nil
}

// refuseHostConfig refuses the host options Arrow cannot honour: a VM is
// not a set of namespaces on the host, so what shares the host's (or
// another container's) kernel state has no meaning.
func refuseHostConfig(hc *container.HostConfig) error {
	r := &hc.Resources
	type check struct {
		set  bool
		what string
	}
	for _, c := range []check{
		{hc.Privileged, "privileged containers (HostConfig.Privileged): each container is a VM with its own kernel"},
		{len(hc.CapAdd) > 0, "adding capabilities (HostConfig.CapAdd)"},
		{len(hc.CapDrop) > 0, "dropping capabilities (HostConfig.CapDrop)"},
		{len(r.Devices) > 0, "host devices (HostConfig.Devices)"},
		{len(r.DeviceRequests) > 0, "device requests such as GPUs (HostConfig.DeviceRequests)"},
		{len(r.DeviceCgroupRules) > 0, "device cgroup rules (HostConfig.DeviceCgroupRules)"},
		{hc.PidMode != "" && hc.PidMode != "private", fmt.Sprintf("PID mode %q (HostConfig.PidMode): a VM has its own processes", hc.PidMode)},
		{hc.IpcMode != "" && hc.IpcMode != "private" && hc.IpcMode != "shareable", fmt.Sprintf("IPC mode %q (HostConfig.IpcMode)", hc.IpcMode)},
		{hc.UTSMode != "" && hc.UTSMode != "private", fmt.Sprintf("UTS mode %q (HostConfig.UTSMode)", hc.UTSMode)},
		{hc.UsernsMode != "" && hc.UsernsMode != "private", fmt.Sprintf("user namespace mode %q (HostConfig.UsernsMode)", hc.UsernsMode)},
		{hc.CgroupnsMode == "host", "the host's cgroup namespace (HostConfig.CgroupnsMode)"},
		{hc.Cgroup != "", "joining another cgroup (HostConfig.Cgroup)"},
		{r.CgroupParent != "", "a cgroup parent (HostConfig.CgroupParent)"},
		{len(hc.VolumesFrom) > 0, "volumes from other containers (HostConfig.VolumesFrom)"},
		{len(hc.Links) > 0, "legacy links (HostConfig.Links): put the containers on one network, where they resolve each other by name"},
		{len(hc.Tmpfs) > 0, "tmpfs mounts (HostConfig.Tmpfs)"},
		{len(hc.Sysctls) > 0, "sysctls (HostConfig.Sysctls)"},
		{len(hc.SecurityOpt) > 0, "security options (HostConfig.SecurityOpt)"},
		{len(hc.StorageOpt) > 0, "storage options (HostConfig.StorageOpt)"},
		{len(hc.DNS) > 0 || len(hc.DNSSearch) > 0 || len(hc.DNSOptions) > 0, "DNS settings (HostConfig.Dns, DnsSearch, DnsOptions)"},
		{len(hc.GroupAdd) > 0, "supplementary groups (HostConfig.GroupAdd)"},
		{hc.OomScoreAdj != 0, "an OOM score adjustment (HostConfig.OomScoreAdj)"},
		{hc.ShmSize != 0, "a /dev/shm size (HostConfig.ShmSize)"},
		{hc.Umask != nil, "a umask (HostConfig.Umask)"},
		{len(hc.MaskedPaths) > 0 || len(hc.ReadonlyPaths) > 0, "masked or read-only paths (HostConfig.MaskedPaths, ReadonlyPaths)"},
		{len(hc.Annotations) > 0, "runtime annotations (HostConfig.Annotations)"},
		{hc.Runtime != "" && hc.Runtime != "arrow", fmt.Sprintf("the runtime %q (HostConfig.Runtime): its runtime is Arrow", hc.Runtime)},
		{!hc.Isolation.IsDefault(), fmt.Sprintf("isolation %q (HostConfig.Isolation)", hc.Isolation)},
		{hc.VolumeDriver != "" && hc.VolumeDriver != "local", fmt.Sprintf("the volume driver %q (HostConfig.VolumeDriver)", hc.VolumeDriver)},
		{hc.LogConfig.Type != "" && hc.LogConfig.Type != "json-file" && hc.LogConfig.Type != "local", fmt.Sprintf("the log driver %q (HostConfig.LogConfig): Arrow keeps logs in json-file format", hc.LogConfig.Type)},
		{r.CPUShares != 0, "CPU shares (HostConfig.CpuShares): give a number of CPUs (--cpus)"},
		{r.CpusetCpus != "" || r.CpusetMems != "", "cpusets (HostConfig.CpusetCpus, CpusetMems)"},
		{r.CPURealtimePeriod != 0 || r.CPURealtimeRuntime != 0, "real-time CPU scheduling (HostConfig.CpuRealtimePeriod, CpuRealtimeRuntime)"},
		{r.CPUPercent != 0, "a CPU percentage (HostConfig.CpuPercent)"},
		{r.BlkioWeight != 0 || len(r.BlkioWeightDevice) > 0 || len(r.BlkioDeviceReadBps) > 0 || len(r.BlkioDeviceWriteBps) > 0 ||
			len(r.BlkioDeviceReadIOps) > 0 || len(r.BlkioDeviceWriteIOps) > 0 || r.IOMaximumIOps != 0 || r.IOMaximumBandwidth != 0, "block I/O limits (HostConfig.Blkio*)"},
		{r.MemoryReservation != 0, "a memory reservation (HostConfig.MemoryReservation): a VM's memory is its limit"},
		{r.MemorySwap != 0 && r.MemorySwap != -1 && r.MemorySwap != r.Memory, "swap (HostConfig.MemorySwap)"},
		{r.MemorySwappiness != nil && *r.MemorySwappiness != -1, "memory swappiness (HostConfig.MemorySwappiness)"},
		{r.OomKillDisable != nil && *r.OomKillDisable, "disabling the OOM killer (HostConfig.OomKillDisable)"},
		{r.PidsLimit != nil && *r.PidsLimit > 0, "a PID limit (HostConfig.PidsLimit)"},
		{len(r.Ulimits) > 0, "ulimits (HostConfig.Ulimits)"},
	} {
		if c.set {
			return lacking("%s", c.what)
		}
	}
	return nil
}

// memoryMiB turns Memory (bytes; 0: Arrow's default) into MiB, rounded up.
func memoryMiB(b int64) (int, error) {
	switch {
	case b == 0:
		return 0, nil
	case b < 0:
		return 0, invalidf("HostConfig.Memory %d: want a positive number of bytes", b)
	}
	mib := (b + 1<<20 - 1) >> 20
	switch {
	case mib < vm.MinMemoryMiB:
		return 0, invalidf("Minimum memory limit allowed is %d MiB: a VM needs it to boot (HostConfig.Memory asked for %d bytes)", vm.MinMemoryMiB, b)
	case mib > vm.MaxMemoryMiB:
		return 0, invalidf("HostConfig.Memory %d bytes: Arrow allows at most %d MiB", b, vm.MaxMemoryMiB)
	}
	return int(mib), nil
}

// cpusOf is the VM's vCPUs: NanoCpus, CpuCount or CpuQuota/CpuPeriod,
// rounded up (a VM has whole CPUs); 0 for Arrow's default.
func cpusOf(r *container.Resources) (int, error) {
	given := 0
	var cpus float64
	if r.NanoCPUs != 0 {
		given++
		cpus = float64(r.NanoCPUs) / 1e9
	}
	if r.CPUCount != 0 {
		given++
		cpus = float64(r.CPUCount)
	}
	if r.CPUQuota != 0 && r.CPUQuota != -1 {
		given++
		period := r.CPUPeriod
		if period == 0 {
			period = 100000 // the kernel's default CFS period
		}
		if period < 0 || r.CPUQuota < 0 {
			return 0, invalidf("HostConfig.CpuQuota %d, CpuPeriod %d: want positive values", r.CPUQuota, r.CPUPeriod)
		}
		cpus = float64(r.CPUQuota) / float64(period)
	} else if r.CPUPeriod != 0 && r.CPUQuota == 0 {
		return 0, lacking("a CPU period without a quota (HostConfig.CpuPeriod)")
	}
	switch {
	case given == 0:
		return 0, nil
	case given > 1:
		return 0, invalidf("HostConfig: give the CPUs one way: NanoCpus, CpuCount or CpuQuota")
	case cpus <= 0 || math.IsNaN(cpus):
		return 0, invalidf("HostConfig: CPUs %g: want a positive number", cpus)
	case cpus > float64(vm.MaxCPUs):
		return 0, invalidf("HostConfig: %g CPUs: Arrow allows at most %d", cpus, vm.MaxCPUs)
	}
	return int(math.Ceil(cpus)), nil
}

func restartOf(p container.RestartPolicy) (api.RestartPolicy, error) {
	switch p.Name {
	case "", container.RestartPolicyDisabled:
		if p.MaximumRetryCount != 0 {
			return api.RestartPolicy{}, invalidf("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
		return api.RestartPolicy{Name: api.RestartNo}, nil
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if p.MaximumRetryCount != 0 {
			return api.RestartPolicy{}, invalidf("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
		return api.RestartPolicy{Name: string(p.Name)}, nil
	case container.RestartPolicyOnFailure:
		if p.MaximumRetryCount < 0 {
			return api.RestartPolicy{}, invalidf("invalid restart policy: maximum retry count cannot be negative")
		}
		return api.RestartPolicy{Name: api.RestartOnFailure, MaxRetries: p.MaximumRetryCount}, nil
	}
	return api.RestartPolicy{}, invalidf("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", p.Name)
}

// networkOf maps NetworkMode onto Arrow's networks: the default (bridge)
// network is Arrow's user network, none is none, any other name a bridge
// network of that name. The aliases are those the request gives for that
// network.
func networkOf(mode container.NetworkMode, disabled bool, nc *network.NetworkingConfig) (string, []string, error) {
	m := string(mode)
	var net string
	switch {
	case disabled || m == "none":
		net = "none"
	case m == "" || m == "default" || m == "bridge":
		net = ""
	case m == "host":
		return "", nil, lacking("the host network (NetworkMode host): each container is a VM with its own network stack; publish ports instead (-p)")
	case strings.HasPrefix(m, "container:"):
		return "", nil, lacking("sharing another container's network (NetworkMode %s): each container is a VM with its own network stack", m)
	case !api.ValidNetworkName(m):
		return "", nil, invalidf("network %q: want default, bridge, none or a network's name", m)
	default:
		net = m
	}
	var aliases []string
	if nc != nil {
		for name, es := range nc.EndpointsConfig {
			if es == nil {
				continue
			}
			if name != m && !(net == "" && (name == "bridge" || name == "default")) {
				return "", nil, lacking("attaching at create to a network (%q) other than NetworkMode's (%q): connect it after create", name, m)
			}
			if es.IPAMConfig != nil && (es.IPAMConfig.IPv4Address.IsValid() || es.IPAMConfig.IPv6Address.IsValid() || len(es.IPAMConfig.LinkLocalIPs) > 0) {
				return "", nil, lacking("static IP addresses (EndpointsConfig.IPAMConfig)")
			}
			if len(es.Links) > 0 {
				return "", nil, lacking("legacy links (EndpointsConfig.Links)")
			}
			for _, a := range append(slices.Clone(es.Aliases), es.DNSNames...) {
				if a == "" || slices.Contains(aliases, a) {
					continue
				}
				if !validAlias(a) {
					return "", nil, invalidf("network alias %q: want a host name", a)
				}
				aliases = append(aliases, a)
			}
		}
	}
	if len(aliases) > 0 && (net == "" || net == "none") {
		// The user network has no name resolution among containers;
		// dockerd too refuses aliases on its default bridge.
		return "", nil, invalidf("network-scoped aliases are only supported for user-defined networks")
	}
	if len(aliases) > 64 {
		return "", nil, invalidf("at most 64 network aliases")
	}
	return net, aliases, nil
}

// validAlias accepts a DNS name: letters, digits, '-', '_' and '.'.
func validAlias(a string) bool {
	if len(a) > 253 || a[0] == '-' || a[0] == '.' {
		return false
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// extraHostsOf honours NAME:host-gateway (the host, as Arrow's host
// access gives it); fixed addresses Arrow cannot put in the guest's hosts
// file.
func extraHostsOf(hosts []string) (bool, []string, error) {
	var aliases []string
	for _, h := range hosts {
		name, addr, ok := strings.Cut(h, ":")
		if !ok {
			name, addr, ok = strings.Cut(h, "=")
		}
		if !ok || name == "" {
			return false, nil, invalidf("invalid extra host %q: want NAME:ADDRESS", h)
		}
		if addr != "host-gateway" {
			return false, nil, lacking("extra hosts with fixed addresses (HostConfig.ExtraHosts %q): only NAME:host-gateway, the host", h)
		}
		if !slices.Contains(aliases, name) {
			aliases = append(aliases, name)
		}
	}
	return len(aliases) > 0, aliases, nil
}

// volumesOf turns Binds ("SRC:DST[:OPTS]") and Mounts into Arrow's
// volumes: host directories (absolute paths) and named volumes.
func volumesOf(binds []string, mounts []mount.Mount) ([]api.Volume, error) {
	if len(binds)+len(mounts) > maxBinds {
		return nil, invalidf("at most %d binds and mounts", maxBinds)
	}
	var out []api.Volume
	for _, b := range binds {
		v, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	for i, m := range mounts {
		v := api.Volume{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		switch m.Type {
		case mount.TypeBind:
			if !path.IsAbs(m.Source) {
				return nil, invalidf("Mounts[%d]: invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", i, m.Source)
			}
			if m.BindOptions != nil && m.BindOptions.Propagation != "" && m.BindOptions.Propagation != mount.PropagationRPrivate && m.BindOptions.Propagation != mount.PropagationPrivate {
				return nil, lacking("mount propagation %q (Mounts[%d]): a VM shares no mounts with the host", m.BindOptions.Propagation, i)
			}
		case mount.TypeVolume:
			if m.Source == "" {
				return nil, lacking("anonymous volumes (Mounts[%d] has no Source): name the volume", i)
			}
			if err := api.ValidateVolumeName(m.Source); err != nil {
				return nil, invalidf("Mounts[%d]: %v", i, err)
			}
			if o := m.VolumeOptions; o != nil && (o.DriverConfig != nil && o.DriverConfig.Name != "" && o.DriverConfig.Name != "local" || o.Subpath != "") {
				return nil, lacking("volume drivers and subpaths (Mounts[%d].VolumeOptions)", i)
			}
		case mount.TypeTmpfs:
			return nil, lacking("tmpfs mounts (Mounts[%d])", i)
		default:
			return nil, lacking("mounts of type %q (Mounts[%d]): only bind and volume", m.Type, i)
		}
		if !path.IsAbs(m.Target) {
			return nil, invalidf("Mounts[%d]: invalid mount config: mount path %q must be absolute", i, m.Target)
		}
		out = append(out, v)
	}
	for i, v := range out {
		for _, w := range out[:i] {
			if path.Clean(v.Target) == path.Clean(w.Target) {
				return nil, invalidf("Duplicate mount point: %s", v.Target)
			}
		}
	}
	return out, nil
}

// parseBind parses one of HostConfig.Binds.
func parseBind(b string) (api.Volume, error) {
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return api.Volume{}, invalidf("invalid volume specification: '%s': want SOURCE:TARGET[:OPTIONS]", b)
	}
	v := api.Volume{Source: parts[0], Target: parts[1]}
	if !path.IsAbs(v.Target) {
		return api.Volume{}, invalidf("invalid volume specification: '%s': mount path must be absolute", b)
	}
	if !path.IsAbs(v.Source) {
		if err := api.ValidateVolumeName(v.Source); err != nil {
			return api.Volume{}, invalidf("invalid volume specification: '%s': %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path", b, v.Source)
		}
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				v.ReadOnly = true
			case "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated", "rprivate", "private":
				// rw is the default; SELinux relabelling and macOS
				// consistency mean nothing here; a VM's mounts are
				// private; nocopy: see below.
			case "shared", "rshared", "slave", "rslave":
				return api.Volume{}, lacking("mount propagation %q (%s): a VM shares no mounts with the host", o, b)
			default:
				return api.Volume{}, invalidf("invalid volume specification: '%s': unknown option %q", b, o)
			}
		}
	}
	return v, nil
}

// portsOf publishes PortBindings, and with publishAll every exposed port
// that has no binding, on host ports; a binding without a host port gets
// a free one, picked now, so that the arrow's record says which.
func (t translator) portsOf(bindings network.PortMap, publishAll bool, exposed []string) ([]api.Port, error) {
	type want struct {
		guest    network.Port
		ip       string
		lo, hi   int
		hostPort int
	}
	var wants []want
	keys := make([]network.Port, 0, len(bindings))
	for p := range bindings {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b network.Port) int { return strings.Compare(a.String(), b.String()) })
	n := 0
	for _, p := range keys {
		if !p.IsValid() || p.Num() == 0 {
			return nil, invalidf("invalid port %q in PortBindings", p.String())
		}
		if p.Proto() != network.TCP && p.Proto() != network.UDP {
			return nil, lacking("publishing %s ports (%s): only tcp and udp", p.Proto(), p)
		}
		bs := bindings[p]
		if len(bs) == 0 {
			bs = []network.PortBinding{{}}
		}
		for _, b := range bs {
			if n++; n > maxPortBindings {
				return nil, invalidf("at most %d port bindings", maxPortBindings)
			}
			w := want{guest: p}
			if b.HostIP.IsValid() {
				if b.HostIP.Zone() != "" {
					return nil, invalidf("host IP %s: no zones", b.HostIP)
				}
				if !b.HostIP.IsUnspecified() || b.HostIP.Is6() {
					w.ip = b.HostIP.Unmap().String()
				}
			}
			// "" and "0" ask for a free port (testcontainers sends "0").
			if b.HostPort != "" && b.HostPort != "0" {
				lo, hi, err := parsePortRange(b.HostPort)
				if err != nil {
					return nil, invalidf("invalid host port %q for %s: %v", b.HostPort, p, err)
				}
				if lo == hi {
					w.hostPort = lo
				} else {
					w.lo, w.hi = lo, hi
				}
			}
			wants = append(wants, w)
		}
	}
	if publishAll {
		for _, e := range exposed {
			p, err := network.ParsePort(e)
			if err != nil || p.Num() == 0 {
				return nil, invalidf("invalid exposed port %q", e)
			}
			if _, bound := bindings[p]; bound {
				continue
			}
			if p.Proto() != network.TCP && p.Proto() != network.UDP {
				continue // dockerd too publishes what it can
			}
			if n++; n > maxPortBindings {
				return nil, invalidf("at most %d port bindings", maxPortBindings)
			}
			wants = append(wants, want{guest: p})
		}
	}
	var out []api.Port
	// Pick the free ports of each (proto, ip, range) together, so that
	// two bindings of one request never get the same one.
	type key struct {
		proto, ip string
		lo, hi    int
	}
	need := map[key][]int{}
	var order []key
	for i, w := range wants {
		if w.hostPort != 0 {
			continue
		}
		k := key{string(w.guest.Proto()), w.ip, w.lo, w.hi}
		if _, ok := need[k]; !ok {
			order = append(order, k)
		}
		need[k] = append(need[k], i)
	}
	for _, k := range order {
		ports, err := t.freePorts(k.proto, k.ip, k.lo, k.hi, len(need[k]))
		if err != nil {
			return nil, fmt.Errorf("picking free host ports: %w", err)
		}
		if len(ports) != len(need[k]) {
			return nil, fmt.Errorf("picking free host ports: got %d, want %d", len(ports), len(need[k]))
		}
		for j, i := range need[k] {
			wants[i].hostPort = ports[j]
		}
	}
	for _, w := range wants {
		out = append(out, api.Port{HostIP: w.ip, HostPort: w.hostPort, GuestPort: int(w.guest.Num()), Proto: string(w.guest.Proto())})
	}
	return out, nil
}

// parsePortRange parses "8080" or "8000-8010".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = strconv.Atoi(a); err != nil || lo < 1 || lo > 65535 {
		return 0, 0, errors.New("want a port from 1 to 65535")
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil || hi < lo || hi > 65535 {
			return 0, 0, errors.New("want a range LOW-HIGH within 1 to 65535")
		}
	}
	return lo, hi, nil
}

// hostIPOf is a port's host address as Docker shows it: "0.0.0.0" for
// every address.
func hostIPOf(p api.Port) netip.Addr {
	if p.HostIP == "" {
		return netip.IPv4Unspecified()
	}
	a, err := netip.ParseAddr(p.HostIP)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return a
}
