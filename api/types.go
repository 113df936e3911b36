// Package api defines Arrow's service API: the resources arrowd serves over
// HTTP/JSON on its Unix socket (under /v1), and the errors it answers with.
// The same types are the wire format of the Go client (api/client) and of
// the OpenAPI description in api/openapi.yaml.
//
// The package holds data only, no behaviour beyond validation, so that
// clients need nothing of the daemon to speak to it.
package api

import (
	"fmt"
	"strings"
	"time"
)

// Version is the API version, the first element of every path.
const Version = "v1"

// MaxRequestBytes bounds a request body; larger bodies are refused with
// 413 before they are decoded.
const MaxRequestBytes = 1 << 20

// Config is Arrow's one description of an arrow: what runs (program,
// image or root file system, arguments, environment, user, working
// directory), what it is given (volumes, ports, network, memory, CPUs) and
// how it is managed (restart policy, labels). `arrow run`'s flags, spec
// files (package spec), the API, the shims and the runs all fill or read
// this one type, as containerd passes one OCI runtime spec through every
// layer; a new integration translates its own description into it.
//
// Paths are absolute when the daemon receives it: the daemon does not
// share the client's working directory or PATH, so the client resolves
// them. (A foreground run resolves them itself.)
type Config struct {
	// Image is an image in the store (name, ID or path); or else
	// Program, a host program, runs; with RootFS, inside that directory.
	Image   string `json:"image,omitempty"`
	Program string `json:"program,omitempty"`
	RootFS  string `json:"rootfs,omitempty"`
	// Service is a systemd service unit (nginx, redis-server.service,
	// postgresql@15-main) run as its distribution ships it: found in
	// the image's root file system, RootFS, or without either the
	// host's, and supervised in the guest by arrow-init (package unit).
	// It names what runs: no Program, Args or Entrypoint with it.
	Service string `json:"service,omitempty"`
	// Snapshot, instead of all of the above, starts the arrow as a clone
	// of an application snapshot (`arrow snapshot create`): its
	// application already runs, initialized, as it did in the arrow the
	// snapshot was taken of. What runs, its environment, user, memory
	// and CPUs are the snapshot's; the arrow's own are its name, host
	// name, published ports and how it is managed.
	Snapshot string `json:"snapshot,omitempty"`
	// Args are the program's arguments, or replace the image's command.
	Args       []string `json:"args,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Env        []string `json:"env,omitempty"`
	Dir        string   `json:"workdir,omitempty"`
	User       string   `json:"user,omitempty"`
	Includes   []string `json:"include,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	ReadOnly   bool     `json:"read_only,omitempty"`
	Volumes    []Volume `json:"volumes,omitempty"`
	// Stdin forwards standard input to the application (for a detached
	// arrow: keeps it open for `attach`).
	Stdin bool `json:"stdin,omitempty"`
	// TTY runs the application on a terminal in the guest: its output is
	// one stream (stdout). A detached arrow's terminal is reached by
	// attach (input with Stdin) and sized by resize. No service has one.
	TTY bool `json:"tty,omitempty"`
	// Network is "user" (the default: QEMU's user-mode network), "none"
	// (loopback only), or a network's name.
	Network string `json:"network,omitempty"`
	// NetworkAliases are further names that resolve to the arrow on its
	// bridge network (compose's service names), besides its own name.
	NetworkAliases []string `json:"network_aliases,omitempty"`
	// Ports are published ports.
	Ports []Port `json:"ports,omitempty"`
	// ReadyPort is a guest TCP port the application accepts connections
	// on once it is ready to serve: a detached arrow is "healthy", and
	// `arrow run -d` returns, when arrow-init's connection to it on the
	// guest's loopback succeeds and the guest reports it. (Through QEMU's
	// user-mode network the host's own connection would be accepted
	// either way.) In user mode it must be among the published ports.
	ReadyPort int `json:"ready_port,omitempty"`
	// ReadyOnInput, with Stdin, says the application is ready once it
	// waits for its standard input (its main process blocks reading
	// it): a function's handler that takes its request there.
	ReadyOnInput bool `json:"ready_on_input,omitempty"`

	MemoryMiB  int    `json:"memory_mib,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	Kernel     string `json:"kernel,omitempty"`
	KernelArgs string `json:"kernel_args,omitempty"`
	Accel      string `json:"accel,omitempty"`
	// Cold boots each run even where a clone of a pre-booted template
	// would do.
	Cold bool `json:"cold,omitempty"`
	// BootTimeout and StopTimeout are in seconds (0: the defaults).
	BootTimeout float64 `json:"boot_timeout,omitempty"`
	StopTimeout float64 `json:"stop_timeout,omitempty"`
	// HostAccess lets the guest reach the host's own addresses on the
	// user network, at the gateway, which HostAliases (and
	// host.arrow.internal) name in its /etc/hosts: docker's --add-host
	// NAME:host-gateway. Off, the VM's jail refuses it.
	HostAccess  bool     `json:"host_access,omitempty"`
	HostAliases []string `json:"host_aliases,omitempty"`
	// NoJail runs the VM's processes without their jail (run.Options):
	// DEBUGGING ONLY, UNSAFE, and only for a client that is root.
	NoJail bool `json:"no_jail,omitempty"`

	// Restart says when arrowd starts a detached arrow again; Labels are
	// free-form metadata. A foreground run ignores both.
	Restart RestartPolicy     `json:"restart,omitzero"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// WaitsReady says whether a detached arrow of this config reports when it
// is ready (healthy): with a ready port, or as a service, ready as systemd
// would have it (started; READY=1 for Type=notify; the PID file for
// forking).
func (c Config) WaitsReady() bool { return c.ReadyPort > 0 || c.ReadyOnInput || c.Service != "" }

// Volume is a host directory or a named volume mounted in the guest: the
// one mount type of every layer (flags, spec files, the API, runs). A
// Source that is not a path (holds no "/") names a volume, as docker's
// -v does; the volume is created on first use and kept under the data
// root until `arrow volume rm`.
type Volume struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Named reports whether v's Source names a volume rather than a host
// path (see [ValidateVolumeName]).
func (v Volume) Named() bool { return IsVolumeName(v.Source) }

// IsVolumeName reports whether a volume source names a volume: docker's
// rule, a source that is not a path is a name (valid or not: see
// [ValidateVolumeName]).
func IsVolumeName(source string) bool {
	return source != "" && !strings.ContainsRune(source, '/') && source != "." && source != ".."
}

// ValidateVolumeName checks a volume name as docker does,
// [a-zA-Z0-9][a-zA-Z0-9_.-]+, and bounds it to 128 bytes: it names a
// directory under the data root.
func ValidateVolumeName(name string) error {
	if len(name) > maxNameLen || len(name) < 2 || !isAlnum(name[0]) {
		return fmt.Errorf("volume name %q: want [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most %d characters", name, maxNameLen)
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return fmt.Errorf("volume name %q: want [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most %d characters", name, maxNameLen)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// String returns v in the short form SOURCE:TARGET[:ro] that --volume
// reads.
func (v Volume) String() string {
	s := v.Source + ":" + v.Target
	if v.ReadOnly {
		s += ":ro"
	}
	return s
}

// Port publishes a guest port on a host port: the one port type of every
// layer (flags, spec files, the API, runs, bridge networks, QEMU's
// forwards).
type Port struct {
	// HostIP is the host address to listen on, in canonical form; empty
	// for every address.
	HostIP string `json:"host_ip,omitempty"`
	// HostPort and GuestPort are 1 to 65535 (see [Config.Validate]).
	HostPort  int `json:"host_port"`
	GuestPort int `json:"guest_port"`
	// Proto is "tcp" (the default when empty) or "udp".
	Proto string `json:"proto,omitempty"`
}

// Protocols of a [Port].
const (
	TCP = "tcp"
	UDP = "udp"
)

// Protocol is p's protocol, [TCP] when Proto is empty.
func (p Port) Protocol() string {
	if p.Proto == "" {
		return TCP
	}
	return p.Proto
}

// String returns p as --publish reads it: [IP:]HOST:GUEST/PROTOCOL.
func (p Port) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.GuestPort, p.Protocol())
	switch {
	case p.HostIP == "":
		return s
	case strings.Contains(p.HostIP, ":"):
		return "[" + p.HostIP + "]:" + s
	}
	return p.HostIP + ":" + s
}

// CreateRequest asks the daemon to create an arrow and start it.
type CreateRequest struct {
	// Name is unique among arrows; one is made up when empty.
	Name   string `json:"name,omitempty"`
	Config `json:"config"`
	// NoStart records the arrow without starting it: it stays Created
	// until started (docker create).
	NoStart bool `json:"no_start,omitempty"`
	// AutoRemove removes the arrow once its run ends, as `docker run
	// --rm` does: the foreground `arrow run` that arrowd starts in a
	// spare. A daemon that finds such an arrow when it starts (its
	// client's streams went with the daemon before it) stops it and
	// removes it. No restart policy goes with it.
	AutoRemove bool `json:"auto_remove,omitempty"`

	// V1Restart and V1Labels are where the first clients of this API
	// put the restart policy and labels, beside the config, before
	// Config became the one description of an arrow. They are still
	// accepted: [CreateRequest.Fold] moves them into Config.
	V1Restart *RestartPolicy    `json:"restart,omitempty"`
	V1Labels  map[string]string `json:"labels,omitempty"`
}

// Fold moves V1Restart and V1Labels into Config, where they belong. Call
// it after [CreateRequest.Validate], which refuses them given twice.
func (r *CreateRequest) Fold() {
	if r.V1Restart != nil {
		r.Config.Restart = *r.V1Restart
	}
	if r.V1Labels != nil {
		r.Config.Labels = r.V1Labels
	}
	r.V1Restart, r.V1Labels = nil, nil
}

// CreateResponse answers a [CreateRequest].
type CreateResponse struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// RestartPolicy says when the daemon starts an arrow again after it ends:
// "no" (or empty), "on-failure" (a non-zero exit status; MaxRetries bounds
// the restarts when positive), "always", or "unless-stopped". Arrows that
// a user stopped are never restarted. Restarts back off exponentially.
type RestartPolicy struct {
	Name       string `json:"name,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// State is where an arrow is in its life.
type State string

// The states of an arrow.
const (
	// Created: recorded, not started (yet, or again after a daemon crash
	// before its supervisor came up).
	Created State = "created"
	// Starting: its VM is booting.
	Starting State = "starting"
	// Running: arrow-init started the application.
	Running State = "running"
	// Restarting: it ended and the restart policy will start it again.
	Restarting State = "restarting"
	// Exited: it ended, on its own, stopped, or killed.
	Exited State = "exited"
)

// Arrow is everything the daemon knows of one arrow (`arrow inspect`).
type Arrow struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Config is what the arrow runs. (Its Accel and Dir are shadowed by
	// the Arrow's own fields of those names: use a.Config.Accel.)
	Config  `json:"config"`
	Created time.Time `json:"created"`

	State      State     `json:"state"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// ExitCode is the status of the last run, as `arrow run` would exit.
	ExitCode int `json:"exit_code"`
	// Error explains an exit status Arrow gave rather than the application.
	Error string `json:"error,omitempty"`
	// OOMKilled: the last run ended because its VM exceeded its memory.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Restarts counts the restarts by the restart policy.
	Restarts int `json:"restarts"`
	// Paused: its VM is stopped (QMP stop) while it runs, until
	// unpaused. Its State stays Running.
	Paused bool `json:"paused,omitempty"`
	// Health is "starting", "healthy" or "unhealthy" for an arrow with
	// a ready port (see Config.ReadyPort), while it runs.
	Health string `json:"health,omitempty"`
	// StoppedByUser: `arrow stop` or `kill` ended the last run; the
	// restart policy does not apply.
	StoppedByUser bool `json:"stopped_by_user,omitempty"`
	// AutoRemove: the arrow is removed once its run ends
	// (CreateRequest.AutoRemove).
	AutoRemove bool `json:"auto_remove,omitempty"`

	// Pid is the VM's QEMU process while the arrow runs; ShimPid the
	// process that supervises it.
	Pid     int    `json:"pid,omitempty"`
	ShimPid int    `json:"shim_pid,omitempty"`
	Accel   string `json:"accel,omitempty"`
	// BootSeconds is the time from start to the application's start.
	BootSeconds float64 `json:"boot_seconds,omitempty"`
	// Template is the key of the pre-booted template the VM was cloned
	// from; empty when it booted cold.
	Template string `json:"template,omitempty"`
	// Spare says the clone was a spare from arrowd's pool: started,
	// warmed and paused before the arrow existed.
	Spare bool `json:"spare,omitempty"`
	// StartPhases are the steps of the last start and how long each
	// took (setup, template, clone or spare, boot for a cold one).
	StartPhases []Phase `json:"start_phases,omitempty"`
	// Endpoint is the arrow's place on its bridge network, if it has one.
	Endpoint *Endpoint `json:"endpoint,omitempty"`

	// Paths of the arrow's files on the host.
	Dir     string `json:"dir"`
	LogPath string `json:"log_path"`
	Cgroup  string `json:"cgroup,omitempty"`
}

// Command is the arrow's command line as `arrow ps` shows it; a
// service's is its unit, whose command lines the guest runs.
func (a *Arrow) Command() []string {
	if a.Config.Service != "" {
		return []string{"--service", a.Config.Service}
	}
	var c []string
	switch {
	case len(a.Config.Entrypoint) > 0:
		c = append(c, a.Config.Entrypoint...)
	case a.Config.Program != "":
		c = append(c, a.Config.Program)
	}
	return append(c, a.Config.Args...)
}

// Source is what the arrow runs: its image, or its program.
func (a *Arrow) Source() string {
	if a.Config.Snapshot != "" {
		return "snapshot:" + a.Config.Snapshot
	}
	if a.Config.Image != "" {
		return a.Config.Image
	}
	if a.Config.RootFS != "" {
		return a.Config.RootFS
	}
	return a.Config.Program
}

// WaitResponse answers a wait: the exit status of the run that ended.
type WaitResponse struct {
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

// LogEntry is one line of an arrow's output in a log stream.
type LogEntry struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	// Line is the line without its newline (bytes that are not UTF-8
	// become U+FFFD); Partial when no newline ended it.
	Line    string `json:"line"`
	Partial bool   `json:"partial,omitempty"`
}

// Stats are one sample of an arrow's resource use.
type Stats struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// CPUPercent is the VM's use of one host CPU over the sample
	// interval (200 is two whole CPUs).
	CPUPercent float64 `json:"cpu_percent"`
	// MemoryBytes is the resident memory of the VM's processes;
	// MemoryLimit the cgroup's limit (0: none).
	MemoryBytes int64 `json:"memory_bytes"`
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// MemoryPrivate is the part of MemoryBytes no other process maps (for
	// a VM cloned from a template: the pages written since the clone);
	// MemoryShared the part shared with others (template pages, QEMU's
	// code); MemoryPSS is the proportional set size.
	MemoryPrivate int64 `json:"memory_private_bytes"`
	MemoryShared  int64 `json:"memory_shared_bytes"`
	MemoryPSS     int64 `json:"memory_pss_bytes"`
	Pids          int   `json:"pids,omitempty"`
}

// Event is something that happened to an arrow (`arrow events`).
type Event struct {
	Time time.Time `json:"time"`
	// Type is create, start, die, stop, kill, restart, oom, pause,
	// unpause, rename or destroy.
	Type string `json:"type"`
	ID   string `json:"id"`
	Name string `json:"name"`
	// ExitCode is set on die.
	ExitCode *int `json:"exit_code,omitempty"`
	// Detail is free text (the signal of a kill, the error of a die, the
	// old name of a rename).
	Detail string `json:"detail,omitempty"`
}

// Info describes the daemon (`GET /v1/info`).
type Info struct {
	Version string `json:"version"`
	Root    string `json:"root"`
	// Accel is the accelerator new arrows get, and why.
	Accel       string `json:"accel"`
	AccelReason string `json:"accel_reason,omitempty"`
	Arrows      int    `json:"arrows"`
	Running     int    `json:"running"`
	Cgroups     string `json:"cgroups,omitempty"`
}

// Error is the body of every response with a status of 400 or more.
type Error struct {
	Message string `json:"message"`
}

// Phase is one timed step of an arrow's start.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// PoolEntry is one machine shape of arrowd's pool of spare VMs: warmed,
// paused clones of a template that arrows of that shape start from.
type PoolEntry struct {
	MemoryMiB int    `json:"memory_mib"`
	CPUs      int    `json:"cpus"`
	Network   string `json:"network,omitempty"` // "" (user mode) or "none"
	Accel     string `json:"accel,omitempty"`
	// Want is how many spares the pool keeps; Ready how many it holds,
	// Starting how many are being started.
	Want     int `json:"want"`
	Ready    int `json:"ready"`
	Starting int `json:"starting"`
}

// PoolRequest sets how many spares the pool keeps for a machine shape
// (`arrow template warm --count N`); the zero shape fields take the
// defaults of `arrow run`.
type PoolRequest struct {
	MemoryMiB int    `json:"memory_mib,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	Network   string `json:"network,omitempty"`
	Accel     string `json:"accel,omitempty"`
	// Count is the number of spares to keep; 0 empties the shape.
	Count int `json:"count"`
}

// NetworkCreateRequest asks for a bridge network.
type NetworkCreateRequest struct {
	Name string `json:"name"`
	// Subnet is an IPv4 prefix such as 10.89.1.0/24; a free /24 of
	// 10.89.0.0/16 is picked when empty.
	Subnet string `json:"subnet,omitempty"`
	// Labels are free-form metadata (compose marks its networks).
	Labels map[string]string `json:"labels,omitempty"`
}

// Network is a bridge network (`arrow network inspect`).
type Network struct {
	Name    string            `json:"name"`
	Bridge  string            `json:"bridge"`
	Subnet  string            `json:"subnet"`
	Gateway string            `json:"gateway"`
	MTU     int               `json:"mtu"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Endpoints are the arrows attached to it.
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is an arrow's place on a bridge network.
type Endpoint struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	MAC     string `json:"mac"`
	Tap     string `json:"tap"`
	// Aliases are the further names the network's DNS resolves to the
	// arrow (Config.NetworkAliases).
	Aliases []string `json:"aliases,omitempty"`
	// Ports are the published ports, as "127.0.0.1:8080->80/tcp".
	Ports []string `json:"ports,omitempty"`
}

// VolumeCreateRequest asks for a named volume (`arrow volume create`).
type VolumeCreateRequest struct {
	// Name is the volume's name (see [ValidateVolumeName]).
	Name string `json:"name"`
	// Labels are free-form metadata (compose marks its volumes).
	Labels map[string]string `json:"labels,omitempty"`
}

// VolumeInfo is a named volume (`arrow volume inspect`).
type VolumeInfo struct {
	Name    string            `json:"name"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Mountpoint is the host directory that holds its content.
	Mountpoint string `json:"mountpoint"`
	// Size is the bytes of its regular files, hard links counted once.
	Size int64 `json:"size"`
	// Arrows are the IDs of the detached arrows (running or not) whose
	// configs name it.
	Arrows []string `json:"arrows,omitempty"`
	// InUse is set when an arrow names it or a VM mounts it: rm and
	// prune leave it.
	InUse bool `json:"in_use"`
}

// VolumePruneResponse says what `arrow volume prune` removed.
type VolumePruneResponse struct {
	Removed []string `json:"removed"`
	// Bytes is the size of the volumes removed.
	Bytes int64 `json:"bytes"`
}
