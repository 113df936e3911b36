package main

import (
	"fmt"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/kernel"
)

func newKernelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Build and list Arrow's guest kernel",
		Long: `Arrow's guest kernel is Debian's linux-source built with Arrow's config
fragment: virtio-mmio devices from the command line, built-in drivers, no
modules. It is built once and cached by source version and fragment hash.

Run as root, build installs the kernel into ` + kernel.SystemDir + `
(world-readable), where every user's arrow finds it; run as another user,
it builds into that user's data root. Arrow looks for the kernel in the
data root first, then in the system directory.`,
	}
	var jobs int
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the guest kernel (a few minutes; does nothing when it is cached)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := &kernel.Builder{
				Root: g.dataRoot(), Jobs: jobs, Progress: os.Stderr,
				System: kernel.DefaultSystemDir(), InstallSystem: os.Geteuid() == 0,
			}
			k, err := b.Build(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Println(k.Path)
			return nil
		},
	}
	build.Flags().IntVarP(&jobs, "jobs", "j", runtime.NumCPU(), "parallel compile jobs")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List built kernels (the data root's, then the system's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks, err := kernel.List(g.dataRoot())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tSOURCE\tRELEASE\tSIZE\tBUILT\tCURRENT\tPATH")
			for _, k := range ks {
				cur := ""
				if k.Current {
					cur = "*"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%.1f MiB\t%s\t%s\t%s\n", k.Key, k.Version, k.Release,
					float64(k.Size)/(1<<20), k.BuiltAt.Local().Format(time.DateTime), cur, k.Path)
			}
			return w.Flush()
		},
	}
	path := &cobra.Command{
		Use:   "path",
		Short: "Print the path of the current guest kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := kernel.Find(g.dataRoot())
			if err != nil {
				return err
			}
			fmt.Println(k.Path)
			return nil
		},
	}
	cmd.AddCommand(build, ls, path)
	return cmd
}
