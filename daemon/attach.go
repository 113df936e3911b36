package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/shim"
)

// Attaching to an arrow that is not running (created, exited, waiting to
// restart) joins its next run, and loses none of that run's output: docker
// run attaches to the container it created before it starts it, and
// expects everything the application writes.
//
// How: the attach waits in its arrow's pending list. A start takes the
// list under d.mu, where it records the run (so that an attach comes
// either before, and is taken, or after, and finds the run), and joins
// each to the run's shim between the shim's "ok" (its socket answers) and
// the daemon's "go" (only then does the shim start the VM): the shim
// subscribes an attach before it answers it, so each has the run's output
// from its first byte. Nothing holds d.mu while an attach waits.

// maxPendingAttaches bounds the attaches waiting for one arrow's next run.
const maxPendingAttaches = 32

// attachJoinTimeout bounds joining a waiting attach to a new run's shim,
// which answers at once: the run's start waits for the joins.
const attachJoinTimeout = 5 * time.Second

// AttachOptions say how an attach treats its input.
type AttachOptions struct {
	// StdinOnce ends the application's input when this attach's input
	// ends (docker's StdinOnce: `docker run -i` with input from a file).
	// Without it the end of an attach's input ends only that attach's,
	// and another attach may follow.
	StdinOnce bool
	// RunningOnly refuses (ErrConflict) an arrow that is not running
	// rather than wait for its next run (`arrow attach`).
	RunningOnly bool
}

// Attachment is one attach to an arrow: joined to its current run, or
// waiting for its next one (see [Daemon.OpenAttach]).
type Attachment struct {
	d    *Daemon
	a    *arrow
	opts AttachOptions

	ready chan struct{} // closed once res is set

	mu        sync.Mutex
	res       attachResult
	delivered bool
	taken     bool // Wait returned res: the caller owns its stream
	cancelled bool
}

type attachResult struct {
	conn net.Conn
	br   *bufio.Reader
	err  error
}

// Attach joins the arrow's stdio: the shim's frames out (api.StreamStdout,
// api.StreamStderr; only stdout with a TTY), raw input in (with
// Config.Stdin). An arrow that is not running is joined when it next
// starts, before its application can write anything; Attach waits for
// that until ctx ends. The stream ends (EOF) when the run ends.
func (d *Daemon) Attach(ctx context.Context, ref string) (net.Conn, *bufio.Reader, error) {
	return d.AttachWith(ctx, ref, AttachOptions{})
}

// AttachWith is [Daemon.Attach] with options.
func (d *Daemon) AttachWith(ctx context.Context, ref string, o AttachOptions) (net.Conn, *bufio.Reader, error) {
	at, err := d.OpenAttach(ctx, ref, o)
	if err != nil {
		return nil, nil, err
	}
	return at.Wait(ctx)
}

// OpenAttach attaches to the arrow ref: to its current run at once, or,
// when none runs, by registering the attach for its next run. Once it
// returns, no output of that run can be missed: a front end that must
// answer its client before the arrow starts (docker's attach, then start)
// calls OpenAttach, answers, then calls [Attachment.Wait] for the
// stream. The caller must call Wait or [Attachment.Cancel].
func (d *Daemon) OpenAttach(ctx context.Context, ref string, o AttachOptions) (*Attachment, error) {
	a, err := d.resolve(ref)
	if err != nil {
		return nil, err
	}
	at := &Attachment{d: d, a: a, opts: o, ready: make(chan struct{})}
	d.mu.Lock()
	name := a.rec.Name
	if a.removed {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: no such arrow: %s was removed", ErrNotFound, name)
	}
	rs := a.run
	if rs == nil && o.RunningOnly {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is not running", ErrConflict, name)
	}
	if rs == nil {
		if len(a.pending) >= maxPendingAttaches {
			d.mu.Unlock()
			return nil, fmt.Errorf("%w: %s: %d attaches wait for its start already", ErrConflict, name, maxPendingAttaches)
		}
		a.pending = append(a.pending, at)
		d.mu.Unlock()
		return at, nil
	}
	d.mu.Unlock()
	conn, br, err := rs.client.Attach(ctx, o.StdinOnce)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConflict, name, err)
	}
	at.deliver(attachResult{conn: conn, br: br})
	return at, nil
}

// Wait returns the attach's stream once it is joined to a run: at once
// for an arrow that ran when it was opened, at its next start otherwise.
// It ends with an error when ctx ends, the daemon stops, the arrow is
// removed or its next start fails; the attach is then given up.
func (at *Attachment) Wait(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	select {
	case <-at.ready:
	case <-ctx.Done():
		at.Cancel()
		return nil, nil, ctx.Err()
	case <-at.d.ctx.Done():
		at.Cancel()
		return nil, nil, fmt.Errorf("%w: arrowd is stopping", ErrConflict)
	}
	at.mu.Lock()
	defer at.mu.Unlock()
	if at.cancelled {
		return nil, nil, context.Canceled
	}
	at.taken = true
	return at.res.conn, at.res.br, at.res.err
}

// Cancel gives the attach up: it no longer waits, and a stream joined for
// it and not yet returned by Wait is closed. After Wait returned a stream,
// the caller owns that stream and Cancel does nothing.
func (at *Attachment) Cancel() {
	at.mu.Lock()
	if at.taken || at.cancelled {
		at.mu.Unlock()
		return
	}
	at.cancelled = true
	if at.delivered && at.res.conn != nil {
		at.res.conn.Close()
	}
	at.mu.Unlock()
	// Out of the list, unless a start took it already (then its delivery
	// finds it cancelled and closes the stream).
	d, a := at.d, at.a
	d.mu.Lock()
	for i, p := range a.pending {
		if p == at {
			a.pending = append(a.pending[:i], a.pending[i+1:]...)
			break
		}
	}
	d.mu.Unlock()
}

// deliver hands the attach its result, once; a cancelled attach's stream
// is closed instead.
func (at *Attachment) deliver(r attachResult) {
	at.mu.Lock()
	defer at.mu.Unlock()
	if at.delivered {
		if r.conn != nil {
			r.conn.Close()
		}
		return
	}
	if at.cancelled && r.conn != nil {
		r.conn.Close()
		r.conn, r.br = nil, nil
	}
	at.res, at.delivered = r, true
	close(at.ready)
}

// takePendingLocked empties a's pending attaches; the caller holds d.mu.
func (a *arrow) takePendingLocked() []*Attachment {
	p := a.pending
	a.pending = nil
	return p
}

// joinPending joins the attaches that waited for the run rs to its shim,
// in parallel, and returns once each is joined or failed. The caller has
// not yet let the shim start the VM (shim.Process.Commit).
func (d *Daemon) joinPending(rs *runState, pending []*Attachment) {
	if len(pending) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, at := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(d.ctx, attachJoinTimeout)
			defer cancel()
			conn, br, err := rs.client.Attach(ctx, at.opts.StdinOnce)
			if err != nil {
				err = fmt.Errorf("%w: join the new run: %w", ErrConflict, err)
			}
			at.deliver(attachResult{conn: conn, br: br, err: err})
		}()
	}
	wg.Wait()
}

// failPending ends a's pending attaches with err (their run will not come:
// the start failed, or the arrow is gone).
func (d *Daemon) failPending(a *arrow, err error) {
	d.mu.Lock()
	pending := a.takePendingLocked()
	d.mu.Unlock()
	for _, at := range pending {
		at.deliver(attachResult{err: err})
	}
}

// Resize sets the size of the arrow's terminal, rows by cols (an arrow
// created with Config.TTY). The application sees it as SIGWINCH. A size
// set while no run is there (docker create's ConsoleSize: created, then
// resized, then started), or while the arrow starts and before its shim
// starts the VM, is the terminal's initial size (else shim.DefaultRows by
// shim.DefaultCols); one set later in the start reaches the application
// as soon as it runs. (A size kept for the next run is the daemon's, in
// memory: a new daemon starts the arrow with the default.)
func (d *Daemon) Resize(ctx context.Context, ref string, rows, cols uint16) error {
	if rows == 0 || cols == 0 {
		return fmt.Errorf("%w: terminal size %dx%d: want at least one row and one column", ErrInvalid, rows, cols)
	}
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	d.mu.Lock()
	rs, name, tty := a.run, a.rec.Name, a.rec.Config.TTY
	if tty {
		// The latest size, for the next start.
		a.size = guest.WindowSize{Rows: rows, Cols: cols}
	}
	d.mu.Unlock()
	if !tty {
		return fmt.Errorf("%w: %s has no terminal: it was created without tty", ErrConflict, name)
	}
	if rs == nil {
		return nil // for its next start
	}
	err = rs.client.Resize(ctx, rows, cols)
	var refused *shim.StatusError
	switch {
	case errors.As(err, &refused) && refused.Code == http.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrInvalid, refused.Message)
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrConflict, name, err)
	}
	return nil
}
