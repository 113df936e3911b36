package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/run"
)

// Foreground runs through arrowd: when an arrowd of this data root answers
// (one is never started for it), a foreground `arrow run` that could take
// a spare has arrowd run it, as `docker run --rm` has dockerd: the arrow
// is created auto-removed and not started, attached, waited for, then
// started; its output is relayed here, this process's signals and
// terminal size go to it, and its exit status is this process's. Whatever
// arrowd cannot run for this client (a host path it may not use, say)
// runs here, in-process, as without arrowd.

// envNoDaemon, set to a true value, keeps foreground runs in-process (as
// --no-daemon does).
const envNoDaemon = "ARROW_NO_DAEMON"

// fgPingTimeout bounds asking whether an arrowd answers.
const fgPingTimeout = 2 * time.Second

// daemonForRun returns a client of the arrowd that should run o in the
// foreground, or nil when o runs here: --no-daemon (or $ARROW_NO_DAEMON),
// a run that would not take a spare (run.MayUseSpare: --cold, volumes,
// another kernel, ...), one whose local features arrowd has not
// (--console, --no-jail), no arrowd answering, or an arrowd of another
// data root (its images and caches are not this run's).
func daemonForRun(ctx context.Context, g *globals, o *run.Options, noDaemon bool) *client.Client {
	if v, _ := strconv.ParseBool(os.Getenv(envNoDaemon)); noDaemon || v {
		return nil
	}
	if o.Console || o.NoJail || !run.MayUseSpare(o) {
		return nil
	}
	sock := g.socketPath()
	// As connect: a socket in a directory someone else controls is not
	// asked anything.
	if err := daemon.CheckRuntimeDir(filepath.Dir(sock)); err != nil {
		return nil
	}
	if _, err := os.Stat(sock); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c := client.New(sock)
	pctx, cancel := context.WithTimeout(ctx, fgPingTimeout)
	defer cancel()
	info, err := c.Info(pctx)
	if err != nil || !sameDir(info.Root, g.dataRoot()) {
		return nil
	}
	return c
}

// sameDir reports whether paths a and b name one directory.
func sameDir(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// fgRun is one foreground run through arrowd.
type fgRun struct {
	c   *client.Client
	o   *run.Options
	log io.Writer // arrow's own messages (stderr)
	id  string
}

// runThroughDaemon runs o through arrowd c in the foreground. It returns
// handled false, with nothing created, when arrowd would not create the
// arrow (a host path this client may not use, a request it refuses):
// the caller runs o here then, and reports what is wrong as a local run
// would. Otherwise the run's exit status, or an error (exit 125) when
// arrowd failed it or went away.
func runThroughDaemon(ctx context.Context, c *client.Client, o *run.Options, sigs <-chan os.Signal, resize <-chan guest.WindowSize) (code int, handled bool, err error) {
	req, err := detachedRequest(o, "")
	if err != nil {
		return 0, false, nil // the local run says what is wrong
	}
	req.NoStart, req.AutoRemove = true, true
	req.Config.Restart = api.RestartPolicy{Name: api.RestartNo}
	req.Config.ReadyPort = 0
	a, err := c.Create(ctx, req)
	if err != nil {
		if o.Debug {
			fmt.Fprintf(os.Stderr, "arrow: arrowd did not create the arrow (%v): running it here\n", err)
		}
		return 0, false, nil
	}
	r := &fgRun{c: c, o: o, log: os.Stderr, id: a.ID}
	code, err = r.run(ctx, sigs, resize)
	return code, true, err
}

// run attaches to the created arrow, starts it and relays until it ends.
func (r *fgRun) run(ctx context.Context, sigs <-chan os.Signal, resize <-chan guest.WindowSize) (int, error) {
	c, id, o := r.c, r.id, r.o
	failed := func(err error) (int, error) {
		// Nothing of it may stay: arrowd removes it once its run ends,
		// but it may not have started.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.Remove(rctx, id, true)
		return 0, &run.Error{Code: run.ExitArrowFailed, Err: err}
	}
	if o.TTY && o.Size.Rows > 0 && o.Size.Cols > 0 {
		// Before the start: the terminal's initial size.
		if err := c.Resize(ctx, id, o.Size.Rows, o.Size.Cols); err != nil {
			return failed(fmt.Errorf("arrowd: terminal size: %w", err))
		}
	}
	conn, br, err := c.AttachWith(ctx, id, client.AttachOptions{Next: true, StdinOnce: o.Stdin})
	if err != nil {
		return failed(fmt.Errorf("arrowd: attach: %w", err))
	}
	defer conn.Close()
	readExit, err := c.WaitNext(ctx, id, true)
	if err != nil {
		return failed(fmt.Errorf("arrowd: wait: %w", err))
	}
	out := make(chan error, 1)
	go func() { out <- copyFrames(br, os.Stdout, os.Stderr) }()
	if o.Stdin {
		go sendInput(conn, os.Stdin)
	}
	a, startErr := c.Start(ctx, id)
	if startErr == nil && o.Debug {
		how := "cold"
		switch {
		case a.Spare:
			how = "a spare"
		case a.Template != "":
			how = "a clone"
		}
		fmt.Fprintf(r.log, "arrow: arrowd started %s in %s (%.3f s to the application)\n", shortID(id), how, a.BootSeconds)
	}
	stopped, err := r.relay(ctx, sigs, resize, out)
	if err != nil {
		return failed(err)
	}
	w, err := readExit()
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			return failed(fmt.Errorf("arrowd: %w", err))
		}
		// The connection broke: arrowd went. The arrow's output may be
		// cut; arrowd stops and removes it when it comes back.
		return 0, &run.Error{Code: run.ExitArrowFailed, Err: fmt.Errorf("arrowd went away while arrow %s ran (it is stopped and removed when arrowd starts again; arrow run --no-daemon runs without it): %w", shortID(id), err)}
	}
	if n, ok := stopped.(syscall.Signal); ok {
		// Stopped on the user's signal: as a local run, 128+N of it.
		return 128 + int(n), nil
	}
	if w.Error != "" {
		fmt.Fprintln(r.log, "arrow:", w.Error)
	} else if startErr != nil && w.ExitCode == run.ExitArrowFailed {
		fmt.Fprintln(r.log, "arrow:", startErr)
	}
	return w.ExitCode, nil
}

// relay forwards signals and terminal sizes to the arrow until its output
// ends. A stop signal (TERM, INT, HUP) the application does not obey
// within the stop timeout, or a signal given twice, kills it; relay then
// returns that signal. It fails only when ctx ends.
func (r *fgRun) relay(ctx context.Context, sigs <-chan os.Signal, resize <-chan guest.WindowSize, out <-chan error) (os.Signal, error) {
	var (
		killTimer  <-chan time.Time
		lastSignal os.Signal
		stopped    os.Signal
	)
	stopTimeout := run.DefaultStopTimeout
	if r.o.StopTimeout > 0 {
		stopTimeout = time.Duration(r.o.StopTimeout * float64(time.Second))
	}
	kill := func() {
		stopped = lastSignal
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = r.c.Kill(kctx, r.id, "SIGKILL")
	}
	for {
		select {
		case <-out:
			return stopped, nil
		case sig := <-sigs:
			if lastSignal != nil && sig == lastSignal {
				fmt.Fprintf(r.log, "arrow: %v again: stopping the VM\n", sig)
				kill()
				continue
			}
			lastSignal = sig
			if n, ok := sig.(syscall.Signal); ok {
				// Refused when it is not (or no longer) running: the
				// run's end says the rest.
				_ = r.c.Kill(ctx, r.id, strconv.Itoa(int(n)))
			}
			if killTimer == nil && (sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGHUP) {
				killTimer = time.After(stopTimeout)
			}
		case ws := <-resize:
			_ = r.c.Resize(ctx, r.id, ws.Rows, ws.Cols)
		case <-killTimer:
			fmt.Fprintf(r.log, "arrow: the application did not exit within %v of %v; stopping the VM\n", stopTimeout, lastSignal)
			kill()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sendInput copies in to the arrow's input, then half-closes the stream:
// the application's input ends (the attach is StdinOnce).
func sendInput(conn net.Conn, in io.Reader) {
	_, _ = io.Copy(conn, in)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// copyFrames writes an attach stream's frames to stdout and stderr until
// the stream ends; nil at its clean end.
func copyFrames(br *bufio.Reader, stdout, stderr io.Writer) error {
	for {
		s, p, err := api.ReadFrame(br)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		w := stdout
		if s == api.StreamStderr {
			w = stderr
		}
		_, _ = w.Write(p)
	}
}
