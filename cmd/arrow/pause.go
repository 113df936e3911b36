package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api/client"
)

// arrow pause, unpause and rename: docker's commands of those names.

func newPauseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pause ARROW...",
		Short: "Pause arrows: their VMs stop (QMP stop), memory kept, until unpaused",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				return c.Pause(ctx, ref)
			})
		},
	}
}

func newUnpauseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unpause ARROW...",
		Short: "Continue paused arrows",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				return c.Unpause(ctx, ref)
			})
		},
	}
}

func newRenameCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rename ARROW NEW_NAME",
		Short: "Rename an arrow (on a bridge network, its DNS name follows)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			return c.Rename(cmd.Context(), args[0], args[1])
		},
	}
}
