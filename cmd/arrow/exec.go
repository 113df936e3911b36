package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/run"
)

func newExecCmd(g *globals) *cobra.Command {
	var (
		interactive, tty bool
		env              []string
		user, dir        string
	)
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] ARROW CMD [ARG...]",
		Short: "Run a further command in a running arrow",
		Long: `Run a further command in a running arrow, next to its application, as
docker exec does: in the same root file system, as the application's user
unless -u says otherwise, with the application's environment plus -e.
Its stdout and stderr stay apart (with -t there is one terminal); exec
exits with the command's exit status: 126 when it cannot be executed, 127
when it is not found, 125 when Arrow failed (an arrow that is not running,
say). Options go before ARROW: what follows CMD is the command's.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := api.ExecConfig{Cmd: args[1:], User: user, WorkingDir: dir, TTY: tty, Stdin: interactive}
			for _, e := range env {
				if !strings.Contains(e, "=") {
					// -e KEY passes this shell's value, as in docker.
					v, ok := os.LookupEnv(e)
					if !ok {
						continue
					}
					e += "=" + v
				}
				cfg.Env = append(cfg.Env, e)
			}
			if err := cfg.Validate(); err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			var resize <-chan guest.WindowSize
			if tty {
				var o run.Options
				o.Stdin = interactive
				restore, ch, err := setupTerminal(&o)
				if err != nil {
					return err
				}
				defer restore()
				cfg.Rows, cfg.Cols = o.Size.Rows, o.Size.Cols
				resize = ch
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			conn, br, err := c.Exec(ctx, args[0], &cfg)
			if err != nil {
				var ce *client.Error
				if errors.As(err, &ce) {
					return &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("exec: %s", ce.Message)}
				}
				return err
			}
			defer conn.Close()
			code, err := relayExecClient(conn, br, interactive, tty, resize)
			if err != nil {
				return &run.Error{Code: run.ExitArrowFailed, Err: err}
			}
			g.exit = code
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after CMD are the command's
	f.BoolVarP(&interactive, "interactive", "i", false, "forward standard input")
	f.BoolVarP(&tty, "tty", "t", false, "run the command on a terminal in the guest")
	f.StringArrayVarP(&env, "env", "e", nil, "set an environment variable (KEY=value, or KEY for this shell's value)")
	f.StringVarP(&user, "user", "u", "", "run as NAME or UID[:GID] (default: the application's user)")
	f.StringVarP(&dir, "workdir", "w", "", "working directory in the guest (default: the application's)")
	return cmd
}

// relayExecClient relays this process's stdin, signals and terminal size
// to an exec stream and its output here, and returns the exit code the
// stream ends with.
func relayExecClient(conn net.Conn, br io.Reader, interactive, tty bool, resize <-chan guest.WindowSize) (int, error) {
	var wmu sync.Mutex
	send := func(f func(io.Writer) error) error {
		wmu.Lock()
		defer wmu.Unlock()
		return f(conn)
	}
	done := make(chan struct{})
	defer close(done)
	if interactive {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := os.Stdin.Read(buf)
				if n > 0 {
					if send(func(w io.Writer) error { return api.WriteFrame(w, api.ExecStdin, buf[:n]) }) != nil {
						return
					}
				}
				if err != nil {
					_ = send(api.WriteExecStdinClose)
					return
				}
			}
		}()
	}
	go func() {
		for {
			select {
			case ws := <-resize:
				_ = send(func(w io.Writer) error {
					return api.WriteExecControl(w, api.ExecResize, api.ExecSize{Rows: ws.Rows, Cols: ws.Cols})
				})
			case <-done:
				return
			}
		}
	}()
	if !tty {
		// On a terminal these are bytes the guest's terminal turns into
		// signals; otherwise they are forwarded, as arrow run does.
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			for {
				select {
				case sig := <-sigs:
					n := int(sig.(syscall.Signal))
					_ = send(func(w io.Writer) error {
						return api.WriteExecControl(w, api.ExecSignal, api.ExecSignalRequest{Signal: n})
					})
				case <-done:
					return
				}
			}
		}()
	}
	for {
		st, p, err := api.ReadExecFrame(br, api.StreamStdout, api.StreamStderr, api.StreamExit)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the exec stream ended without the command's exit status")
			}
			return 0, err
		}
		switch st {
		case api.StreamStdout:
			_, _ = os.Stdout.Write(p)
		case api.StreamStderr:
			_, _ = os.Stderr.Write(p)
		case api.StreamExit:
			var x api.ExecExit
			if err := api.DecodeExecControl(p, &x); err != nil {
				return 0, err
			}
			if x.Error != "" {
				fmt.Fprintln(os.Stderr, "arrow:", x.Error)
			}
			if x.ExitCode < 0 || x.ExitCode > 255 {
				return 0, fmt.Errorf("exec: exit code %d out of range", x.ExitCode)
			}
			return x.ExitCode, nil
		}
	}
}
