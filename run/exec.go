package run

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/arrowsys/arrow/guest"
)

// ExecOptions describe a further process to run in a running arrow, next
// to its application (`arrow exec`, docker exec).
type ExecOptions struct {
	// Args is the program and its arguments, looked up in the guest as
	// the application's are.
	Args []string
	// Env are KEY=value entries added to (and overriding) the
	// application's environment.
	Env []string
	// User is who it runs as, as --user takes it: a name from the guest
	// root's /etc/passwd, or uid[:gid]; empty for the application's
	// user, as docker exec runs as the container's.
	User string
	// Dir is the working directory, which must exist in the guest;
	// empty for the application's.
	Dir string
	// Stdin forwards input; TTY runs it on a terminal of its own, of
	// initial Size.
	Stdin bool
	TTY   bool
	Size  guest.WindowSize
}

// ErrNotRunning is returned by Exec when the arrow's application is not
// running: not started yet, or ended.
var ErrNotRunning = errors.New("the arrow's application is not running")

// Exec starts a further process in the run's guest, in the application's
// root file system, and returns its handle, whose events say what it
// writes and how it ends. The caller reads them to the end, or closes the
// handle: its output is not buffered without bound. The error is an
// [*Error] for options the guest cannot run, wrapping ErrNotRunning when
// the application is not running.
func (h *Handle) Exec(ctx context.Context, eo ExecOptions) (*guest.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fail(ExitArrowFailed, err)
	}
	if !h.running.Load() {
		return nil, fail(ExitArrowFailed, ErrNotRunning)
	}
	spec, err := h.execSpec(eo)
	if err != nil {
		return nil, err
	}
	p, err := h.s.agent.Exec(spec)
	switch {
	case errors.Is(err, guest.ErrAppEnded), errors.Is(err, guest.ErrClosed):
		return nil, fail(ExitArrowFailed, ErrNotRunning)
	case err != nil:
		return nil, fail(ExitArrowFailed, fmt.Errorf("exec: %w", err))
	}
	return p, nil
}

// execSpec works out what arrow-init is handed for eo: the application's
// environment with eo's on top, the user resolved against the guest
// root's user database as --user is.
func (h *Handle) execSpec(eo ExecOptions) (*guest.ExecSpec, error) {
	app := h.p.spec
	if len(eo.Args) == 0 || eo.Args[0] == "" {
		return nil, failf(ExitArrowFailed, "exec: no command given")
	}
	user := eo.User
	cred := credentials{uid: app.UID, gid: app.GID, groups: app.Groups}
	if user != "" {
		var err error
		if cred, err = resolveUser(user, h.p.users); err != nil {
			return nil, failf(ExitArrowFailed, "exec: --user %q: %w", user, err)
		}
	}
	dir := eo.Dir
	if dir == "" {
		dir = app.Dir
	}
	if dir != "" && !path.IsAbs(dir) {
		return nil, failf(ExitArrowFailed, "exec: working directory %q is not absolute", dir)
	}
	env, err := execEnv(app.Env, eo.Env, eo.TTY, eo.User != "", cred)
	if err != nil {
		return nil, err
	}
	spec := &guest.ExecSpec{
		ID:   1, // the client gives the real one
		Args: eo.Args, Env: env, Dir: dir,
		UID: cred.uid, GID: cred.gid, Groups: cred.groups,
		Stdin: eo.Stdin, TTY: eo.TTY, Size: eo.Size,
	}
	if err := spec.Validate(); err != nil {
		return nil, fail(ExitArrowFailed, err)
	}
	return spec, nil
}

// execEnv is an exec's environment: the application's, with TERM for a
// terminal, extra on top, and HOME the exec's user's when another user
// than the application's was asked for and extra does not set it.
func execEnv(appEnv, extra []string, tty, otherUser bool, cred credentials) ([]string, error) {
	env := slices.Clone(appEnv)
	if tty {
		env = append(env, "TERM=xterm")
	}
	for _, e := range extra {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, failf(ExitArrowFailed, "exec: -e %q: want KEY=value", e)
		}
		env = append(env, e)
	}
	if otherUser && !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, "HOME=") }) {
		env = append(env, "HOME="+cred.defaultHome())
	}
	return mergeEnv(env), nil
}
