// Command arrow is the Arrow CLI: it runs one application per microVM.
//
//	arrow run /bin/echo hello
//	arrow kernel build
//	arrow version
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/run"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(execute(context.Background(), os.Args[1:]))
}

// execute runs the CLI with args and returns the process exit status.
func execute(ctx context.Context, args []string) int {
	g := &globals{}
	root := &cobra.Command{
		Use:           "arrow",
		Short:         "Run one application per lightweight virtual machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.root, "root", "", "Arrow's data directory (default $ARROW_ROOT, /var/lib/arrow as root, else ~/.local/share/arrow)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "arrowd's API socket (default $ARROW_SOCKET, /run/arrow/arrow.sock as root)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if !usesDataRoot(cmd) {
			return nil
		}
		return privateRoot(g.dataRoot())
	}
	root.AddCommand(newRunCmd(g), newImageCmd(g), newKernelCmd(g), newVersionCmd(g),
		newDaemonCmd(g), newShimCmd(),
		newPsCmd(g), newLogsCmd(g), newStopCmd(g), newStartCmd(g), newRestartCmd(g), newKillCmd(g),
		newRmCmd(g), newWaitCmd(g), newInspectCmd(g), newStatsCmd(g), newEventsCmd(g), newAttachCmd(g), newExecCmd(g),
		newNetworkCmd(g), newPortCmd(g), newVolumeCmd(g))
	root.AddCommand(newPauseCmd(g), newUnpauseCmd(g), newRenameCmd(g))
	root.AddCommand(newTemplateCmd(g), newSnapshotCmd(g), newFunctionCmd(g))
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return g.exit
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintln(os.Stderr, "arrow:", err)
	}
	var ee *run.Error
	if errors.As(err, &ee) {
		return ee.Code
	}
	// Flag and usage errors, and every other failure of Arrow itself.
	return run.ExitArrowFailed
}

// globals are the flags and results shared by all commands.
type globals struct {
	root   string
	socket string
	// exit is the status a command that succeeded as a command wants the
	// process to end with (arrow run: the application's).
	exit int
}

// usesDataRoot reports whether cmd may read or write the data root: every
// command but those that only print something of their own.
func usesDataRoot(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "version", "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return false
		case "shim":
			// Started by arrowd, which prepared the root it names.
			return false
		}
	}
	return true
}

// rootMode is the mode of the data root. It holds every user's images,
// included files, logs and VM state: no one else may even enter it.
const rootMode os.FileMode = 0o700

// privateRoot makes sure the data root at dir is a directory of this
// user's that no one else can enter (rootMode), before anything is
// written into it. It creates dir (and missing parents, 0755: only dir is
// private) when it does not exist, and tightens a dir of this user's with
// a looser mode. A dir owned by someone else is refused: its owner could
// read or swap whatever Arrow put there, and tightening it would take it
// from them.
func privateRoot(dir string) error {
	if dir == "" {
		return errors.New("no data root")
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create data root %s: %w", dir, err)
		}
		if err := os.Mkdir(dir, rootMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create data root %s: %w", dir, err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("data root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data root %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("data root %s: cannot tell its owner", dir)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("data root %s is owned by uid %d, not by you (uid %d): refusing to use it; "+
			"name a directory of your own with --root or $ARROW_ROOT", dir, st.Uid, euid)
	}
	if fi.Mode().Perm() != rootMode {
		if err := os.Chmod(dir, rootMode); err != nil {
			return fmt.Errorf("make data root %s private (mode %v): %w", dir, rootMode, err)
		}
	}
	return nil
}

// dataRoot is where Arrow keeps kernels and caches.
func (g *globals) dataRoot() string {
	if g.root != "" {
		return g.root
	}
	if r := os.Getenv("ARROW_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/arrow"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "arrow")
	}
	if u, err := user.Current(); err == nil {
		return filepath.Join(u.HomeDir, ".local", "share", "arrow")
	}
	return filepath.Join(os.TempDir(), "arrow")
}
