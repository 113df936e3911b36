// Package shim is the supervisor of one detached arrow: a small process of
// its own (`arrow shim`, started by arrowd) that runs the arrow's VM with
// package run, writes its output to the arrow's log, and answers the
// daemon on a Unix socket (status, wait, signal, stop, attach).
//
// Why a process per arrow: the VM's channels (console, control, QMP) are
// socket pairs inherited by QEMU, and whoever holds the other ends must
// live as long as the VM. If that were arrowd, restarting or crashing the
// daemon would end every arrow. The shim holds them instead; arrowd can
// come and go and finds the shims again through their sockets. (containerd
// and CRI-O do the same with containerd-shim and conmon.)
//
// A shim's files: the launch description the daemon writes (launch.json),
// the log, and the exit record the shim writes last (exit.json), all in the
// arrow's directory; its socket lives in the daemon's runtime directory,
// where paths are short enough for a socket address.
package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/run"
)

// Launch is what the daemon tells a shim to run.
type Launch struct {
	ID     string     `json:"id"`
	Config api.Config `json:"config"`
	// Root is Arrow's data root (kernels, images, caches).
	Root string `json:"root"`
	// Socket is where the shim listens.
	Socket string `json:"socket"`
	// Cgroup names the cgroup (created by the daemon) the VM's process
	// joins; empty for none.
	Cgroup string `json:"cgroup,omitempty"`
	// CgroupParent is the cgroup manager's parent group.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// Tap joins the run to its bridge network (arrowd created the tap and
	// publishes the ports); nil for user-mode or no network.
	Tap *run.TapAttachment `json:"tap,omitempty"`
	// LogMaxSize and LogMaxFiles bound the log and its rotations.
	LogMaxSize  int64 `json:"log_max_size,omitempty"`
	LogMaxFiles int   `json:"log_max_files,omitempty"`
	// Size is the initial size of the terminal, with Config.TTY: the
	// last one a client set before the arrow started (docker's
	// ConsoleSize). Nil for the default, DefaultRows by DefaultCols.
	Size *guest.WindowSize `json:"size,omitempty"`
}

// Exit is how a run ended, written by the shim as its last act.
type Exit struct {
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at"`
	Accel      string    `json:"accel,omitempty"`
	// How the VM started, as in [Status]: recorded here too, for runs
	// that ended before anyone saw them running.
	Template string      `json:"template,omitempty"`
	Spare    bool        `json:"spare,omitempty"`
	Phases   []api.Phase `json:"phases,omitempty"`
}

// Status is a running shim's answer to GET /status.
type Status struct {
	State api.State `json:"state"`
	// Pid is QEMU's process ID once started.
	Pid         int       `json:"pid,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	BootSeconds float64   `json:"boot_seconds,omitempty"`
	Accel       string    `json:"accel,omitempty"`
	// Template is the key of the template the VM was cloned from; empty
	// for a cold boot.
	Template string `json:"template,omitempty"`
	// Spare says the clone came from arrowd's pool of spares.
	Spare bool `json:"spare,omitempty"`
	// Phases are the start's steps.
	Phases []api.Phase `json:"phases,omitempty"`
	// Healthy: the application accepts connections on its ready port.
	Healthy bool `json:"healthy,omitempty"`
	// Paused: the VM's virtual CPUs are stopped (pause.go).
	Paused bool `json:"paused,omitempty"`
	// Exit is set once the run ended.
	Exit *Exit `json:"exit,omitempty"`
}

// Files of an arrow's directory.
const (
	LaunchFile = "launch.json"
	ExitFile   = "exit.json"
	LogFile    = "output.log"
	// ShimLogFile takes the shim process's own diagnostics (a panic, say).
	ShimLogFile = "shim.log"
)

// WriteLaunch atomically writes l to dir's launch file.
func WriteLaunch(dir string, l *Launch) error {
	return writeJSON(filepath.Join(dir, LaunchFile), l)
}

// ReadLaunch reads dir's launch file.
func ReadLaunch(dir string) (*Launch, error) {
	var l Launch
	if err := readJSON(filepath.Join(dir, LaunchFile), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Bounds of an exit record. Its message comes from the guest (the
// application's own last words, or an error that quotes them), so it is
// cut where the shim writes it and again wherever it is read: the host
// stores a bounded amount of what a guest says.
const (
	// MaxExitMessage bounds Exit.Error, in bytes.
	MaxExitMessage = 4 << 10
	// maxExitFile bounds exit.json as read. A record within the bounds
	// below marshals to far less (JSON escapes at most sextuple a byte).
	maxExitFile   = 64 << 10
	maxExitShort  = 128 // Template, Accel, a phase's name
	maxExitPhases = 32
)

// truncated is the mark that ends a cut message.
const truncated = "... (truncated)"

// Bound cuts what e carries to the bounds of an exit record: the message
// to [MaxExitMessage] bytes of valid UTF-8, ending with a mark when cut.
func (e *Exit) Bound() {
	e.Error = cut(e.Error, MaxExitMessage)
	e.Template = cut(e.Template, maxExitShort)
	e.Accel = cut(e.Accel, maxExitShort)
	if len(e.Phases) > maxExitPhases {
		e.Phases = e.Phases[:maxExitPhases]
	}
	for i := range e.Phases {
		e.Phases[i].Name = cut(e.Phases[i].Name, maxExitShort)
	}
}

// cut returns s as valid UTF-8 of at most n bytes; a cut string ends with
// the mark truncated (within the n).
func cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	i := max(n-len(truncated), 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + truncated
}

// ReadExit reads the exit record a shim left in dir; an error wrapping
// fs.ErrNotExist when it left none (it still runs, or it was killed).
// The file is read to a bound, must be a regular file, and must hold an
// exit status from 0 to 255; the record returned is within the bounds of
// [Exit.Bound] whatever the file held.
func ReadExit(dir string) (*Exit, error) {
	path := filepath.Join(dir, ExitFile)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxExitFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return parseExit(path, b)
}

// parseExit decodes an exit record read from path.
func parseExit(path string, b []byte) (*Exit, error) {
	if len(b) > maxExitFile {
		return nil, fmt.Errorf("%s: larger than %d bytes: not an exit record", path, maxExitFile)
	}
	var e Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if e.ExitCode < 0 || e.ExitCode > 255 {
		return nil, fmt.Errorf("%s: exit status %d: want 0 to 255", path, e.ExitCode)
	}
	e.Bound()
	return &e, nil
}

// ClearExit removes dir's exit record before the arrow starts again.
func ClearExit(dir string) error {
	err := os.Remove(filepath.Join(dir, ExitFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return cachefile.WriteFile(path, b, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) > api.MaxRequestBytes {
		return fmt.Errorf("%s: too large", path)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Options turns a config into the options of a run, without streams.
func Options(c *api.Config, root string) run.Options {
	o := run.Options{Config: *c, Root: root}
	if o.Dir == "" && o.Image == "" && o.RootFS == "" {
		// Not the shim's working directory, which is the arrow's own.
		o.Dir = "/"
	}
	return o
}
