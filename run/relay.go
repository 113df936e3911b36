package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/guest"
)

// machine is what a session needs of the VM: an interface, so that the
// relay's logic is tested against a fake guest (see relay_test.go).
type machine interface {
	Kill() error
	Wait() error
	Done() <-chan struct{}
	ConsoleTail() string
}

// session is one VM's conversation with its arrow-init, through the
// guest client (guest.Agent): the application handed over, then its
// streams, signals and terminal size relayed to its end.
type session struct {
	o         *Options
	accel     string
	m         machine
	agent     guest.Agent
	recErr    error // why the guest's stream broke (nil: it ended cleanly)
	onHealthy func()
}

func newSession(o *Options, accel string, m machine, agent guest.Agent, onHealthy func()) *session {
	return &session{o: o, accel: accel, m: m, agent: agent, onHealthy: onHealthy}
}

// start hands arrow-init the application; with hello, it then waits for
// arrow-init's hello (a cold boot's; a clone's arrow-init said hello in
// its template already, and waits for the application now).
func (s *session) start(ctx context.Context, spec *guest.Spec, hello bool) error {
	// The application is sent at once, not after arrow-init's hello: the
	// port buffers it until the guest opens it, which saves a round trip
	// through the emulated device on every start.
	if err := s.agent.Start(spec); err != nil {
		return fail(ExitArrowFailed, fmt.Errorf("hand the application to the guest: %w", err))
	}
	if hello {
		if err := s.awaitReady(ctx); err != nil {
			return err
		}
	}
	// Input goes once the guest runs: a boot that fails leaves the
	// caller's input unread.
	if spec.Stdin {
		go s.forwardStdin()
	}
	return nil
}

// close ends the conversation; the VM is dead or being killed.
func (s *session) close() { _ = s.agent.Close() }

// awaitReady waits for arrow-init's hello, within the boot deadline. A
// signal meanwhile stops the boot: the caller kills the VM.
func (s *session) awaitReady(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, s.o.bootTimeout())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.agent.Hello(hctx)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case sig := <-s.o.Signals:
		cancel()
		<-done
		return failf(128+signalStatus(sig).Signal, "%v while the guest was booting: stopped it", sig)
	}
	var (
		end     *guest.EndError
		version *guest.VersionError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &end):
		if !errors.Is(end.Err, io.EOF) {
			s.recErr = end.Err
		}
		return s.died("before arrow-init started")
	case errors.As(err, &version):
		return fail(ExitArrowFailed, err)
	case ctx.Err() != nil:
		return fail(ExitArrowFailed, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		msg := fmt.Sprintf("the guest did not boot within %v (accelerator %s); raise --boot-timeout, or see the kernel's messages with --console", s.o.bootTimeout(), s.accel)
		if tail := strings.TrimSpace(s.m.ConsoleTail()); tail != "" {
			msg += "\nlast console output:\n" + lastLines(tail, 15)
		}
		return failf(ExitArrowFailed, "%s", msg)
	}
	return fail(ExitArrowFailed, err)
}

// died explains a VM that ended without reporting an exit status. The
// control stream may also have ended because it broke (a frame this
// version does not know, say) while QEMU runs on: then nothing would end
// it, so it is stopped first.
func (s *session) died(when string) error {
	if s.recErr != nil {
		_ = s.m.Kill()
	}
	werr := s.m.Wait()
	tail := strings.TrimSpace(s.m.ConsoleTail())
	if i := strings.Index(tail, "Kernel panic"); i >= 0 {
		line, _, _ := strings.Cut(tail[i:], "\n")
		return failf(ExitArrowFailed, "the guest kernel panicked %s: %s", when, strings.TrimSpace(line))
	}
	if err := forwardError(werr); err != nil {
		return err
	}
	msg := fmt.Sprintf("the VM stopped %s without reporting an exit status", when)
	if werr != nil {
		msg += ": " + werr.Error()
	}
	if s.recErr != nil {
		msg += " (control channel: " + s.recErr.Error() + ")"
	}
	if tail != "" {
		msg += "\nlast console output:\n" + lastLines(tail, 15)
	}
	return failf(ExitArrowFailed, "%s", msg)
}

// relay copies the application's output and forwards signals and resizes
// until the guest reports the exit status. A signal asked twice stops the
// VM at once; a stop signal (TERM, INT, HUP) the application does not
// obey within the stop timeout stops it too.
func (s *session) relay(ctx context.Context) (guest.ExitStatus, error) {
	var (
		killTimer  <-chan time.Time
		lastSignal os.Signal
	)
	events := s.agent.Events()
	for {
		select {
		case ev, ok := <-events:
			if !ok || ev.Kind == guest.EventEnd {
				s.recErr = ev.Err
				if lastSignal != nil {
					// The VM was stopped on the user's signal.
					return signalStatus(lastSignal), nil
				}
				return guest.ExitStatus{}, s.died("while the application ran")
			}
			switch ev.Kind {
			case guest.EventStdout:
				_, _ = s.o.Out.Write(ev.Data)
			case guest.EventStderr:
				_, _ = s.o.Err.Write(ev.Data)
			case guest.EventHealthy:
				s.onHealthy()
			case guest.EventExit:
				if ev.Err != nil {
					return ev.Status, fail(ExitArrowFailed, ev.Err)
				}
				return ev.Status, nil
			}
		case sig := <-s.o.Signals:
			if lastSignal != nil && sig == lastSignal {
				// Asked twice: stop waiting for the application.
				fmt.Fprintf(s.o.Log, "arrow: %v again: stopping the VM\n", sig)
				_ = s.m.Kill()
				continue
			}
			lastSignal = sig
			if n, ok := sig.(syscall.Signal); ok {
				_ = s.agent.Signal(int(n))
			}
			if killTimer == nil && isStopSignal(sig) {
				killTimer = time.After(s.o.stopTimeout())
			}
		case ws := <-s.o.Resize:
			_ = s.agent.Resize(ws)
		case <-killTimer:
			fmt.Fprintf(s.o.Log, "arrow: the application did not exit within %v of %v; stopping the VM\n", s.o.stopTimeout(), lastSignal)
			_ = s.m.Kill()
		case <-ctx.Done():
			_ = s.m.Kill()
			return guest.ExitStatus{}, fail(ExitArrowFailed, ctx.Err())
		}
	}
}

// forwardStdin sends the caller's input to the guest, then its end.
func (s *session) forwardStdin() {
	if s.o.In != nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := s.o.In.Read(buf)
			if n > 0 {
				if s.agent.Stdin(buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = s.agent.CloseStdin()
}

func isStopSignal(sig os.Signal) bool {
	return sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGHUP
}

// signalStatus is the status of an application the host stopped by
// killing its VM after sig.
func signalStatus(sig os.Signal) guest.ExitStatus {
	n := int(syscall.SIGKILL)
	if s, ok := sig.(syscall.Signal); ok {
		n = int(s)
	}
	return guest.ExitStatus{Reason: guest.Signaled, Signal: n}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
