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
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// session is one booted VM and the conversation with its arrow-init.
type session struct {
	o      *Options
	accel  string
	m      *vm.Machine
	conn   *guest.Conn
	frames chan guest.Frame
	recErr error // why the frame stream ended; read after frames is closed
}

// boot starts the VM and runs the application to its end.
func (p *prepared) boot(ctx context.Context, o *Options) (Result, error) {
	res := Result{Accel: p.cfg.Accel}
	var console io.Writer
	if o.Console {
		console = o.Log
	}
	t0 := time.Now()
	m := p.clone(ctx, o, console)
	p.dropSpare()
	cloned := m != nil
	res.Template = p.tmplKey
	if !cloned {
		if o.Debug {
			why := p.coldWhy
			if why == "" {
				why = "the template failed"
			}
			fmt.Fprintf(o.Log, "arrow: cold boot (%s)\n", why)
		}
		var err error
		if m, err = vm.Start(ctx, p.cfg, console); err != nil {
			return res, fail(ExitArrowFailed, err)
		}
	}
	// Whatever happens below, QEMU does not outlive the run.
	defer func() {
		_ = m.Kill()
		<-m.Done()
	}()
	if o.Started != nil {
		if err := o.Started(m.Pid()); err != nil {
			return res, fail(ExitArrowFailed, err)
		}
	}
	s := &session{o: o, accel: p.cfg.Accel.Name, m: m, conn: guest.NewConn(m.Control(), m.Control()), frames: make(chan guest.Frame, 16)}
	go s.receive()

	if n := p.spec.Network; cloned && n != nil && len(n.Interfaces) == 1 {
		// The clone's card is the template's, with the template's
		// address: arrow-init finds it by that and gives it the run's.
		n.Interfaces[0].CardMAC = template.UserMAC
	}
	// The application is sent at once, not after arrow-init's hello: the
	// port buffers it until the guest opens it, which saves a round trip
	// through the emulated device on every start.
	if err := s.conn.SendJSON(guest.FrameStart, p.spec); err != nil {
		return res, fail(ExitArrowFailed, fmt.Errorf("hand the application to the guest: %w", err))
	}
	// A clone's arrow-init said hello in its template already, and waits
	// for the application now.
	if !cloned {
		if err := s.awaitReady(ctx); err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, Phase{"boot", time.Since(t0)})
	}
	if o.Ready != nil {
		o.Ready(StartInfo{Template: p.tmplKey, Spare: p.fromSpare, Phases: append(append([]Phase(nil), p.phases...), res.Phases...)})
	}
	t1 := time.Now()
	if p.spec.Stdin {
		go s.forwardStdin()
	}
	status, err := s.relay(ctx)
	res.Phases = append(res.Phases, Phase{"app", time.Since(t1)})
	if err != nil {
		return res, err
	}
	res.Status = status
	// The exit status is the guest's last word, sent after it synced its
	// file systems: nothing is lost by stopping QEMU now rather than
	// waiting for the guest's reset to end it.
	t2 := time.Now()
	_ = m.Kill()
	<-m.Done()
	res.Phases = append(res.Phases, Phase{"poweroff", time.Since(t2)})
	if status.Reason == guest.InitFailed {
		return res, failf(ExitArrowFailed, "guest init: %s", status.Message)
	}
	return res, nil
}

// receive reads frames from the guest until the stream ends.
func (s *session) receive() {
	defer close(s.frames)
	for {
		f, err := s.conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.recErr = err
			}
			return
		}
		s.frames <- f
	}
}

// awaitReady waits for arrow-init's hello, within the boot deadline.
func (s *session) awaitReady(ctx context.Context) error {
	deadline := time.NewTimer(s.o.bootTimeout())
	defer deadline.Stop()
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return s.died("before arrow-init started")
			}
			if f.Type != guest.FrameReady {
				continue
			}
			var h guest.Hello
			if err := guest.Decode(f.Payload, &h); err != nil {
				return fail(ExitArrowFailed, fmt.Errorf("guest hello: %w", err))
			}
			if h.Version != guest.ProtocolVersion {
				return failf(ExitArrowFailed, "arrow-init speaks protocol version %d, this arrow %d: rebuild both from the same source", h.Version, guest.ProtocolVersion)
			}
			return nil
		case <-deadline.C:
			msg := fmt.Sprintf("the guest did not boot within %v (accelerator %s); raise --boot-timeout, or see the kernel's messages with --console", s.o.bootTimeout(), s.accel)
			if tail := strings.TrimSpace(s.m.ConsoleTail()); tail != "" {
				msg += "\nlast console output:\n" + lastLines(tail, 15)
			}
			return failf(ExitArrowFailed, "%s", msg)
		case sig := <-s.o.Signals:
			return failf(128+signalStatus(sig).Signal, "%v while the guest was booting: stopped it", sig)
		case <-ctx.Done():
			return fail(ExitArrowFailed, ctx.Err())
		}
	}
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
// until the guest reports the exit status.
func (s *session) relay(ctx context.Context) (guest.ExitStatus, error) {
	var (
		killTimer  <-chan time.Time
		lastSignal os.Signal
	)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				if lastSignal != nil {
					// The VM was stopped on the user's signal.
					return signalStatus(lastSignal), nil
				}
				return guest.ExitStatus{}, s.died("while the application ran")
			}
			switch f.Type {
			case guest.FrameStdout:
				_, _ = s.o.Out.Write(f.Payload)
			case guest.FrameStderr:
				_, _ = s.o.Err.Write(f.Payload)
			case guest.FrameHealthy:
				if s.o.Healthy != nil {
					s.o.Healthy()
				}
			case guest.FrameExit:
				var st guest.ExitStatus
				if err := guest.Decode(f.Payload, &st); err != nil {
					return st, fail(ExitArrowFailed, fmt.Errorf("guest exit status: %w", err))
				}
				return st, nil
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
				_ = s.conn.SendJSON(guest.FrameSignal, guest.Signal{Number: int(n)})
			}
			if killTimer == nil && isStopSignal(sig) {
				killTimer = time.After(s.o.stopTimeout())
			}
		case ws := <-s.o.Resize:
			_ = s.conn.SendJSON(guest.FrameResize, ws)
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
				if s.conn.Send(guest.FrameStdin, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = s.conn.Send(guest.FrameStdinClose, nil)
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
