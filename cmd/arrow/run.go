package main

import (
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
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		o       run.Options
		memory  string
		stopSec int
	)
	cmd := &cobra.Command{
		Use:   "run [flags] PROGRAM [ARG...]",
		Short: "Run a program in a new microVM",
		Long: `Run a program in a new microVM and exit with its exit status.

PROGRAM is a host program (a path, or a name looked up in PATH): Arrow puts
the program, its shared libraries, the files of the Debian packages it comes
from, and any --include paths into the guest, boots Arrow's kernel and runs it.

Exit status: the program's own; 128+N when it was killed by signal N;
125 when Arrow failed; 126 when the program cannot be executed; 127 when it
or a library it needs was not found.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mib, err := parseMemory(memory)
			if err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			o.MemoryMiB = mib
			if cmd.Flags().Changed("cpus") && o.CPUs < 1 {
				return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--cpus %d: want at least 1", o.CPUs)}
			}
			o.StopTimeout = time.Duration(stopSec) * time.Second
			o.Program, o.Args = args[0], args[1:]
			o.Root = g.dataRoot()
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
	f := cmd.Flags()
	// Everything after PROGRAM belongs to PROGRAM.
	f.SetInterspersed(false)
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set an environment variable (KEY=value, or KEY to pass the host's value)")
	f.StringVarP(&o.Dir, "workdir", "w", "", "working directory in the guest (default: the current directory)")
	f.StringVarP(&o.User, "user", "u", "", "run as uid[:gid]")
	f.BoolVarP(&o.Stdin, "interactive", "i", false, "forward standard input")
	f.BoolVarP(&o.TTY, "tty", "t", false, "run on a terminal in the guest")
	f.StringArrayVar(&o.Includes, "include", nil, "also put this host file or directory into the guest (repeatable)")
	f.StringVar(&o.Hostname, "hostname", "", "the guest's host name (default: a random ID)")
	f.IntVar(&o.CPUs, "cpus", run.DefaultCPUs, "number of vCPUs")
	f.StringVarP(&memory, "memory", "m", strconv.Itoa(run.DefaultMemoryMiB)+"M", "guest memory (e.g. 256M, 1G)")
	f.StringVar(&o.Kernel, "kernel", "", "boot this kernel (vmlinux or bzImage) instead of Arrow's")
	f.StringVar(&o.KernelArgs, "kernel-args", "", "extra kernel command line arguments")
	f.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	f.BoolVar(&o.Console, "console", false, "show the guest's console (kernel messages) on standard error")
	f.BoolVar(&o.Debug, "debug", false, "print what Arrow does and how long each step takes")
	f.DurationVar(&o.BootTimeout, "boot-timeout", run.DefaultBootTimeout, "fail if the guest has not booted by then")
	f.IntVar(&stopSec, "stop-timeout", int(run.DefaultStopTimeout/time.Second), "seconds the program has to exit after SIGTERM/SIGINT/SIGHUP before its VM is stopped")
	return cmd
}

// parseMemory parses a memory size such as 256M, 1G or 512 (MiB, as QEMU's
// -m) into MiB.
func parseMemory(s string) (int, error) {
	orig := s
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := 1.0 // MiB
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1.0 / 1024
		case 'M':
			mult = 1
		case 'G':
			mult = 1024
		case 'T':
			mult = 1024 * 1024
		}
		if s[len(s)-1] >= 'A' && s[len(s)-1] <= 'Z' {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n != n {
		return 0, fmt.Errorf("--memory %q: want a size such as 256M or 1G", orig)
	}
	mib := n * mult
	if mib != float64(int(mib)) {
		return 0, fmt.Errorf("--memory %q: want a whole number of MiB", orig)
	}
	if mib < 32 || mib > 1<<20 {
		return 0, fmt.Errorf("--memory %q: want 32M to 1T", orig)
	}
	return int(mib), nil
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
