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
	"os"
	"os/user"
	"path/filepath"

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
	root.AddCommand(newRunCmd(g), newImageCmd(g), newKernelCmd(g), newVersionCmd(g),
		newDaemonCmd(g), newShimCmd(),
		newPsCmd(g), newLogsCmd(g), newStopCmd(g), newStartCmd(g), newRestartCmd(g), newKillCmd(g),
		newRmCmd(g), newWaitCmd(g), newInspectCmd(g), newStatsCmd(g), newEventsCmd(g), newAttachCmd(g),
		newNetworkCmd(g), newPortCmd(g))
	root.AddCommand(newTemplateCmd(g))
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
