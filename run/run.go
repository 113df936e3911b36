// Package run runs one application in its own microVM, start to finish:
// it resolves what the application needs, builds (or reuses) the guest's
// initramfs, boots the VM, hands arrow-init the application, relays its
// streams and signals and returns its exit status.
//
// It is what `arrow run` does in the foreground; the daemon will build on
// the same steps.
package run

import (
	"github.com/arrowsys/arrow/jail"

	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/spec"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// Defaults for [Options].
const (
	DefaultMemoryMiB   = 256
	DefaultCPUs        = 1
	DefaultBootTimeout = 30 * time.Second
	DefaultStopTimeout = 10 * time.Second
)

// Options describe one run.
type Options struct {
	// Program is the program to run: a path, or a name looked up in the
	// host's PATH. Its closure is what the guest contains.
	Program string
	// Args are the program's arguments (without the program itself).
	Args []string
	// Env is extra environment, KEY=value.
	Env []string
	// Dir is the working directory in the guest; the host's current
	// directory when empty, so that relative paths mean what they mean on
	// the host.
	Dir string
	// User is who the application runs as: "name", "uid", "name:group",
	// "uid:gid", "name:gid" or "uid:group", as docker run's --user. Names
	// are looked up in the image's (or RootFS's) /etc/passwd and
	// /etc/group; a host program takes numbers (or root). Empty means
	// the image's user, else root.
	User string
	// Includes are extra host files and directories put into the guest at
	// their own paths.
	Includes []string
	// Hostname is the guest's host name; the run's ID when empty.
	Hostname string

	// Image runs an image instead of a host program: Args replace its
	// command, as in docker run. It is an image of Arrow's store (`arrow
	// image`), else a path (an OCI layout directory or archive, with or
	// without an oci:, oci-archive: or docker-archive: prefix), imported
	// into the store, else a registry reference (docker:// optional),
	// pulled into it.
	Image string
	// RootFS runs Program inside this host directory, used as the root
	// file system, instead of a closure of host files.
	RootFS string
	// Entrypoint replaces the image's entrypoint (and drops its command).
	Entrypoint []string
	// ReadOnly gives an image or RootFS no writable layer: writes outside
	// volumes and tmpfs mounts fail. By default a tmpfs overlay takes
	// them and vanishes with the VM.
	ReadOnly bool
	// Volumes are host directories mounted in the guest.
	Volumes []Volume

	// Network is the run's network: [NetworkUser] (the default),
	// [NetworkNone], or the name of a bridge network, which the caller
	// set up and attaches the run to with Tap.
	Network string
	// Tap attaches the run to a bridge network; only with a Network
	// other than user and none.
	Tap *TapAttachment
	// Ports are published ports, in user mode (arrowd publishes those
	// of bridge networks itself). HostIP is an IPv4 address or empty.
	Ports []spec.Port

	// Stdin forwards In to the application; without it the application
	// reads /dev/null.
	Stdin bool
	// TTY runs the application on a terminal in the guest. The caller puts
	// the local terminal in raw mode and sends size changes on Resize.
	TTY bool
	// Size is the terminal's initial size.
	Size guest.WindowSize

	// MemoryMiB and CPUs size the VM.
	MemoryMiB int
	CPUs      int
	// Kernel is a guest kernel to use instead of Arrow's own.
	Kernel string
	// KernelArgs are appended to the guest kernel's command line.
	KernelArgs string
	// Accel is auto, kvm or tcg.
	Accel string
	// Console copies the guest's console (kernel messages) to Err.
	Console bool
	// Debug prints what Arrow does and how long each phase takes to Log.
	Debug bool
	// Cold boots the VM even where a clone of a pre-booted template would
	// do (see package template).
	Cold bool

	// BootTimeout bounds the time from starting QEMU to arrow-init's hello.
	BootTimeout time.Duration
	// StopTimeout is how long the application has to exit after a
	// forwarded SIGTERM, SIGINT or SIGHUP before the VM is killed.
	StopTimeout time.Duration

	// Root is Arrow's data root (kernels, initramfs cache).
	Root string
	// Init is the arrow-init binary; found next to the running executable
	// when empty (see [FindInit]).
	Init string

	In       io.Reader
	Out, Err io.Writer
	// Log receives Arrow's own diagnostics (with Debug or Console), and
	// news of an image being pulled.
	Log io.Writer
	// Signals are forwarded to the application.
	Signals <-chan os.Signal
	// Resize carries terminal size changes in TTY mode.
	Resize <-chan guest.WindowSize

	// NoJail runs QEMU and virtiofsd unjailed: as the caller, in the
	// host's namespaces, with QEMU's own seccomp sandbox only. For
	// debugging only; a run as root is otherwise always jailed (package
	// jail), and a run that is not root fails unless it sets NoJail.
	NoJail bool
	// HostAccess lets a guest on the user-mode network reach the host's
	// own addresses and loopback, at the gateway address (10.0.2.2),
	// which the guest's /etc/hosts names host.arrow.internal. Without
	// it the jail's guard refuses every such connection.
	HostAccess bool
	// HostAliases are more names for the host, with HostAccess.
	HostAliases []string
	// JailHelper is the arrow-jailer binary; found next to the running
	// executable when empty (see [jail.FindHelper]).
	JailHelper string
	// Cgroup, when set, is the group the VM's processes start in (a
	// supervisor's). When not set, a jailed run makes one of its own,
	// with the VM's memory plus [DefaultVMOverheadMiB], its CPUs, a pids
	// limit and no swap, and removes it when it ends.
	Cgroup jail.Cgroup

	// Started, when set, is called with the QEMU process's ID as soon as
	// the VM process exists (a supervisor puts a spare's QEMU, started
	// before the arrow had a cgroup, into the arrow's). An error ends the
	// run before the application starts: limits fail closed.
	Started func(pid int) error
	// Ready, when set, is called when the application was handed to
	// arrow-init, with how the VM started.
	Ready func(StartInfo)
	// Spare, when set, is a warmed clone from a pool (arrowd's): the run
	// uses it instead of starting a clone when it would be cloned from
	// the spare's template, and kills it otherwise. The run owns it.
	Spare *template.Spare
	// ReadyPort is a guest TCP port the application listens on once it
	// is ready to serve; Healthy, when set, is called when arrow-init
	// could connect to it.
	ReadyPort int
	Healthy   func()
}

// Result is how a run ended.
type Result struct {
	// Status is what arrow-init reported.
	Status guest.ExitStatus
	// Accel is the accelerator the VM ran under.
	Accel vm.Accel
	// Phases are how long each step took.
	Phases []Phase
	// Template is the key of the template the VM was cloned from; empty
	// for a cold boot.
	Template string
}

// StartInfo is how a run's VM started.
type StartInfo struct {
	// Template is the key of the template the VM was cloned from; empty
	// for a cold boot.
	Template string
	// Spare says the clone was a spare from a pool (Options.Spare).
	Spare bool
	// Phases are the steps up to the start, timed.
	Phases []Phase
}

// ExitCode is the exit status `arrow run` ends with for r.
func (r Result) ExitCode() int { return r.Status.ExitCode() }

// Phase is one timed step of a run.
type Phase struct {
	Name     string
	Duration time.Duration
}

func (o *Options) setDefaults() error {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = DefaultBootTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Err == nil {
		o.Err = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" && o.Image == "" && o.RootFS == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		o.Dir = wd
	}
	return nil
}

// newID returns a random run ID, used as the default host name and to
// derive the guest's MAC address.
func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spec builds what arrow-init is handed to run args as cred. imageEnv and
// imageDir are the image's defaults, which the options override.
func (o *Options) spec(args, imageEnv []string, imageDir string, cred credentials) (*guest.Spec, error) {
	dir := o.Dir
	if dir == "" {
		dir = imageDir
	}
	if dir == "" {
		dir = "/"
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	hostname := o.Hostname
	if hostname == "" {
		hostname = newID()
	}
	env = append(env, "HOSTNAME="+hostname)
	if o.TTY {
		env = append(env, "TERM=xterm")
	}
	env = append(env, imageEnv...)
	for _, e := range o.Env {
		k, _, ok := strings.Cut(e, "=")
		if k == "" {
			return nil, failf(ExitArrowFailed, "-e %q: want KEY=value or KEY", e)
		}
		if !ok {
			// -e KEY passes the host's value, as in docker.
			v, set := os.LookupEnv(k)
			if !set {
				continue
			}
			e = k + "=" + v
		}
		env = append(env, e)
	}
	env = mergeEnv(env)
	// As docker: HOME from /etc/passwd unless the image or -e set it.
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOME=") }) {
		home := cred.home
		switch {
		case home != "":
		case cred.uid == 0:
			home = "/root"
		default:
			home = "/"
		}
		env = append(env, "HOME="+home)
	}
	seed := make([]byte, 64+16)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("entropy for the guest: %w", err)
	}
	seed, machineID := seed[:64], hex.EncodeToString(seed[64:])
	s := &guest.Spec{
		Version:   guest.ProtocolVersion,
		Args:      args,
		Env:       env,
		Dir:       dir,
		UID:       cred.uid,
		GID:       cred.gid,
		Groups:    cred.groups,
		Hostname:  hostname,
		MachineID: machineID,
		Stdin:     o.Stdin,
		TTY:       o.TTY,
		Size:      o.Size,
		// As docker does: a high open-files limit servers expect.
		Rlimits:      []guest.Rlimit{{Type: "nofile", Soft: 1048576, Hard: 1048576}},
		TimeUnixNano: time.Now().UnixNano(),
		Seed:         seed,
		ReadyPort:    o.ReadyPort,
		Debug:        o.Debug,
	}
	if err := s.Validate(); err != nil {
		return nil, fail(ExitArrowFailed, err)
	}
	return s, nil
}

// mergeEnv keeps one entry per variable: the last one given, at the place
// of the first. (A later value must win in the guest, and a libc's getenv
// returns the first.)
func mergeEnv(env []string) []string {
	out := make([]string, 0, len(env))
	at := make(map[string]int, len(env))
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := at[k]; ok {
			out[i] = e
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	return out
}

// userCredentials resolves the user a run asks for (--user, else the
// image's) against db, with the exit status and message `arrow run`
// reports. what names the image or root file system in messages.
func userCredentials(o *Options, imageUser, what string, db *userDB) (credentials, error) {
	user, from := o.User, "--user"
	if user == "" && imageUser != "" {
		user, from = imageUser, what+": user (from its config)"
	}
	c, err := resolveUser(user, db)
	if err != nil {
		return c, failf(ExitArrowFailed, "%s %q: %w", from, user, err)
	}
	return c, nil
}

// Run runs the application described by o and returns how it ended. The
// error is nil whenever the application ran, whatever its exit status; it is
// an [*Error] when Arrow could not run it.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.setDefaults(); err != nil {
		return Result{}, fail(ExitArrowFailed, err)
	}
	p := &prepared{id: newID(), spare: o.Spare}
	if o.Hostname == "" {
		o.Hostname = p.id
	}
	defer p.release()
	defer p.dropSpare()
	if err := p.prepare(ctx, &o); err != nil {
		return Result{Phases: p.phases}, err
	}
	if p.cfg.Jail != nil && p.cfg.Jail.Cgroup == nil {
		g, err := runCgroup(p.id, &o)
		if err != nil {
			return Result{Phases: p.phases}, fail(ExitArrowFailed, err)
		}
		defer func() {
			// Bounded: a task stuck in the kernel must not hold the
			// run's exit.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = g.Kill(ctx)
			_ = g.Remove()
		}()
		p.cfg.Jail.Cgroup = g
	}
	res, err := p.boot(ctx, &o)
	res.Phases = append(p.phases, res.Phases...)
	if o.Debug {
		start := "cold"
		if res.Template != "" {
			start = "template " + res.Template
		}
		if p.fromSpare {
			start += " (a spare from the pool)"
		}
		fmt.Fprintf(o.Log, "arrow: start      %s\n", start)
		for _, ph := range res.Phases {
			fmt.Fprintf(o.Log, "arrow: %-10s %v\n", ph.Name, ph.Duration.Round(time.Microsecond))
		}
	}
	return res, err
}
