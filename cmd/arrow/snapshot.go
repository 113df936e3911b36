package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Application snapshots: a ready arrow saved, to start initialized clones of",
		Long: `An application snapshot is a running arrow saved once its application is
ready: its memory, with the application initialized, and its devices.
'arrow run [-d] --from-snapshot NAME' starts clones of it in which the
application runs already: a server answers its first request without
starting up again. Each clone gets its own entropy, machine ID, host
name, MAC and clock before it runs on. What the application drew from
randomness before the snapshot (a hash seed, keys it made) is every
clone's: --signal names a signal each clone's application gets once the
clone is unique, to draw again.`,
	}
	var signal string
	create := &cobra.Command{
		Use:   "create [--signal SIG] ARROW NAME",
		Short: "Save a running arrow, once it is ready, as the application snapshot NAME",
		Long: `Save the running arrow ARROW as the application snapshot NAME, once it
is ready: when its ready port answers (run -d --ready-port), when its
service is ready, or at once without either. The arrow is paused while
its memory is saved, then runs on.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &api.SnapshotCreateRequest{Arrow: args[0], Name: args[1]}
			if signal != "" {
				n, err := api.ParseSignal(signal)
				if err != nil {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("--signal: %w", err)}
				}
				req.Signal = int(n)
			}
			if err := req.Validate(); err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			s, err := c.CreateSnapshot(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Printf("%s (arrow paused %.0f ms, %s of memory)\n", s.Name, s.SaveSeconds*1000, humanBytes(s.MemoryBytes))
			return nil
		},
	}
	create.Flags().StringVar(&signal, "signal", "", "signal each clone's application gets once the clone is unique (e.g. SIGUSR2), to re-seed")
	var format string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the application snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Snapshots(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(os.Stdout).Encode(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFROM\tRUNS\tMEMORY\tCPUS\tSIZE\tCREATED")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%dM\t%d\t%s\t%s ago\n", s.Name, shortID(s.Arrow), runs(s.Config), s.MemoryMiB, s.CPUs,
					humanBytes(s.MemoryBytes), time.Since(s.Created).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVar(&format, "format", "", "json: one JSON array")
	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Describe an application snapshot (JSON), checked",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			s, err := c.Snapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(s)
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove application snapshots (their running clones go on)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			var failed error
			for _, name := range args {
				if err := c.RemoveSnapshot(cmd.Context(), name); err != nil {
					fmt.Fprintln(os.Stderr, "arrow:", err)
					failed = err
					continue
				}
				fmt.Println(name)
			}
			return failed
		},
	}
	cmd.AddCommand(create, ls, inspect, rm)
	return cmd
}

// runs says what a config runs, in ps's terms (api.Arrow's Command),
// cut for a table.
func runs(c api.Config) string {
	a := api.Arrow{Config: c}
	what := strings.Join(a.Command(), " ")
	if c.Image != "" {
		what = strings.TrimSpace(c.Image + " " + what)
	}
	return ellipsis(what, 40)
}
