package run

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/guest/guesttest"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

// fakeVM is the machine a relay runs against in these tests: killing it
// ends the fake guest's stream, as a stopped QEMU ends the control port.
type fakeVM struct {
	g       *guesttest.Guest
	console string
	exitErr error

	mu     sync.Mutex
	kills  int
	done   chan struct{}
	doneMu sync.Once
}

func newFakeVM(g *guesttest.Guest) *fakeVM { return &fakeVM{g: g, done: make(chan struct{})} }

func (m *fakeVM) Kill() error {
	m.mu.Lock()
	m.kills++
	m.mu.Unlock()
	m.g.Die()
	m.doneMu.Do(func() { close(m.done) })
	return nil
}

func (m *fakeVM) Wait() error {
	<-m.done
	return m.exitErr
}

func (m *fakeVM) Done() <-chan struct{} { return m.done }
func (m *fakeVM) ConsoleTail() string   { return m.console }

func (m *fakeVM) killed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kills
}

// relayRig is a session between a fake VM with a fake guest and options
// whose streams the test reads.
type relayRig struct {
	g              *guesttest.Guest
	m              *fakeVM
	s              *session
	out, errs, log *syncbuf.Buffer
	sigs           chan os.Signal
	healthy        chan struct{}
}

func newRelayRig(t *testing.T, cfg api.Config) *relayRig {
	t.Helper()
	g := guesttest.New(t)
	r := &relayRig{g: g, m: newFakeVM(g), out: &syncbuf.Buffer{}, errs: &syncbuf.Buffer{}, log: &syncbuf.Buffer{},
		sigs: make(chan os.Signal, 4), healthy: make(chan struct{})}
	o := &Options{Config: cfg, Out: r.out, Err: r.errs, Log: r.log, Signals: r.sigs}
	client := guest.NewClient(g.Host())
	r.s = newSession(o, "tcg", r.m, client, func() { close(r.healthy) })
	t.Cleanup(r.s.close)
	return r
}

// waitFor waits until the fake guest received what cond wants.
func (r *relayRig) waitFor(t *testing.T, what string, cond func(guesttest.Received) bool) guesttest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := r.g.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return got
}

type relayResult struct {
	st  guest.ExitStatus
	err error
}

func (r *relayRig) relay() <-chan relayResult {
	ch := make(chan relayResult, 1)
	go func() {
		st, err := r.s.relay(context.Background())
		ch <- relayResult{st, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan relayResult) relayResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end")
		return relayResult{}
	}
}

func TestRelayOutputAndExit(t *testing.T) {
	r := newRelayRig(t, api.Config{})
	spec := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/app"}}
	if err := r.s.start(context.Background(), spec, false); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor(t, "the start", func(g guesttest.Received) bool { return len(g.Starts) == 1 })
	if got.Starts[0].Args[0] != "/bin/app" {
		t.Errorf("the guest got %+v", got.Starts[0])
	}
	ch := r.relay()
	r.g.Stdout("out\n")
	r.g.Stderr("err\n")
	r.g.Healthy()
	r.g.Exit(guest.ExitStatus{Reason: guest.Exited, Code: 3})
	res := await(t, ch)
	if res.err != nil || res.st.Code != 3 || res.st.Reason != guest.Exited {
		t.Fatalf("relay: %+v, %v", res.st, res.err)
	}
	if r.out.String() != "out\n" || r.errs.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", r.out.String(), r.errs.String())
	}
	select {
	case <-r.healthy:
	default:
		t.Error("healthy was not reported")
	}
	if r.m.killed() != 0 {
		t.Error("the relay killed a VM whose application exited")
	}
}

// TestRelaySignalTwice: a signal is forwarded; the same signal again
// stops the VM at once, and the run ends as killed by it.
func TestRelaySignalTwice(t *testing.T) {
	r := newRelayRig(t, api.Config{})
	ch := r.relay()
	r.sigs <- syscall.SIGUSR1
	r.waitFor(t, "the first signal", func(g guesttest.Received) bool { return len(g.Signals) == 1 })
	if r.m.killed() != 0 {
		t.Fatal("one signal killed the VM")
	}
	r.sigs <- syscall.SIGUSR1
	res := await(t, ch)
	if res.err != nil || res.st.Reason != guest.Signaled || res.st.Signal != int(syscall.SIGUSR1) {
		t.Fatalf("relay: %+v, %v", res.st, res.err)
	}
	if r.m.killed() != 1 || !strings.Contains(r.log.String(), "again: stopping the VM") {
		t.Errorf("kills %d, log %q", r.m.killed(), r.log.String())
	}
	if got := r.g.Received(); len(got.Signals) != 1 || got.Signals[0] != int(syscall.SIGUSR1) {
		t.Errorf("the guest got signals %v, want the first only", got.Signals)
	}
}

// TestRelayStopTimeout: an application that ignores SIGTERM has its VM
// stopped when the stop timeout passes.
func TestRelayStopTimeout(t *testing.T) {
	r := newRelayRig(t, api.Config{StopTimeout: 0.05})
	ch := r.relay()
	r.sigs <- syscall.SIGTERM
	res := await(t, ch)
	if res.err != nil || res.st.Reason != guest.Signaled || res.st.Signal != int(syscall.SIGTERM) {
		t.Fatalf("relay: %+v, %v", res.st, res.err)
	}
	if got := r.g.Received(); len(got.Signals) != 1 || got.Signals[0] != int(syscall.SIGTERM) {
		t.Errorf("the guest got signals %v", got.Signals)
	}
	if r.m.killed() != 1 || !strings.Contains(r.log.String(), "did not exit within 50ms of terminated") {
		t.Errorf("kills %d, log %q", r.m.killed(), r.log.String())
	}
}

// TestRelayNoStopTimeoutForOtherSignals: only TERM, INT and HUP start the
// stop timer.
func TestRelayNoStopTimeoutForOtherSignals(t *testing.T) {
	r := newRelayRig(t, api.Config{StopTimeout: 0.01})
	ch := r.relay()
	r.sigs <- syscall.SIGUSR2
	r.waitFor(t, "the signal", func(g guesttest.Received) bool { return len(g.Signals) == 1 })
	time.Sleep(100 * time.Millisecond) // ten stop timeouts
	if r.m.killed() != 0 {
		t.Fatal("SIGUSR2 started the stop timer")
	}
	r.g.Exit(guest.ExitStatus{Reason: guest.Exited})
	if res := await(t, ch); res.err != nil {
		t.Fatal(res.err)
	}
}

// TestRelayGuestDied: a VM that ends without an exit status is explained
// from its console and QEMU's exit.
func TestRelayGuestDied(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console string
		exitErr error
		want    string
	}{
		{"kernel panic", "[ 1.0] boot\n[ 2.0] Kernel panic - not syncing: Attempted to kill init!\n[ 2.1] trace", nil,
			"the guest kernel panicked while the application ran: Kernel panic - not syncing: Attempted to kill init!"},
		{"QEMU failed", "", errors.New("exit status 1"),
			"the VM stopped while the application ran without reporting an exit status: exit status 1"},
		{"with console", "last words", nil,
			"without reporting an exit status\nlast console output:\nlast words"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelayRig(t, api.Config{})
			r.m.console, r.m.exitErr = tc.console, tc.exitErr
			ch := r.relay()
			r.g.Stdout("partial")
			r.m.Kill() // the VM stops: the stream ends
			res := await(t, ch)
			if res.err == nil || !strings.Contains(res.err.Error(), tc.want) || ExitCode(res.err) != ExitArrowFailed {
				t.Fatalf("relay: %v (exit %d), want %q", res.err, ExitCode(res.err), tc.want)
			}
		})
	}
}

// TestRelayBrokenStream: a guest that breaks the protocol is stopped, and
// the error says what broke.
func TestRelayBrokenStream(t *testing.T) {
	r := newRelayRig(t, api.Config{})
	ch := r.relay()
	r.g.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	go func() {
		// QEMU would run on: what the relay kills ends the fake.
		<-r.m.Done()
	}()
	res := await(t, ch)
	if res.err == nil || !strings.Contains(res.err.Error(), "control channel:") || r.m.killed() == 0 {
		t.Fatalf("relay: %v, kills %d", res.err, r.m.killed())
	}
}

func TestRelayMalformedExit(t *testing.T) {
	r := newRelayRig(t, api.Config{})
	ch := r.relay()
	r.g.Send(guest.FrameExit, []byte(`{"reason":`))
	res := await(t, ch)
	if res.err == nil || !strings.Contains(res.err.Error(), "guest exit status") {
		t.Fatalf("relay: %v", res.err)
	}
}

func TestRelayStdin(t *testing.T) {
	r := newRelayRig(t, api.Config{Stdin: true})
	r.s.o.In = strings.NewReader("hello, guest")
	spec := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/cat"}, Stdin: true}
	if err := r.s.start(context.Background(), spec, false); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor(t, "stdin and its end", func(g guesttest.Received) bool { return g.StdinClosed })
	if string(got.Stdin) != "hello, guest" || got.StdinAfterClose != 0 {
		t.Errorf("the guest read %q (%d after the close)", got.Stdin, got.StdinAfterClose)
	}
}

func TestRelayResize(t *testing.T) {
	r := newRelayRig(t, api.Config{TTY: true})
	resize := make(chan guest.WindowSize, 1)
	r.s.o.Resize = resize
	ch := r.relay()
	resize <- guest.WindowSize{Rows: 40, Cols: 120}
	got := r.waitFor(t, "the resize", func(g guesttest.Received) bool { return len(g.Resizes) == 1 })
	if got.Resizes[0] != (guest.WindowSize{Rows: 40, Cols: 120}) {
		t.Errorf("resize %+v", got.Resizes[0])
	}
	r.g.Exit(guest.ExitStatus{Reason: guest.Exited})
	await(t, ch)
}

// TestAwaitReady covers a cold boot's wait for arrow-init's hello.
func TestAwaitReady(t *testing.T) {
	spec := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"/bin/true"}}
	for _, tc := range []struct {
		name     string
		boot     float64
		guest    func(r *relayRig)
		console  string
		wantErr  string
		wantCode int
	}{
		{name: "hello", guest: func(r *relayRig) { r.g.Stdout("noise"); r.g.Hello(guest.ProtocolVersion) }},
		{name: "another version", guest: func(r *relayRig) { r.g.Hello(guest.ProtocolVersion + 1) },
			wantErr: "rebuild both from the same source", wantCode: ExitArrowFailed},
		{name: "boot timeout", boot: 0.05, guest: func(*relayRig) {}, console: "Booting the kernel",
			wantErr: "did not boot within 50ms (accelerator tcg); raise --boot-timeout, or see the kernel's messages with --console\nlast console output:\nBooting the kernel", wantCode: ExitArrowFailed},
		{name: "signal while booting", guest: func(r *relayRig) { r.sigs <- syscall.SIGINT },
			wantErr: "interrupt while the guest was booting: stopped it", wantCode: 128 + int(syscall.SIGINT)},
		{name: "died while booting", guest: func(r *relayRig) {
			go func() {
				// After the start frame: the VM had booted that far.
				_, _ = r.g.Wait(context.Background(), func(g guesttest.Received) bool { return len(g.Starts) == 1 })
				r.m.Kill()
			}()
		}, console: "Kernel panic - not syncing: no init",
			wantErr: "the guest kernel panicked before arrow-init started", wantCode: ExitArrowFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelayRig(t, api.Config{BootTimeout: tc.boot})
			r.m.console = tc.console
			tc.guest(r)
			err := r.s.start(context.Background(), spec, true)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("start: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || ExitCode(err) != tc.wantCode):
				t.Fatalf("start: %v (exit %d), want %q (exit %d)", err, ExitCode(err), tc.wantErr, tc.wantCode)
			}
		})
	}
}

// TestColdReasonNames pins each reason's name: --debug prints them, and
// a new reason must get one.
func TestColdReasonNames(t *testing.T) {
	for r, want := range map[ColdReason]string{
		mayClone: "none", ColdAsked: "--cold", ColdVolumes: "volumes", ColdKernelArgs: "--kernel-args",
		ColdForeignKernel: "not Arrow's kernel", ColdNoClosureDisk: "no closure disk",
		ColdNoRootDisk: "no root disk", ColdTemplateFailed: "the template failed",
		ColdTemplateFailed + 1: "ColdReason(8)",
	} {
		if got := r.String(); got != want {
			t.Errorf("ColdReason(%d) = %q, want %q", int(r), got, want)
		}
	}
}
