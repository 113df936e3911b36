package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage bridge networks, on which arrows reach each other by name",
		Long: `Bridge networks (arrowd, as root): a Linux bridge per network, a tap per
arrow, addresses from the network's subnet, egress NAT, ports published
with nftables, and a DNS server on the bridge that answers the names of the
network's arrows. Run arrows on one with 'arrow run -d --network NAME'.

The default network of an arrow is 'user' (QEMU's user-mode networking,
rootless); '--network none' leaves only loopback.`,
	}
	var subnet string
	var createLabels func() (map[string]string, error) // set once create exists
	create := &cobra.Command{
		Use:   "create [--subnet CIDR] [--label KEY=value]... NAME",
		Short: "Create a bridge network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			labels, err := createLabels()
			if err != nil {
				return err
			}
			n, err := c.CreateNetwork(cmd.Context(), &api.NetworkCreateRequest{Name: args[0], Subnet: subnet, Labels: labels})
			if err != nil {
				return err
			}
			fmt.Println(n.Name)
			return nil
		},
	}
	create.Flags().StringVar(&subnet, "subnet", "", "the network's IPv4 subnet (default: a free /24 of 10.89.0.0/16)")
	createLabels = labelsFlag(create, "network")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List bridge networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Networks(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBNET\tGATEWAY\tBRIDGE\tARROWS")
			for _, n := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name, n.Subnet, n.Gateway, n.Bridge, len(n.Endpoints))
			}
			return tw.Flush()
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show bridge networks as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(g, cmd, args, (*client.Client).Network)
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove bridge networks no arrow is on",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, name string) error {
				return c.RemoveNetwork(ctx, name)
			})
		},
	}
	cmd.AddCommand(create, ls, inspect, rm)
	return cmd
}

func newPortCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "port ARROW",
		Short: "List an arrow's published ports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			a, err := c.Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, p := range a.Config.Ports {
				proto := p.Proto
				if proto == "" {
					proto = "tcp"
				}
				host := p.HostIP
				if host == "" {
					host = "0.0.0.0"
				}
				fmt.Printf("%d/%s -> %s\n", p.GuestPort, proto, strings.TrimSpace(fmt.Sprintf("%s:%d", host, p.HostPort)))
			}
			return nil
		},
	}
}
