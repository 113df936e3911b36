// Package run runs one application in its own microVM, start to finish,
// in three steps:
//
//   - plan (plan.go): resolve what the application needs (a host program's
//     closure, an image's or a directory's root disk, the kernel, the
//     network, the jail) and settle the VM config, the guest spec and the
//     template the VM may be cloned from, before any process exists;
//   - launch (launch.go): start the VM from the run's spare, else a clone
//     of its template, else a cold boot, in that order ([ColdReason] says
//     why a run booted cold);
//   - handle (handle.go): the caller's hold on the running VM: its [Handle]
//     hands arrow-init the application, relays its streams and signals
//     through the guest client (relay.go) and returns its exit status.
//
// [Run] is all three, what `arrow run` does in the foreground; arrowd's
// shims (package shim) use [Launch] and the [Handle] to run detached
// arrows. What runs is described by [api.Config], Arrow's one description
// of an arrow, inside [Options].
package run

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/jail"
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

// Options describe one run: Arrow's one description of an arrow
// ([api.Config]), and the host side of this run (its streams, its
// terminal, where Arrow's files are).
//
// Of the Config, a run reads what runs and what it is given; the restart
// policy and the labels are arrowd's. Its Dir defaults to the host's
// current directory for a host program, so that relative paths mean what
// they mean on the host. Its Network is [NetworkUser] (the default),
// [NetworkNone], or the name of a bridge network, which the caller set up
// and attaches the run to with Tap. Its Ports are published in user mode
// (arrowd publishes those of bridge networks itself). Its NoJail runs QEMU
// and virtiofsd unjailed, for debugging only: a run as root is otherwise
// always jailed (package jail), and a run that is not root fails unless it
// sets NoJail. Its BootTimeout and StopTimeout, in seconds, default to
// [DefaultBootTimeout] and [DefaultStopTimeout].
type Options struct {
	api.Config

	// Tap attaches the run to a bridge network; only with a Network
	// other than user and none.
	Tap *TapAttachment

	// RootFSKey, with the Config's RootFS, is the key its root disk is
	// cached under (see rootfs.Build), from a caller that knows the
	// tree's content without walking it: containerd's shim names the
	// committed, immutable snapshots an overlay is made of. It must
	// change whenever the tree's content may have. Empty: the key is
	// computed from the tree's metadata (rootfs.TreeKey), which differs
	// for every mount of the same tree.
	RootFSKey string

	// Size is the terminal's initial size, with TTY. The caller puts
	// the local terminal in raw mode and sends size changes on Resize.
	Size guest.WindowSize

	// Console copies the guest's console (kernel messages) to Err.
	Console bool
	// Debug prints what Arrow does and how long each phase takes to Log.
	Debug bool

	// Root is Arrow's data root (kernels, initramfs cache).
	Root string
	// Init is the arrow-init binary; found next to the running executable
	// when empty (see [FindInit]).
	Init string

	// In is forwarded to the application with Stdin; without Stdin the
	// application reads /dev/null.
	In       io.Reader
	Out, Err io.Writer
	// Log receives Arrow's own diagnostics (with Debug or Console), and
	// news of an image being pulled.
	Log io.Writer
	// Signals are forwarded to the application.
	Signals <-chan os.Signal
	// Resize carries terminal size changes in TTY mode.
	Resize <-chan guest.WindowSize

	// JailHelper is the arrow-jailer binary; found next to the running
	// executable when empty (see [jail.FindHelper]).
	JailHelper string
	// Cgroup, when set, is the group the VM's processes start in (a
	// supervisor's). When not set, a jailed run makes one of its own,
	// with the VM's memory plus [DefaultVMOverheadMiB], its CPUs, a pids
	// limit and no swap, and removes it when it ends.
	Cgroup jail.Cgroup

	// Spare, when set, is a warmed clone from a pool (arrowd's): the run
	// uses it instead of starting a clone when it would be cloned from
	// the spare's template, and kills it otherwise. The run owns it.
	Spare *template.Spare

	// app is the Config's Snapshot, looked up (see useSnapshot).
	app *template.App
}

// bootTimeout bounds the time from starting QEMU to arrow-init's hello.
func (o *Options) bootTimeout() time.Duration {
	if o.BootTimeout <= 0 {
		return DefaultBootTimeout
	}
	return seconds(o.BootTimeout)
}

// stopTimeout is how long the application has to exit after a forwarded
// SIGTERM, SIGINT or SIGHUP before the VM is killed.
func (o *Options) stopTimeout() time.Duration {
	if o.StopTimeout <= 0 {
		return DefaultStopTimeout
	}
	return seconds(o.StopTimeout)
}

// seconds converts the API's seconds (validated: at most a day).
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

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
	// for a cold boot, whose reason is Cold.
	Template string
	Cold     ColdReason
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
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Err == nil {
		o.Err = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	// A service's working directory is its unit's (WorkingDirectory=,
	// else /), not the caller's.
	if o.Dir == "" && o.Image == "" && o.RootFS == "" && o.Service == "" {
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
		env = append(env, "HOME="+cred.defaultHome())
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
		ReadyOnInput: o.ReadyOnInput,
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
