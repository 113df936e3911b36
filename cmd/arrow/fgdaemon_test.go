package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/run"
)

// serveDaemon serves an arrowd of data root root on a socket and returns
// the socket.
func serveDaemon(t *testing.T, root string) string {
	t.Helper()
	// Socket paths are short (108 bytes): not under t.TempDir().
	rundir, err := os.MkdirTemp("", "fgd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rundir) })
	d, err := daemon.New(daemon.Config{Root: root, RunDir: rundir, Exe: "/nonexistent", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(rundir, "arrow.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return sock
}

// daemonForRun has arrowd run a foreground run only when one of this
// data root answers, the run could take a spare, and nothing keeps it
// in-process.
func TestDaemonForRun(t *testing.T) {
	root := t.TempDir()
	sock := serveDaemon(t, root)
	spareable := run.Options{Config: api.Config{Program: "/bin/true", Network: run.NetworkUser, Accel: "auto"}}
	with := func(f func(o *run.Options)) run.Options {
		o := spareable
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name     string
		root     string
		socket   string
		env      string // ARROW_NO_DAEMON
		noDaemon bool
		o        run.Options
		want     bool
	}{
		{"an arrowd of this root", root, sock, "", false, spareable, true},
		{"ARROW_NO_DAEMON=0", root, sock, "0", false, spareable, true},
		{"--no-daemon", root, sock, "", true, spareable, false},
		{"ARROW_NO_DAEMON=1", root, sock, "1", false, spareable, false},
		{"another data root", t.TempDir(), sock, "", false, spareable, false},
		{"no arrowd", root, filepath.Join(t.TempDir(), "none.sock"), "", false, spareable, false},
		{"--cold", root, sock, "", false, with(func(o *run.Options) { o.Cold = true }), false},
		{"a volume", root, sock, "", false, with(func(o *run.Options) { o.Volumes = []api.Volume{{Source: "/tmp", Target: "/t"}} }), false},
		{"--kernel-args", root, sock, "", false, with(func(o *run.Options) { o.KernelArgs = "quiet" }), false},
		{"--add-host", root, sock, "", false, with(func(o *run.Options) { o.HostAccess = true }), false},
		{"--console", root, sock, "", false, with(func(o *run.Options) { o.Console = true }), false},
		{"--no-jail", root, sock, "", false, with(func(o *run.Options) { o.NoJail = true }), false},
		{"no network", root, sock, "", false, with(func(o *run.Options) { o.Network = run.NetworkNone }), true},
		{"-it", root, sock, "", false, with(func(o *run.Options) { o.Stdin, o.TTY = true, true }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envNoDaemon, tc.env)
			g := &globals{root: tc.root, socket: tc.socket}
			o := tc.o
			if got := daemonForRun(context.Background(), g, &o, tc.noDaemon) != nil; got != tc.want {
				t.Fatalf("through arrowd: %v, want %v", got, tc.want)
			}
		})
	}
}
