package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/volume"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage named volumes",
		Long: `Named volumes are directories under Arrow's data root that outlive the
arrows that mount them: -v NAME:/path (a source without a slash) mounts
one, creating it on first use; a volume still empty when a run mounts it
is filled with the image's content at that path, owners and modes kept.`,
	}
	open := func() (*volume.Store, error) { return volume.Open(dataroot.Root(g.dataRoot()).Volumes()) }

	var createLabels func() (map[string]string, error) // set once create exists
	create := &cobra.Command{
		Use:   "create [--label KEY=value]... NAME",
		Short: "Create a named volume (nothing happens if it exists)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := createLabels()
			if err != nil {
				return err
			}
			s, err := open()
			if err != nil {
				return err
			}
			v, _, err := s.Create(cmd.Context(), args[0], labels)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.Name)
			return nil
		},
	}
	createLabels = labelsFlag(create, "volume")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List named volumes with their sizes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			vols, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			return writeVolumeList(cmd.OutOrStdout(), vols)
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show volumes as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			out := []volume.Volume{}
			for _, name := range args {
				v, err := s.Get(cmd.Context(), name)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove volumes and their content (refused while an arrow uses one)",
		Long: `Remove named volumes and their content. A volume that a detached arrow
names (running or not, as docker) or that a running VM mounts is
refused: remove the arrow first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := s.Remove(cmd.Context(), name, false); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove every volume no arrow uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			st, err := s.Prune(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range st.Removed {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			fmt.Fprintf(os.Stderr, "removed %d volumes, %s\n", len(st.Removed), humanBytes(st.Bytes))
			return nil
		},
	}
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

// writeVolumeList writes vols as a table.
func writeVolumeList(out io.Writer, vols []volume.Volume) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSIZE\tIN USE\tCREATED")
	for _, v := range vols {
		use := "no"
		switch {
		case len(v.Arrows) > 0:
			use = fmt.Sprintf("%d arrows", len(v.Arrows))
			if len(v.Arrows) == 1 {
				use = "1 arrow"
			}
		case v.InUse:
			use = "mounted"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", v.Name, humanBytes(v.Size), use, v.Created.Local().Format(time.DateTime))
	}
	return w.Flush()
}
