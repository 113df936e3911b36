package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// A spare shim holds a warmed, paused clone (template.Spare) for arrowd's
// pool before any arrow exists for it. When the daemon starts an arrow of
// the spare's machine, it claims the spare instead of starting a shim: the
// spare shim becomes that arrow's shim, and its run takes the clone in
// place of starting one (run.Options.Spare). A spare that its daemon has
// not confirmed as an arrow's ends with its daemon (see [ServeSpare]).
//
// Why the shim and not arrowd holds the clone: the clone's QEMU dies with
// the process that started it, and its channels must stay with whoever
// supervises the arrow, the shim (see the package comment).

// Spare describes the spare a daemon asks a spare shim to hold.
type Spare struct {
	// Root is Arrow's data root.
	Root string `json:"root"`
	// Socket is where the spare shim listens for its claim.
	Socket string `json:"socket"`
	// The machine: as api.Config's fields of the same names.
	MemoryMiB int    `json:"memory_mib"`
	CPUs      int    `json:"cpus"`
	Network   string `json:"network,omitempty"`
	Accel     string `json:"accel,omitempty"`
}

// SpareFile is the spare description in a spare shim's directory.
const SpareFile = "spare.json"

// WriteSpare atomically writes s to dir's spare file.
func WriteSpare(dir string, s *Spare) error { return writeJSON(filepath.Join(dir, SpareFile), s) }

// Claim is the body of a spare shim's POST /claim.
type Claim struct {
	// Dir is the arrow's directory, with its launch file written.
	Dir string `json:"dir"`
}

// ServeSpare is the body of a spare shim: it starts the spare described in
// dir, writes "ok\n" to ctl once the spare is warm and the socket listens
// (or the reason it could not), and waits for a claim. Claimed, it waits
// for its daemon's "go\n" on ctl, as a shim started by [Start] does, and
// serves the arrow as [Serve] does.
//
// Until that "go" the spare is its daemon's alone: when ctl reads end of
// file (the daemon ended, however: even kill -9 closes its end), the spare
// kills its VM and ends. It also ends when ctx does, on a stop signal, or
// when its VM died.
func ServeSpare(ctx context.Context, dir string, ctl io.ReadWriteCloser) error {
	failed := func(err error) error {
		fmt.Fprintf(ctl, "%v\n", err)
		ctl.Close()
		return err
	}
	// The spare's directory is locked as an arrow's is, so that a later
	// daemon can find (and end) a spare shim that outlived its own.
	lock, err := lockDir(dir)
	if err != nil {
		return failed(fmt.Errorf("spare: %w", err))
	}
	defer func() { lock.Close() }()
	var sp Spare
	if err := readJSON(filepath.Join(dir, SpareFile), &sp); err != nil {
		return failed(fmt.Errorf("spare: %w", err))
	}
	vm, err := run.StartSpare(ctx, run.Options{Root: sp.Root, Config: api.Config{MemoryMiB: sp.MemoryMiB, CPUs: sp.CPUs, Network: sp.Network, Accel: sp.Accel}})
	if err != nil {
		return failed(fmt.Errorf("spare: %w", err))
	}
	owned := true
	defer func() {
		if owned {
			_ = vm.Machine.Kill()
			<-vm.Machine.Done()
		}
	}()
	_ = os.Remove(sp.Socket)
	ln, err := net.Listen("unix", sp.Socket)
	if err != nil {
		return failed(fmt.Errorf("spare: %w", err))
	}
	defer os.Remove(sp.Socket)
	_ = os.Chmod(sp.Socket, 0o600)
	claims := make(chan claimReq)
	srv := &http.Server{Handler: spareHandler(claims), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintln(ctl, "ok")
	defer ctl.Close()
	// The daemon's only word is "go", after a claim; anything else, or
	// the end of the connection, ends the spare.
	word := make(chan string, 1)
	go func() {
		line, err := readLine(ctl, 16)
		if err != nil {
			line = ""
		}
		word <- line
	}()

	// Registered until the end: stopping it before the claimed run
	// registered its own would leave a moment in which a SIGTERM has its
	// default action. Once the run handles them, this copy is ignored.
	stop := make(chan os.Signal, 1)
	signalNotify(stop)
	defer signal.Stop(stop)
	var claimed *server
	for {
		select {
		case c := <-claims:
			if claimed != nil {
				c.reply <- errors.New("spare: already claimed")
				continue
			}
			s, err := newServer(c.dir)
			if err == nil {
				// Before the claim is answered: the daemon joins the
				// attaches waiting for this run once it returns.
				s.serve()
			}
			c.reply <- err
			if err != nil {
				return fmt.Errorf("spare: claimed for %s: %w", c.dir, err)
			}
			defer s.close()
			claimed = s
			// The shim's own diagnostics go to the arrow's directory,
			// as a started shim's do: the spare's is removed.
			redirectOutput(filepath.Join(c.dir, ShimLogFile))
			// The spare's socket goes: the arrow's serves from now on.
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		case w := <-word:
			if w != "go" || claimed == nil {
				if claimed != nil {
					// The VM goes before the arrow's lock is
					// released (s.close): while the lock is
					// held, the arrow's shim counts as alive.
					_ = vm.Machine.Kill()
					<-vm.Machine.Done()
					owned = false
					claimed.abandoned(errAbandoned)
				}
				return errors.New("spare: the daemon is gone")
			}
			ctl.Close()
			lock.Close() // the spare's directory: the arrow's is held now
			claimed.spare, owned = vm, false
			return claimed.run(ctx)
		case <-vm.Machine.Done():
			return errors.New("spare: its VM ended")
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type claimReq struct {
	dir   string
	reply chan error
}

// spareHandler serves a spare shim's socket: POST /claim.
func spareHandler(claims chan<- claimReq) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /claim", func(w http.ResponseWriter, r *http.Request) {
		var c Claim
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&c); err != nil || !filepath.IsAbs(c.Dir) {
			writeReply(w, http.StatusBadRequest, api.Error{Message: "claim: want {\"dir\": an absolute path}"})
			return
		}
		req := claimReq{dir: c.Dir, reply: make(chan error, 1)}
		select {
		case claims <- req:
		case <-r.Context().Done():
			return
		}
		if err := <-req.reply; err != nil {
			writeReply(w, http.StatusInternalServerError, api.Error{Message: err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// redirectOutput points the process's standard output and error at the
// file path (appended to); on failure they stay where they were.
func redirectOutput(path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Dup3(int(f.Fd()), 1, 0)
	_ = unix.Dup3(int(f.Fd()), 2, 0)
}
