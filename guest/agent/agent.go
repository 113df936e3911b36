//go:build linux

// Package agent is arrow-init, the guest's PID 1.
//
// It prepares the guest's minimal Linux environment (mounts, host name,
// clock, entropy), waits for the host to send the application over the
// control port (see package guest), runs it, relays its standard streams and
// the host's signals, reaps every zombie, reports the exit status and powers
// the VM off. It never returns: PID 1 exiting would panic the kernel.
//
// The application arrives after boot rather than being baked into the guest
// image so that one booted and paused guest can later run any application.
package agent

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// Main runs arrow-init and powers the VM off when the application ends, or
// when anything goes wrong before it could start. It does not return.
func Main() {
	if isWarmStandIn() {
		os.Exit(0)
	}
	logger := log.New(os.Stderr, "arrow-init: ", 0)
	a := &agent{log: logger, born: time.Now(), acked: make(chan struct{})}
	status := a.main()
	a.poweroff(status)
}

type agent struct {
	born  time.Time // when arrow-init started, for debug timings
	log   *log.Logger
	debug bool
	// template: the guest boots to become a VM template, or is a clone
	// of one (a clone has its template's command line).
	template bool
	conn     *guest.Conn
	// reap reaps the children; execs are the processes exec'd next to
	// the application (arrow exec).
	reap  *reaper
	execs execTable
	// serving says serveHost reads the host's frames (the application
	// started); acked is closed when the host acknowledged the exit
	// status (guest.FrameExitAck).
	serving bool
	acked   chan struct{}
	// spec is the application's, once received; healthy says the
	// host was told it listens (FrameHealthy). A snapshot's clone needs
	// both (snapshot.go).
	spec    *guest.Spec
	healthy atomic.Bool
}

func (a *agent) debugf(format string, args ...any) {
	if a.debug {
		a.log.Printf("%7.1fms "+format, append([]any{float64(time.Since(a.born).Microseconds()) / 1000}, args...)...)
	}
}

// main sets the guest up, receives the spec and runs the application. Its
// result is what the host is told.
func (a *agent) main() (status guest.ExitStatus) {
	defer func() {
		// A panic in PID 1 would panic the kernel and the host would only
		// learn that the guest died; report it as an init failure instead.
		if r := recover(); r != nil {
			status = initFailed(fmt.Errorf("arrow-init panicked: %v", r))
		}
	}()
	if err := mountAll(); err != nil {
		return initFailed(err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline") // needs /proc
	a.debug = hasFlag(string(cmdline), guest.CmdlineDebug)
	a.template = hasFlag(string(cmdline), guest.CmdlineTemplate)
	a.debugf("mounted")
	// Bringing lo up costs the kernel some milliseconds of (under TCG,
	// first-run) work: do it while the control port comes up and the
	// host's spec arrives, which is mostly waiting.
	loopback := make(chan error, 1)
	go func() { loopback <- loopbackUp() }()
	loaded, err := loadModules(string(cmdline))
	if err != nil {
		return initFailed(err)
	}
	port, err := waitPort(guest.PortName, loaded)
	if err != nil {
		return initFailed(err)
	}
	if err := a.prepareTemplate(); err != nil { // before the hello: a template is saved after it
		return initFailed(err)
	}
	a.conn = guest.NewConn(port, port)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if err := a.conn.SendJSON(guest.FrameReady, guest.Hello{
		Version: guest.ProtocolVersion,
		Kernel:  unix.ByteSliceToString(uts.Release[:]),
	}); err != nil {
		return initFailed(err)
	}
	a.debugf("said hello")
	spec, err := a.receiveSpec()
	if err != nil {
		return initFailed(err)
	}
	a.debug = a.debug || spec.Debug
	a.spec = spec
	a.debugf("received the spec")
	if err := a.attachDisks(); err != nil {
		return initFailed(err)
	}
	t0 := time.Now()
	if err := <-loopback; err != nil {
		return initFailed(err)
	}
	a.debugf("network: lo up (waited %v)", time.Since(t0))
	if spec.Network != nil {
		t0 = time.Now()
		if err := setupNetwork(spec.Network); err != nil {
			return initFailed(err)
		}
		a.debugf("network: %d interfaces up in %v", len(spec.Network.Interfaces), time.Since(t0))
	}
	if err := a.setupFS(spec); err != nil {
		return initFailed(err)
	}
	if spec.Service != nil {
		a.debugf("starting service %s (%s)", spec.Service.Name, spec.Service.Type)
		return a.runService(spec)
	}
	a.debugf("starting %q", spec.Args)
	return a.run(spec)
}

// receiveSpec waits for the start frame. Nothing but a start frame is
// meaningful before the application exists.
func (a *agent) receiveSpec() (*guest.Spec, error) {
	for {
		f, err := a.conn.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for the application: %w", err)
		}
		if f.Type == guest.FrameWarm {
			if err := a.conn.SendJSON(guest.FrameWarmed, a.warm(f.Payload)); err != nil {
				return nil, fmt.Errorf("answering the warm-up: %w", err)
			}
			continue
		}
		if f.Type != guest.FrameStart {
			a.debugf("ignoring %s frame before start", f.Type)
			continue
		}
		var spec guest.Spec
		if err := guest.Decode(f.Payload, &spec); err != nil {
			return nil, err
		}
		if err := spec.Validate(); err != nil {
			return nil, err
		}
		return &spec, nil
	}
}

// poweroff reports status to the host and resets the machine; with
// reboot=t on the kernel command line and QEMU's -no-reboot, the reset makes
// QEMU exit at once (microvm without ACPI has no power-off device).
func (a *agent) poweroff(status guest.ExitStatus) {
	if status.Reason == guest.InitFailed {
		a.log.Print(status.Message)
	}
	// Flush what the application wrote to shared file systems before
	// the host hears the exit status: from then on it may stop the VM.
	unix.Sync()
	if a.conn != nil {
		if err := a.conn.SendJSON(guest.FrameExit, status); err != nil {
			a.log.Printf("reporting exit status: %v", err)
		}
		a.debugf("reported exit")
		a.awaitExitAck()
	}
	for {
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			a.log.Printf("reboot: %v", err)
		}
		time.Sleep(time.Second)
	}
}

// exitAckTimeout bounds the wait for the host's acknowledgement of the
// exit status: a host that is gone, or does not read, must not keep the
// VM alive for long.
const exitAckTimeout = 10 * time.Second

// awaitExitAck waits until the host acknowledged the exit status, and so
// received all the output before it (see guest.FrameExitAck), or until
// exitAckTimeout.
func (a *agent) awaitExitAck() {
	if !a.serving {
		// Nothing reads the host's frames yet: the application never
		// started.
		go func() {
			for {
				f, err := a.conn.Recv()
				if err != nil {
					return
				}
				if f.Type == guest.FrameExitAck {
					close(a.acked)
					return
				}
			}
		}()
	}
	t0 := time.Now()
	select {
	case <-a.acked:
		a.debugf("exit acknowledged after %v", time.Since(t0))
	case <-time.After(exitAckTimeout):
		a.log.Printf("the host did not acknowledge the exit status within %v; resetting anyway", exitAckTimeout)
	}
}

func initFailed(err error) guest.ExitStatus {
	return guest.ExitStatus{Reason: guest.InitFailed, Message: err.Error()}
}

// openPort opens the virtio-serial port named name.
func openPort(name string) (*os.File, error) {
	const dir = "/sys/class/virtio-ports"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("find control port: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/name")
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		f, err := os.OpenFile("/dev/"+e.Name(), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open control port: %w", err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("find control port: no virtio-serial port named %q", name)
}

// hasFlag reports whether the kernel command line cmdline has the word
// word.
func hasFlag(cmdline, word string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == word {
			return true
		}
	}
	return false
}

// writeAll is io.Writer.Write that treats a closed reader as the end.
func writeAll(w io.Writer, p []byte) error {
	_, err := w.Write(p)
	if errors.Is(err, unix.EPIPE) {
		return io.ErrClosedPipe
	}
	return err
}
