package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/function"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/spec"
)

func newFunctionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "function",
		Short: "Functions: handlers invoked per request, each request in a clone of the ready handler",
		Long: `A function is a handler Arrow starts once, waits for until it is ready,
and saves as an application snapshot: each invocation runs in a clone of
it, initialized already. A handler either reads the request body on its
standard input and writes the response to its standard output (exiting
0), or, with --http-port, serves HTTP on that guest port.

Invoke with 'arrow function invoke NAME < body', POST /v1/functions/NAME/invoke
on arrowd's API, or POST /function/NAME on 'arrow daemon --functions-addr'.`,
	}
	cmd.AddCommand(newFunctionCreateCmd(g), newFunctionLsCmd(g), newFunctionInspectCmd(g), newFunctionRmCmd(g),
		newFunctionLogsCmd(g), newFunctionInvokeCmd(g))
	return cmd
}

func newFunctionCreateCmd(g *globals) *cobra.Command {
	var (
		fc                   api.FunctionConfig
		o                    run.Options
		memory, maxBody      string
		timeout, idleTimeout time.Duration
		env                  []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME [flags] IMAGE|PROGRAM [ARG...]",
		Short: "Create a function: start its handler, and save it once ready",
		Long: `Create the function NAME: start its handler (an image of the store or a
host program, as 'arrow run' takes them), wait until it is ready (it blocks
reading its standard input, or with --http-port accepts connections on that
port), and save it as the application snapshot function.NAME.

Each invocation runs in a fresh clone of it, isolated from every other;
with --keep-warm, in instances kept --idle-timeout after their last
invocation (an HTTP handler's serve --concurrency at once). At most
--max-instances run; an invocation over that is refused (429), one past
--timeout ends with 504, a body over --max-body with 413.`,
		// Flags go before or after NAME; everything after the program
		// is its own (so cobra does not parse them).
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return &run.Error{Code: run.ExitArrowFailed, Err: err} }
			fl := cmd.Flags()
			var name string
			for i := 0; i < 2; i++ {
				if err := fl.Parse(args); err != nil {
					return fail(err)
				}
				if help, _ := fl.GetBool("help"); help {
					return cmd.Help()
				}
				args = fl.Args()
				if i == 0 {
					if len(args) == 0 {
						return fail(errors.New("function create: want NAME and the handler's IMAGE or PROGRAM"))
					}
					name, args = args[0], args[1:]
				}
			}
			if len(args) == 0 {
				return fail(errors.New("function create: want the handler's IMAGE or PROGRAM after NAME"))
			}
			args = append([]string{name}, args...)
			mib, err := spec.ParseMemory(memory)
			if err != nil {
				return fail(fmt.Errorf("--memory: %w", err))
			}
			o.MemoryMiB, o.Env = mib, env
			if maxBody != "" {
				if fc.MaxBodyBytes, err = parseSize(maxBody); err != nil {
					return fail(fmt.Errorf("--max-body: %w", err))
				}
			}
			fc.Timeout, fc.IdleTimeout = timeout.Seconds(), idleTimeout.Seconds()
			o.Root = g.dataRoot()
			o.Program, o.Args = args[1], args[2:]
			if _, ok := run.LookupImage(cmd.Context(), o.Root, args[1]); ok || run.IsImageSource(args[1]) {
				o.Image, o.Program = args[1], ""
			}
			creq, err := detachedRequest(&o, "")
			if err != nil {
				return err
			}
			fc.Config = creq.Config
			req := &api.FunctionCreateRequest{Name: args[0], FunctionConfig: fc}
			if err := req.Validate(); err != nil {
				return fail(err)
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			f, err := c.CreateFunction(cmd.Context(), req)
			if err != nil {
				return fail(err)
			}
			fmt.Println(f.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolP("help", "h", false, "help for create")
	f.IntVar(&fc.HTTPPort, "http-port", 0, "the handler serves HTTP on this guest port (default: it reads the body on stdin, writes the response to stdout)")
	f.DurationVar(&timeout, "timeout", time.Duration(api.DefaultFunctionTimeout)*time.Second, "an invocation's limit (504 past it)")
	f.StringVar(&maxBody, "max-body", "6M", "the request's and the response's size limit (413 past it)")
	f.BoolVar(&fc.KeepWarm, "keep-warm", false, "run invocations in instances kept for --idle-timeout, rather than a fresh clone each")
	f.IntVar(&fc.MaxInstances, "max-instances", api.DefaultFunctionInstances, "instances at once (429 past them)")
	f.IntVar(&fc.Concurrency, "concurrency", 1, "invocations a kept-warm HTTP instance serves at once")
	f.DurationVar(&idleTimeout, "idle-timeout", time.Duration(api.DefaultFunctionIdleTimeout)*time.Second, "a kept-warm instance ends after this long without an invocation")
	f.StringArrayVarP(&env, "env", "e", nil, "set an environment variable (KEY=value)")
	f.StringVarP(&o.Dir, "workdir", "w", "", "working directory in the guest")
	f.StringVarP(&o.User, "user", "u", "", "run as NAME|UID[:GROUP|GID]")
	f.StringArrayVar(&o.Includes, "include", nil, "also put this host file or directory into the guest (repeatable)")
	f.StringVarP(&memory, "memory", "m", strconv.Itoa(run.DefaultMemoryMiB)+"M", "each instance's memory")
	f.IntVar(&o.CPUs, "cpus", run.DefaultCPUs, "each instance's vCPUs")
	f.StringVar(&o.Network, "network", "", "user (default) or none")
	return cmd
}

func newFunctionLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the functions",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Functions(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(os.Stdout).Encode(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tHANDLER\tRUNS\tINSTANCES\tKEEP WARM\tCREATED")
			for _, f := range list {
				handler := f.Handler
				if f.HTTPPort > 0 {
					handler += ":" + strconv.Itoa(f.HTTPPort)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s ago\n", f.Name, handler, runs(f.Config), f.Instances, f.KeepWarm, time.Since(f.Created).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "json: one JSON array")
	return cmd
}

func newFunctionInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Describe a function (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			f, err := c.Function(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(f)
		},
	}
}

func newFunctionRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove functions, their instances and their snapshots",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			var failed error
			for _, name := range args {
				if err := c.RemoveFunction(cmd.Context(), name); err != nil {
					fmt.Fprintln(os.Stderr, "arrow:", err)
					failed = errSilent
					continue
				}
				fmt.Println(name)
			}
			return failed
		},
	}
}

func newFunctionLogsCmd(g *globals) *cobra.Command {
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [--tail N] NAME",
		Short: "Show what a function's instances wrote (kept when they end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			return c.FunctionLogs(cmd.Context(), args[0], tail, func(e api.LogEntry) error {
				w := os.Stdout
				if e.Stream == "stderr" {
					w = os.Stderr
				}
				nl := "\n"
				if e.Partial {
					nl = ""
				}
				_, err := fmt.Fprint(w, e.Line+nl)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&tail, "tail", "all", "only the last N lines")
	return cmd
}

func newFunctionInvokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "invoke NAME [< BODY]",
		Short: "Invoke a function with standard input as the request's body, and print its response",
		Long: `Invoke the function NAME with standard input as the request's body (none
when it is a terminal) and print the response's body.

Exit status: 0 when the function answered with success (2xx); a handler of
standard input's own non-zero status; 1 for an HTTP handler's error status;
125 when Arrow refused or failed the invocation (no such function, 413,
429, 504, 502), with the reason on standard error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body io.Reader = os.Stdin
			if term.IsTerminal(int(os.Stdin.Fd())) {
				body = strings.NewReader("")
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			resp, err := c.Invoke(cmd.Context(), args[0], body)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			code, err := invokeResult(resp, os.Stdout)
			if err != nil {
				return err
			}
			g.exit = code
			return nil
		},
	}
}

// invokeResult writes an invocation's response body to out and says the
// exit status it makes.
func invokeResult(resp *http.Response, out io.Writer) (int, error) {
	if ec := resp.Header.Get(function.HeaderExitCode); ec != "" && ec != "0" {
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		fmt.Fprintln(os.Stderr, "arrow:", e.Message)
		n, err := strconv.Atoi(ec)
		if err != nil || n < 1 || n > 255 {
			n = 1
		}
		return n, nil
	}
	if resp.StatusCode < 300 {
		_, err := io.Copy(out, resp.Body)
		return 0, err
	}
	if resp.Header.Get(function.HeaderStart) != "" && resp.Header.Get(function.HeaderExitCode) == "" && resp.StatusCode != http.StatusGatewayTimeout && resp.StatusCode != http.StatusBadGateway {
		// An HTTP handler's own error answer.
		_, _ = io.Copy(out, resp.Body)
		fmt.Fprintf(os.Stderr, "arrow: the function answered %s\n", resp.Status)
		return 1, nil
	}
	var e api.Error
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
	if e.Message == "" {
		e.Message = resp.Status
	}
	return 0, &run.Error{Code: run.ExitArrowFailed, Err: errors.New(e.Message)}
}
