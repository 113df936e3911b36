package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/spec"
	"github.com/arrowsys/arrow/template"
)

func newTemplateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "List, build and remove pre-booted VM templates",
		Long: `arrow run starts an application in a copy-on-write clone of a VM that
booted once and was paused (a template) rather than booting a VM, when it
can: with Arrow's own kernel, no volumes, no --kernel-args, on the
user-mode network or none. There is one template per machine (memory,
vCPUs, network card, accelerator, kernel, arrow-init and QEMU binary); the
first run with a machine builds its template (a boot and a snapshot: 1 to
2 s under TCG), later runs clone it. A template that is stale is not used:
its key no longer matches. 'arrow run --cold' boots without one.`,
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List templates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := template.List(g.dataRoot())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tMEMORY\tCPUS\tNETWORK\tBOOT\tCREATED\tSTATUS")
			for _, t := range ts {
				status := "ok"
				if _, err := template.Lookup(g.dataRoot(), t.Key); err != nil {
					status = "unusable"
				}
				network := layoutNetwork(t.Inputs.Layout)
				fmt.Fprintf(w, "%s\t%dM\t%d\t%s\t%v\t%s\t%s\n", t.Key, t.Inputs.MemoryMiB, t.Inputs.CPUs, network,
					t.BootTime.Round(time.Millisecond), t.Created.Local().Format(time.DateTime), status)
			}
			return w.Flush()
		},
	}
	var (
		memory  string
		cpus    int
		network string
		count   int
	)
	warm := &cobra.Command{
		Use:   "warm",
		Short: "Build the template for a machine now, unless it exists, so that no run waits for it",
		Long: `Build the template for a machine now, unless it exists, so that no run
waits for it.

With --count N, arrowd (started if none answers) also keeps N spare VMs of
that machine: clones of the template, started, warmed up and paused, which
'arrow run -d' and API-started arrows take instead of starting a clone.
arrowd keeps --pool-size spares (default 1) for every machine arrows were
started with anyway; --count 0 drops a machine's spares.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mib, err := spec.ParseMemory(memory)
			if err != nil {
				return fmt.Errorf("--memory: %w", err)
			}
			if cmd.Flags().Changed("count") {
				return setPool(cmd, g, &api.PoolRequest{MemoryMiB: mib, CPUs: cpus, Network: network, Count: count})
			}
			t0 := time.Now()
			t, err := run.WarmTemplate(cmd.Context(), run.Options{
				Root:   g.dataRoot(),
				Config: api.Config{MemoryMiB: mib, CPUs: cpus, Network: network, Accel: "auto", Dir: "/"},
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "arrow: template %s ready in %v\n", t.Key, time.Since(t0).Round(time.Millisecond))
			fmt.Println(t.Key)
			return nil
		},
	}
	warm.Flags().StringVarP(&memory, "memory", "m", strconv.Itoa(run.DefaultMemoryMiB)+"M", "guest memory (e.g. 256M, 1G)")
	warm.Flags().IntVar(&cpus, "cpus", run.DefaultCPUs, "number of vCPUs")
	warm.Flags().StringVar(&network, "network", run.NetworkUser, "network of the runs: user or none")
	warm.Flags().IntVar(&count, "count", 0, "keep this many spare VMs of the machine in arrowd's pool")
	var all bool
	rm := &cobra.Command{
		Use:   "rm [KEY...]",
		Short: "Remove templates (running clones keep their memory)",
		RunE: func(cmd *cobra.Command, keys []string) error {
			if all == (len(keys) > 0) {
				return errors.New("give template keys or --all")
			}
			if all {
				ts, err := template.List(g.dataRoot())
				if err != nil {
					return err
				}
				for _, t := range ts {
					keys = append(keys, t.Key)
				}
			}
			var failed error
			for _, k := range keys {
				if err := template.Remove(g.dataRoot(), k); err != nil {
					fmt.Fprintln(os.Stderr, "arrow:", err)
					failed = errSilent
					continue
				}
				fmt.Println(k)
			}
			return failed
		},
	}
	rm.Flags().BoolVar(&all, "all", false, "remove every template")
	pool := &cobra.Command{
		Use:   "pool",
		Short: "Show arrowd's pool of spare VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			entries, err := c.Pool(cmd.Context())
			if err != nil {
				return err
			}
			printPool(entries)
			return nil
		},
	}
	cmd.AddCommand(ls, warm, rm, pool)
	return cmd
}

// setPool asks arrowd to keep req.Count spares of req's machine, and
// waits (a while) until it does.
func setPool(cmd *cobra.Command, g *globals, req *api.PoolRequest) error {
	ctx := cmd.Context()
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	entries, err := c.SetPool(ctx, req)
	if err != nil {
		return err
	}
	// The template is built and the spares warmed in the background:
	// wait for them, so that the next run finds them.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		done := true
		for _, e := range entries {
			if e.Starting > 0 {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(200 * time.Millisecond)
		if entries, err = c.Pool(ctx); err != nil {
			return err
		}
	}
	printPool(entries)
	return nil
}

func printPool(entries []api.PoolEntry) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMORY\tCPUS\tNETWORK\tWANT\tREADY\tSTARTING")
	for _, e := range entries {
		network := e.Network
		if network == "" {
			network = "user"
		}
		fmt.Fprintf(w, "%dM\t%d\t%s\t%d\t%d\t%d\n", e.MemoryMiB, e.CPUs, network, e.Want, e.Ready, e.Starting)
	}
	_ = w.Flush()
}

// layoutNetwork says what network the clones of a template with layout
// are on: user, bridge (their card is plugged into a tap) or none.
func layoutNetwork(layout string) string {
	switch {
	case !strings.Contains(layout, "virtio-net"):
		return "none"
	case strings.Contains(layout, "-netdev socket,"):
		return "bridge"
	}
	return "user"
}
