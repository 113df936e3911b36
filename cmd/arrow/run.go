package main

import (
	"github.com/arrowsys/arrow/api"

	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/spec"
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		o           run.Options
		memory      string
		bootTimeout time.Duration
		stopSec     int
		volumes     []string
		entrypoint  string
		specFile    string
		publish     []string
		addHosts    []string
		det         detachFlags
		snapshot    string
		noDaemon    bool
	)
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE|PROGRAM [ARG...] | --service NAME [IMAGE] | --from-snapshot NAME",
		Short: "Run an image or a program in a new microVM",
		Long: `Run an image or a program in a new microVM and exit with its exit status.

IMAGE is an image of the store ('arrow image import', 'arrow image pull'),
or an image to import first: an OCI image layout directory, an image
archive (a 'docker save' or OCI tarball), oci:DIR, oci-archive:FILE,
docker-archive:FILE, or docker://REF to pull from a registry. Its root file
system becomes the guest's (read-only, under a tmpfs overlay unless
--read-only), and its entrypoint, command, environment, working directory
and user apply as in docker run (user and group names are looked up in the
image's /etc/passwd and /etc/group). Otherwise the first argument is a host
program (a path, or a name looked up in PATH): Arrow puts the program, its
shared libraries, the files of the Debian packages it comes from, and any
--include paths into the guest. With --rootfs DIR, PROGRAM runs inside DIR
as the root file system.

With --service NAME, the systemd service unit NAME (nginx,
redis-server.service, postgresql@15-main) runs as its distribution ships
it: the host's unit and programs, or with IMAGE (or --rootfs DIR) the
unit inside it. Its directives are honoured, or refused by name when Arrow
does not support them; --debug says which ones the VM satisfies.

With --from-snapshot NAME, the arrow is a clone of the application
snapshot NAME ('arrow snapshot create'): its application is running
already, initialized, as it was in the arrow the snapshot was taken of.
The clone has its own entropy, machine ID, host name, MAC and clock;
what runs, and its memory and CPUs, are the snapshot's.

With -f, the spec file's image may also be a path or a registry reference:
a reference not in the store is pulled.

In the foreground, when an arrowd of the same data root answers on its
socket (none is started for it), the run takes a spare VM from arrowd's
pool: arrowd runs it as an arrow removed when it ends, and this command
relays its input, output, terminal and signals and exits with its status.
Runs a spare cannot serve (--cold, -v, --kernel, --kernel-args, --add-host,
--console, --no-jail) and --no-daemon (or $ARROW_NO_DAEMON=1) run in this
process, as without arrowd.

Exit status: the program's own; 128+N when it was killed by signal N;
125 when Arrow failed; 126 when the program cannot be executed; 127 when it
or a library it needs was not found.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if specFile != "" {
				return nil // the spec file names what to run
			}
			if snapshot != "" {
				// The snapshot says what runs.
				return cobra.NoArgs(cmd, args)
			}
			if cmd.Flags().Changed("service") {
				// The unit names what runs; an argument is its image.
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if specFile != "" {
				if err := applySpecFile(cmd, &o, &det, specFile, args); err != nil {
					return &run.Error{Code: run.ExitArrowFailed, Err: err}
				}
				if !cmd.Flags().Changed("memory") && o.MemoryMiB != 0 {
					memory = strconv.Itoa(o.MemoryMiB)
				}
				args = append([]string{o.Program}, o.Args...)
				if o.Image != "" {
					args = append([]string{o.Image}, o.Args...)
				}
			}
			mib, err := spec.ParseMemory(memory)
			if err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--memory: %w", err)}
			}
			o.MemoryMiB = mib
			if snapshot != "" {
				// The snapshot's machine, unless the user asked for
				// one (which must then be it).
				o.Snapshot = snapshot
				if !cmd.Flags().Changed("memory") {
					o.MemoryMiB = 0
				}
				if !cmd.Flags().Changed("cpus") {
					o.CPUs = 0
				}
				if !cmd.Flags().Changed("network") {
					o.Network = ""
				}
				if !cmd.Flags().Changed("accel") {
					o.Accel = ""
				}
			}
			if cmd.Flags().Changed("cpus") && o.CPUs < 1 {
				return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--cpus %d: want at least 1", o.CPUs)}
			}
			if stopSec < 0 || stopSec > api.MaxTimeoutSeconds {
				return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--stop-timeout %d: want 0 to %d seconds", stopSec, api.MaxTimeoutSeconds)}
			}
			if bootTimeout < 0 || bootTimeout > api.MaxTimeoutSeconds*time.Second {
				return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--boot-timeout %v: want 0 to %d seconds", bootTimeout, api.MaxTimeoutSeconds)}
			}
			o.BootTimeout, o.StopTimeout = bootTimeout.Seconds(), float64(stopSec)
			o.Root = g.dataRoot()
			switch {
			case o.Service != "" && len(args) > 0:
				// With --service, an argument is the image the unit is in.
				if _, ok := run.LookupImage(cmd.Context(), o.Root, args[0]); !ok && !run.IsImageSource(args[0]) {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--service %s %s: %s is not an image (the unit says what runs; without an image it is the host's)", o.Service, args[0], args[0])}
				}
				o.Image = args[0]
			case o.Service != "", o.Snapshot != "":
			default:
				o.Program, o.Args = args[0], args[1:]
			}
			for _, v := range volumes {
				vol, err := spec.ParseVolume(v)
				if err != nil {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("-v: %w", err)}
				}
				o.Volumes = append(o.Volumes, vol)
			}
			if cmd.Flags().Changed("entrypoint") {
				o.Entrypoint = strings.Fields(entrypoint)
			}
			for _, h := range addHosts {
				name, ok := strings.CutSuffix(h, ":host-gateway")
				if !ok || name == "" || !guest.IsHostName(name) {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--add-host %q: want NAME:host-gateway (the guest then reaches the host, which it cannot otherwise)", h)}
				}
				o.HostAccess = true
				if name != run.HostGatewayName {
					o.HostAliases = append(o.HostAliases, name)
				}
			}
			for _, p := range publish {
				port, err := spec.ParsePort(p)
				if err != nil {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("-p: %w", err)}
				}
				o.Ports = append(o.Ports, port)
			}
			// The first argument names an image when the store has one by
			// that name (a path never does); otherwise a host program.
			if o.RootFS == "" && o.Image == "" && o.Service == "" && o.Snapshot == "" {
				if _, ok := run.LookupImage(cmd.Context(), o.Root, args[0]); ok || run.IsImageSource(args[0]) {
					o.Image, o.Program = args[0], ""
				}
			}
			if err := det.check(cmd); err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			if err := det.apply(cmd, &o.Config); err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			if det.detach {
				if noDaemon {
					return &run.Error{Code: run.ExitArrowFailed, Err: errors.New("--no-daemon with -d: a detached arrow is arrowd's")}
				}
				return runDetached(cmd, g, &o, &det)
			}
			o.In, o.Out, o.Err, o.Log = os.Stdin, os.Stdout, os.Stderr, os.Stderr

			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
			defer signal.Stop(sigs)
			o.Signals = sigs

			if o.TTY {
				restore, resize, err := setupTerminal(&o)
				if err != nil {
					return &run.Error{Code: run.ExitArrowFailed, Err: err}
				}
				defer restore()
				o.Resize = resize
			}
			if c := daemonForRun(cmd.Context(), g, &o, noDaemon); c != nil {
				code, handled, err := runThroughDaemon(cmd.Context(), c, &o, sigs, o.Resize)
				if handled {
					g.exit = code
					return err
				}
			}
			res, err := run.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if res.Status.Message != "" {
				fmt.Fprintln(os.Stderr, "arrow:", res.Status.Message)
			}
			g.exit = res.ExitCode()
			return nil
		},
	}
	det.add(cmd)
	f := cmd.Flags()
	// Everything after PROGRAM belongs to PROGRAM.
	f.SetInterspersed(false)
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set an environment variable (KEY=value, or KEY to pass the host's value)")
	f.StringVarP(&o.Dir, "workdir", "w", "", "working directory in the guest (default: the current directory)")
	f.StringVarP(&o.User, "user", "u", "", "run as NAME|UID[:GROUP|GID] (names from the image's /etc/passwd and /etc/group)")
	f.BoolVarP(&o.Stdin, "interactive", "i", false, "forward standard input")
	f.BoolVarP(&o.TTY, "tty", "t", false, "run on a terminal in the guest")
	f.StringArrayVar(&o.Includes, "include", nil, "also put this host file or directory into the guest (repeatable)")
	f.StringVarP(&specFile, "file", "f", "", "run what this spec file (arrow.yaml, or JSON) describes; flags add to it")
	f.StringVar(&o.Service, "service", "", "run this systemd service unit as its distribution ships it (the host's, or with IMAGE or --rootfs the one inside)")
	f.StringVar(&o.RootFS, "rootfs", "", "run PROGRAM in this directory as the root file system")
	f.StringVar(&entrypoint, "entrypoint", "", "replace the image's entrypoint (words split on spaces)")
	f.BoolVar(&o.ReadOnly, "read-only", false, "no writable layer over the image's root file system")
	f.StringArrayVarP(&volumes, "volume", "v", nil, "mount a host directory: SRC:DST[:ro|rw] (repeatable)")
	f.StringVar(&o.Hostname, "hostname", "", "the guest's host name (default: a random ID)")
	f.StringVar(&o.Network, "network", run.NetworkUser, "network: user (QEMU user mode: outbound access, published ports), none (loopback only), or a network's name (with -d)")
	f.StringArrayVar(&addHosts, "add-host", nil, "NAME:host-gateway lets the guest reach the host (its loopback and addresses) at NAME; without it the jail refuses that (user network)")
	f.BoolVar(&o.NoJail, "no-jail", false, "DEBUGGING ONLY, UNSAFE: run QEMU without its jail (own uid, namespaces, root, seccomp allowlist, cgroup)")
	f.StringArrayVarP(&publish, "publish", "p", nil, "publish a guest port on the host: [IP:]HOST:GUEST[/tcp|udp] (repeatable)")
	f.IntVar(&o.CPUs, "cpus", run.DefaultCPUs, "number of vCPUs")
	f.StringVarP(&memory, "memory", "m", strconv.Itoa(run.DefaultMemoryMiB)+"M", "guest memory (e.g. 256M, 1G)")
	f.StringVar(&o.Kernel, "kernel", "", "boot this kernel (vmlinux or bzImage) instead of Arrow's")
	f.StringVar(&o.KernelArgs, "kernel-args", "", "extra kernel command line arguments")
	f.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	f.BoolVar(&o.Console, "console", false, "show the guest's console (kernel messages) on standard error")
	f.BoolVar(&o.Debug, "debug", false, "print what Arrow does and how long each step takes")
	f.StringVar(&snapshot, "from-snapshot", "", "start a clone of this application snapshot ('arrow snapshot create'): its application runs already, initialized")
	f.BoolVar(&o.Cold, "cold", false, "boot the VM even where a clone of a pre-booted template would do (here, not through arrowd)")
	f.BoolVar(&noDaemon, "no-daemon", false, "run in this process even when an arrowd answers (as $"+envNoDaemon+"=1): no spare from its pool")
	f.DurationVar(&bootTimeout, "boot-timeout", run.DefaultBootTimeout, "fail if the guest has not booted by then")
	f.IntVar(&stopSec, "stop-timeout", int(run.DefaultStopTimeout/time.Second), "seconds the program has to exit after SIGTERM/SIGINT/SIGHUP before its VM is stopped")
	return cmd
}

// setupTerminal puts the local terminal into raw mode, so that ^C and
// friends reach the application's terminal in the guest as bytes rather
// than signalling Arrow, and reports size changes.
func setupTerminal(o *run.Options) (restore func(), resize <-chan guest.WindowSize, err error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		if o.Stdin {
			return nil, nil, errors.New("-it: standard input is not a terminal (drop -t)")
		}
		return func() {}, nil, nil
	}
	if w, h, err := term.GetSize(fd); err == nil {
		o.Size = guest.WindowSize{Rows: uint16(h), Cols: uint16(w)}
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal raw mode: %w", err)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	ch := make(chan guest.WindowSize, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if w, h, err := term.GetSize(fd); err == nil {
					select {
					case ch <- guest.WindowSize{Rows: uint16(h), Cols: uint16(w)}:
					default:
					}
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		_ = term.Restore(fd, state)
	}, ch, nil
}

// applySpecFile fills o from the spec file at path. Flags given on the
// command line win; extra arguments replace the spec's args. The spec's
// name names a detached arrow (and the guest, unless --hostname does).
func applySpecFile(cmd *cobra.Command, o *run.Options, det *detachFlags, path string, args []string) error {
	sp, err := spec.Load(path)
	if err != nil {
		return err
	}
	changed := cmd.Flags().Changed
	c := &sp.Config
	if c.Image == "" && c.Program == "" && len(c.Args) > 0 && c.RootFS == "" {
		c.Program, c.Args = c.Args[0], c.Args[1:]
	}
	if len(args) > 0 {
		c.Args = args
	}
	// What the command line set wins; lists add up, the file's first.
	flags := o.Config
	o.Config = *c
	o.Env = append(c.Env, flags.Env...)
	o.Includes = append(c.Includes, flags.Includes...)
	o.Volumes = append(c.Volumes, flags.Volumes...)
	o.Ports = append(c.Ports, flags.Ports...)
	if changed("entrypoint") || c.Entrypoint == nil {
		o.Entrypoint = flags.Entrypoint
	}
	keep := func(dst *string, flag, v string) {
		if changed(flag) || *dst == "" {
			*dst = v
		}
	}
	keep(&o.Dir, "workdir", flags.Dir)
	keep(&o.User, "user", flags.User)
	keep(&o.Kernel, "kernel", flags.Kernel)
	keep(&o.Network, "network", flags.Network)
	keep(&o.KernelArgs, "kernel-args", flags.KernelArgs)
	keep(&o.Accel, "accel", flags.Accel)
	if changed("cpus") || c.CPUs == 0 {
		o.CPUs = flags.CPUs
	}
	if changed("memory") || c.MemoryMiB == 0 {
		o.MemoryMiB = flags.MemoryMiB
	}
	o.ReadOnly = c.ReadOnly || flags.ReadOnly
	o.Stdin = c.Stdin || flags.Stdin
	o.TTY = c.TTY || flags.TTY
	o.Cold, o.NoJail = flags.Cold, flags.NoJail
	o.Hostname = flags.Hostname
	if sp.Name != "" && !changed("hostname") {
		o.Hostname = sp.Name
	}
	if sp.Name != "" && !changed("name") {
		det.name = sp.Name
	}
	if o.Image == "" && o.Program == "" {
		return fmt.Errorf("%s: nothing to run", path)
	}
	return nil
}
