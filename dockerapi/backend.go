package dockerapi

import (
	"bufio"
	"context"
	"net"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/logs"
)

// Backend is what the Docker API needs of arrowd: the daemon's own
// operations, which *daemon.Daemon implements. Its errors wrap the
// daemon's sentinels (daemon.ErrNotFound, ErrInvalid, ErrConflict,
// ErrForbidden), which [writeErr] maps to Docker's statuses.
//
// The context of every call is the request's: it carries the client's
// credentials, so that the daemon applies the same authorization rules as
// on its own socket.
type Backend interface {
	Info() api.Info
	// MayChangeImages answers an error wrapping daemon.ErrForbidden
	// unless ctx's client may write the image store (load, pull, tag,
	// remove, prune).
	MayChangeImages(ctx context.Context) error

	// Create records an arrow and starts it; with req.NoStart it stays
	// Created until Start (docker create, then docker start).
	Create(ctx context.Context, req *api.CreateRequest) (api.Arrow, error)
	Start(ctx context.Context, ref string) (api.Arrow, error)
	Stop(ctx context.Context, ref string, timeout time.Duration) error
	Kill(ctx context.Context, ref string, sig syscall.Signal) error
	Restart(ctx context.Context, ref string, timeout time.Duration) (api.Arrow, error)
	Remove(ctx context.Context, ref string, force bool) error
	Rename(ctx context.Context, ref, name string) error
	Pause(ctx context.Context, ref string) error
	Unpause(ctx context.Context, ref string) error
	// Wait returns when the arrow's current or next run ends.
	Wait(ctx context.Context, ref string) (api.WaitResponse, error)
	Get(ref string) (api.Arrow, error)
	List(all bool) []api.Arrow
	// Stats samples the running arrows over interval.
	Stats(interval time.Duration) []api.Stats

	// Logs passes the arrow's log entries to f as [logs.Read] does; with
	// Follow until the arrow ends (and is not restarting) or ctx ends.
	Logs(ctx context.Context, ref string, opts logs.ReadOptions, f func(logs.Entry) error) error
	// AttachNext attaches to the arrow's stdio in two steps, as docker
	// run needs them: once it returns, the attach is registered (to the
	// current run, or to the next one of an arrow that is not running),
	// so that the client may be answered and start the arrow without
	// missing any output; wait then returns the stream (frames of
	// package api from the shim: api.StreamStdout, api.StreamStderr,
	// one stream with a TTY; raw input to it), at the next start for an
	// arrow that was not running. cancel gives up an attach whose
	// stream wait has not returned. With stdinOnce the end of the
	// stream's input (a half-close) ends the application's (docker's
	// StdinOnce). Function types rather than an interface, so that the
	// daemon implements it without importing this package.
	AttachNext(ctx context.Context, ref string, stdinOnce bool) (wait func(context.Context) (net.Conn, *bufio.Reader, error), cancel func(), err error)
	// Resize sets the size of the arrow's terminal (Config.TTY).
	Resize(ctx context.Context, ref string, rows, cols uint16) error
	// Exec starts a process in the running arrow and returns its stream,
	// framed as POST /v1/arrows/{ref}/exec's (api.ReadExecFrame).
	Exec(ctx context.Context, ref string, c *api.ExecConfig) (net.Conn, *bufio.Reader, error)

	// Events delivers the daemon's events until ctx ends or the
	// subscriber falls behind; the channel is closed then.
	Events(ctx context.Context) <-chan api.Event

	NetworkCreate(ctx context.Context, req *api.NetworkCreateRequest) (api.Network, error)
	NetworkList() ([]api.Network, error)
	NetworkGet(name string) (api.Network, error)
	NetworkRemove(ctx context.Context, name string) error

	// VolumeCreate's created is false for a volume that existed.
	VolumeCreate(ctx context.Context, req *api.VolumeCreateRequest) (v api.VolumeInfo, created bool, err error)
	VolumeList(ctx context.Context) ([]api.VolumeInfo, error)
	VolumeGet(ctx context.Context, name string) (api.VolumeInfo, error)
	VolumeRemove(ctx context.Context, name string) error
	VolumePrune(ctx context.Context) (api.VolumePruneResponse, error)
}
