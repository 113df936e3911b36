package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/run"
)

// The commands that manage detached arrows through arrowd.

// eachArrow runs fn for each named arrow, reporting failures per arrow as
// docker does, and fails if any failed.
func eachArrow(refs []string, fn func(ref string) error) error {
	var failed int
	for _, ref := range refs {
		if err := fn(ref); err != nil {
			fmt.Fprintf(os.Stderr, "arrow: %s: %v\n", ref, err)
			failed++
			continue
		}
	}
	if failed > 0 {
		return errSilent
	}
	return nil
}

// eachConnected connects to arrowd and runs fn for each named arrow (or
// network), reporting failures as eachArrow does.
func eachConnected(g *globals, cmd *cobra.Command, refs []string, fn func(ctx context.Context, c *client.Client, ref string) error) error {
	c, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	return eachArrow(refs, func(ref string) error { return fn(cmd.Context(), c, ref) })
}

// eachRef is eachConnected printing the name of each that succeeded, as
// docker's stop, kill and rm do.
func eachRef(g *globals, cmd *cobra.Command, refs []string, fn func(ctx context.Context, c *client.Client, ref string) error) error {
	return eachConnected(g, cmd, refs, func(ctx context.Context, c *client.Client, ref string) error {
		if err := fn(ctx, c, ref); err != nil {
			return err
		}
		fmt.Println(ref)
		return nil
	})
}

// inspectEach prints, as one JSON array, what get returns for each name
// it could find, and fails if one was not.
func inspectEach[T any](g *globals, cmd *cobra.Command, refs []string, get func(c *client.Client, ctx context.Context, ref string) (T, error)) error {
	var out []T
	err := eachConnected(g, cmd, refs, func(ctx context.Context, c *client.Client, ref string) error {
		v, err := get(c, ctx, ref)
		if err == nil {
			out = append(out, v)
		}
		return err
	})
	if perr := printJSON(out); perr != nil {
		return perr
	}
	return err
}

// started checks that an arrow (re)started: its run may have ended at
// once, saying why.
func started(a api.Arrow, err error) error {
	if err != nil {
		return err
	}
	if a.State == api.Exited && a.Error != "" {
		return fmt.Errorf("did not start: %s", a.Error)
	}
	return nil
}

// errSilent fails a command whose errors were already printed.
var errSilent = errors.New("")

func newPsCmd(g *globals) *cobra.Command {
	var (
		all    bool
		quiet  bool
		format string
	)
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List arrows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.List(cmd.Context(), all)
			if err != nil {
				return err
			}
			switch {
			case format == "json":
				return printJSON(list)
			case format != "" && format != "table":
				return fmt.Errorf("--format %q: want table or json", format)
			case quiet:
				for _, a := range list {
					fmt.Println(shortID(a.ID))
				}
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tIMAGE/PROGRAM\tCOMMAND\tSTATUS\tACCEL")
			for _, a := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortID(a.ID), a.Name, ellipsis(a.Source(), 30),
					ellipsis(fmt.Sprintf("%q", strings.Join(a.Command(), " ")), 32), status(a, now), a.Accel)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all arrows (default: running ones)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only IDs")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func ellipsis(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// status is an arrow's STATUS column, worded as docker's.
func status(a api.Arrow, now time.Time) string {
	switch a.State {
	case api.Running:
		s := "Up " + humanDuration(now.Sub(a.StartedAt))
		if a.Paused {
			return s + " (Paused)" // docker's word, health aside
		}
		if a.Health != "" {
			s += " (" + a.Health + ")"
		}
		return s
	case api.Starting:
		return "Starting"
	case api.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", a.ExitCode, humanDuration(now.Sub(a.FinishedAt)))
	case api.Exited:
		s := fmt.Sprintf("Exited (%d) %s ago", a.ExitCode, humanDuration(now.Sub(a.FinishedAt)))
		if a.OOMKilled {
			s += " (OOM)"
		}
		return s
	}
	return "Created"
}

// humanDuration words d as docker's ps does.
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Round(time.Hour).Hours()); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", h/24/365)
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newLogsCmd(g *globals) *cobra.Command {
	var (
		o          client.LogsOptions
		timestamps bool
		tail       string
	)
	cmd := &cobra.Command{
		Use:   "logs [flags] ARROW",
		Short: "Show an arrow's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Tail = -1
			if tail != "all" {
				if _, err := fmt.Sscanf(tail, "%d", &o.Tail); err != nil || o.Tail < 0 {
					return fmt.Errorf("--tail %q: want a number or all", tail)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			return c.Logs(ctx, args[0], o, func(e api.LogEntry) error {
				w := os.Stdout
				if e.Stream == "stderr" {
					w = os.Stderr
				}
				var b []byte
				if timestamps {
					b = append(b, e.Time.Format(time.RFC3339Nano)...)
					b = append(b, ' ')
				}
				b = append(b, e.Line...)
				if !e.Partial {
					b = append(b, '\n')
				}
				_, err := w.Write(b)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.Follow, "follow", "f", false, "follow the output until the arrow ends")
	f.StringVar(&o.Since, "since", "", "only lines since then: a duration (10m), RFC 3339 time or Unix seconds")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with its time")
	f.StringVarP(&tail, "tail", "n", "all", "only the last N lines")
	return cmd
}

// timeoutFlag adds -t/--time, the seconds before SIGKILL.
func timeoutFlag(cmd *cobra.Command) func() *time.Duration {
	sec := cmd.Flags().IntP("time", "t", 10, "seconds to wait for the application to exit before killing it")
	return func() *time.Duration {
		if !cmd.Flags().Changed("time") {
			return nil // the arrow's own --stop-timeout
		}
		d := time.Duration(*sec) * time.Second
		return &d
	}
}

func newStopCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop [flags] ARROW...",
		Short: "Stop arrows: SIGTERM, then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
	}
	timeout := timeoutFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
			return c.Stop(ctx, ref, timeout())
		})
	}
	return cmd
}

func newRestartCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restart [flags] ARROW...",
		Short: "Stop arrows and start them again",
		Args:  cobra.MinimumNArgs(1),
	}
	timeout := timeoutFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
			return started(c.Restart(ctx, ref, timeout()))
		})
	}
	return cmd
}

func newStartCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "start ARROW...",
		Short: "Start stopped arrows",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				return started(c.Start(ctx, ref))
			})
		},
	}
}

func newKillCmd(g *globals) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [flags] ARROW...",
		Short: "Send a signal to arrows' applications (default SIGKILL)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := api.ParseSignal(sig); err != nil {
				return err
			}
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				return c.Kill(ctx, ref, sig)
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send (name or number)")
	return cmd
}

func newRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [flags] ARROW...",
		Short: "Remove arrows, their logs and files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRef(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				return c.Remove(ctx, ref, force)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running arrow first")
	return cmd
}

func newWaitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait ARROW...",
		Short: "Wait for arrows to end and print their exit statuses",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachConnected(g, cmd, args, func(ctx context.Context, c *client.Client, ref string) error {
				w, err := c.Wait(ctx, ref)
				if err != nil {
					return err
				}
				fmt.Println(w.ExitCode)
				return nil
			})
		},
	}
}

func newInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ARROW...",
		Short: "Show everything arrowd knows of arrows, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(g, cmd, args, (*client.Client).Inspect)
		},
	}
}

func newStatsCmd(g *globals) *cobra.Command {
	var noStream bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the CPU and memory use of running arrows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			if noStream {
				s, err := c.Stats(ctx)
				if err != nil {
					return err
				}
				return printStats(os.Stdout, s, false)
			}
			return c.StatsStream(ctx, func(s []api.Stats) error { return printStats(os.Stdout, s, true) })
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	return cmd
}

func printStats(w io.Writer, stats []api.Stats, clear bool) error {
	if clear {
		fmt.Fprint(w, "\033[2J\033[H")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tPRIVATE\tSHARED\tPIDS")
	for _, s := range stats {
		limit := "-"
		if s.MemoryLimit > 0 {
			limit = mib(s.MemoryLimit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%s / %s\t%s\t%s\t%d\n", shortID(s.ID), s.Name, s.CPUPercent, mib(s.MemoryBytes), limit, mib(s.MemoryPrivate), mib(s.MemoryShared), s.Pids)
	}
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func newEventsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print arrows' events (create, start, die, stop, kill, restart, oom, destroy) as they happen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			return c.Events(ctx, func(e api.Event) error {
				if format == "json" {
					return enc.Encode(e)
				}
				line := fmt.Sprintf("%s arrow %s %s (name=%s", e.Time.Format(time.RFC3339Nano), e.Type, e.ID, e.Name)
				if e.ExitCode != nil {
					line += fmt.Sprintf(", exitCode=%d", *e.ExitCode)
				}
				if e.Detail != "" {
					line += ", " + e.Detail
				}
				_, err := fmt.Println(line + ")")
				return err
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "json for one JSON object per line")
	return cmd
}

func newAttachCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "attach ARROW",
		Short: "Attach to a running arrow's output (and input, if it was started with -i)",
		Long: `Attach to a running arrow: its output appears here and, if it was started
with -i, this terminal's input goes to it. Detach with ^C: the arrow goes on.
When the arrow ends, attach exits with its exit status.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			conn, br, err := c.Attach(ctx, args[0])
			if err != nil {
				return err
			}
			defer conn.Close()
			go func() { _, _ = io.Copy(conn, os.Stdin) }()
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			done := make(chan error, 1)
			go func() { done <- copyFrames(br, os.Stdout, os.Stderr) }()
			select {
			case <-sigs:
				return nil // detach; the arrow runs on
			case err := <-done:
				if err != nil {
					return err
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			w, err := c.Wait(wctx, args[0])
			if err != nil {
				return err
			}
			if w.Error != "" {
				fmt.Fprintln(os.Stderr, "arrow:", w.Error)
			}
			g.exit = w.ExitCode
			return nil
		},
	}
}

// detachedExit maps an arrow that ended before its application started,
// or before it was ready, to the exit status `arrow run` would have given.
// lastLines returns the end of the arrow's log, for an application that
// ended before it was ready: what it said on its way out is why.
func detachedExit(a api.Arrow, lastLines func() []string) error {
	if a.State == api.Running && a.Health == "unhealthy" && a.Config.ReadyPort == 0 {
		return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("%s runs, but its service %s did not report ready in time (see arrow logs %s)", a.Name, a.Config.Service, a.Name)}
	}
	if a.State == api.Running && a.Health == "unhealthy" {
		return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("%s runs, but accepted no connection on port %d in time (see arrow logs %s)", a.Name, a.Config.ReadyPort, a.Name)}
	}
	if a.State == api.Exited && a.Error != "" {
		return &run.Error{Code: a.ExitCode, Err: errors.New(a.Error)}
	}
	if a.Config.ReadyPort == 0 || a.State == api.Running || a.Health == "healthy" {
		return nil
	}
	// It ended (or is restarting) without ever being ready: its own status
	// says how, and a status of 0 is still no success.
	code := a.ExitCode
	if code == 0 {
		code = run.ExitArrowFailed
	}
	msg := fmt.Sprintf("%s exited with status %d before accepting connections on port %d (see arrow logs %s)", a.Name, a.ExitCode, a.Config.ReadyPort, a.Name)
	if lines := lastLines(); len(lines) > 0 {
		msg += "; its last lines:\n" + strings.Join(lines, "\n")
	}
	return &run.Error{Code: code, Err: errors.New(msg)}
}

// readyLogLines is how many of its last log lines an arrow that ended
// before it was ready is reported with.
const readyLogLines = 10

// logTail returns the last n lines of arrow ref's log, or none when they
// cannot be read (the error is about the arrow, not its log).
func logTail(ctx context.Context, c *client.Client, ref string, n int) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var lines []string
	_ = c.Logs(ctx, ref, client.LogsOptions{Tail: n}, func(e api.LogEntry) error {
		lines = append(lines, e.Line)
		return nil
	})
	return lines
}
