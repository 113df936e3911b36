package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

// attached collects an attach stream's frames until it ends.
type attached struct {
	stdout, stderr syncbuf.Buffer
	done           chan error // the stream's end: nil for EOF
}

func readAttach(br *bufio.Reader) *attached {
	at := &attached{done: make(chan error, 1)}
	go func() {
		for {
			st, p, err := api.ReadFrame(br)
			if errors.Is(err, io.EOF) {
				at.done <- nil
				return
			}
			if err != nil {
				at.done <- err
				return
			}
			if st == api.StreamStdout {
				at.stdout.Write(p)
			} else {
				at.stderr.Write(p)
			}
		}
	}()
	return at
}

// status is the daemon's HTTP status in err, 0 for none.
func status(err error) int {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (at *attached) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-at.done:
		if err != nil {
			t.Fatalf("attach stream: %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("attach stream did not end within %v; stdout so far %d bytes", timeout, len(at.stdout.String()))
	}
}

// docker create, attach, start, wait: the attach made before the start
// sees every byte of the run, stdout and stderr apart, then its end;
// wait says how it ended. An arrow created without a start shows as
// created, with an empty log, and goes with rm.
func TestDaemonAttachBeforeStart(t *testing.T) {
	d := startDaemon(t)
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Created and never started.
	idle, err := c.Create(ctx, &api.CreateRequest{Name: "idle", NoStart: true, Config: api.Config{Program: "/bin/busybox", Args: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	if idle.State != api.Created || idle.ShimPid != 0 || !idle.StartedAt.IsZero() {
		t.Fatalf("created with no_start: %+v", idle)
	}
	if a := d.inspect("idle"); a.State != api.Created {
		t.Fatalf("inspect of a created arrow: %s", a.State)
	}
	if ps := d.must("ps"); strings.Contains(ps, "idle") {
		t.Errorf("ps lists a created arrow:\n%s", ps)
	}
	if ps := d.must("ps", "-a"); !strings.Contains(ps, "idle") || !strings.Contains(strings.ToLower(ps), "created") {
		t.Errorf("ps -a:\n%s", ps)
	}
	if logs := d.must("logs", "idle"); logs != "" {
		t.Errorf("logs of an arrow that never ran: %q", logs)
	}
	if w, err := c.Wait(ctx, "idle"); err != nil || w.ExitCode != 0 {
		t.Errorf("wait on a created arrow: %+v, %v", w, err)
	}
	if err := c.Resize(ctx, "idle", 10, 10); status(err) != 409 {
		t.Errorf("resize of an arrow without a terminal: %v, want 409", err)
	}
	d.must("rm", "idle")
	if _, err := c.Inspect(ctx, "idle"); !client.IsNotFound(err) {
		t.Fatalf("inspect after rm: %v", err)
	}

	// 5000 lines at once, then a line on stderr and an exit status.
	const n = 5000
	a, err := c.Create(ctx, &api.CreateRequest{Name: "lines", NoStart: true, Config: api.Config{
		Program: "/bin/busybox", Args: []string{"sh", "-c", fmt.Sprintf("seq 1 %d; echo done >&2; exit 3", n)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if a.State != api.Created {
		t.Fatalf("created: %s", a.State)
	}
	if _, _, err := c.Attach(ctx, "lines"); status(err) != 409 {
		t.Fatalf("attach to a created arrow without next: %v, want 409", err)
	}
	conn, br, err := c.AttachWith(ctx, "lines", client.AttachOptions{Next: true})
	if err != nil {
		t.Fatalf("attach to a created arrow: %v", err)
	}
	defer conn.Close()
	at := readAttach(br)
	if _, err := c.Start(ctx, "lines"); err != nil {
		t.Fatal(err)
	}
	at.wait(t, 2*time.Minute)
	var want strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if got := at.stdout.String(); got != want.String() {
		t.Fatalf("attach stdout: %d bytes, want %d (the %d lines); starts %.40q", len(got), want.Len(), n, got)
	}
	if got := at.stderr.String(); got != "done\n" {
		t.Errorf("attach stderr: %q", got)
	}
	w, err := c.Wait(ctx, "lines")
	if err != nil || w.ExitCode != 3 {
		t.Fatalf("wait: %+v, %v; want exit 3", w, err)
	}

	// Attached again while it is exited: the next start's output comes.
	conn2, br2, err := c.AttachWith(ctx, "lines", client.AttachOptions{Next: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	at2 := readAttach(br2)
	if _, err := c.Start(ctx, "lines"); err != nil {
		t.Fatal(err)
	}
	at2.wait(t, 2*time.Minute)
	if got := at2.stdout.String(); got != want.String() {
		t.Fatalf("second run's attach: %d bytes, want %d", len(got), want.Len())
	}

	// A cold boot: a shim of its own rather than a spare from the pool.
	if _, err := c.Create(ctx, &api.CreateRequest{Name: "cold", NoStart: true, Config: api.Config{
		Program: "/bin/busybox", Args: []string{"sh", "-c", fmt.Sprintf("seq 1 %d; exit 5", n)}, Cold: true,
	}}); err != nil {
		t.Fatal(err)
	}
	conn3, br3, err := c.AttachWith(ctx, "cold", client.AttachOptions{Next: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn3.Close()
	at3 := readAttach(br3)
	if a, err := c.Start(ctx, "cold"); err != nil || a.Spare || a.Template != "" {
		t.Fatalf("cold start: %v (spare %v, template %q)", err, a.Spare, a.Template)
	}
	at3.wait(t, 2*time.Minute)
	if got := at3.stdout.String(); got != want.String() {
		t.Fatalf("cold run's attach: %d bytes, want %d", len(got), want.Len())
	}
	if w, err := c.Wait(ctx, "cold"); err != nil || w.ExitCode != 5 {
		t.Fatalf("wait cold: %+v, %v; want exit 5", w, err)
	}

	// Input through an attach made before the start; with stdin_once
	// its end is the application's (docker run -i < file).
	if _, err := c.Create(ctx, &api.CreateRequest{Name: "cat", NoStart: true, Config: api.Config{
		Program: "/bin/busybox", Args: []string{"sh", "-c", "cat; echo end >&2"}, Stdin: true,
	}}); err != nil {
		t.Fatal(err)
	}
	conn4, br4, err := c.AttachWith(ctx, "cat", client.AttachOptions{Next: true, StdinOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn4.Close()
	at4 := readAttach(br4)
	if _, err := io.WriteString(conn4, "sent before the start\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "cat"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn4, "and after\n"); err != nil {
		t.Fatal(err)
	}
	if err := conn4.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	at4.wait(t, time.Minute)
	if got := at4.stdout.String(); got != "sent before the start\nand after\n" {
		t.Errorf("cat's output: %q", got)
	}
	if got := at4.stderr.String(); got != "end\n" {
		t.Errorf("cat's stderr: %q (its input did not end?)", got)
	}
	if w, err := c.Wait(ctx, "cat"); err != nil || w.ExitCode != 0 {
		t.Fatalf("wait cat: %+v, %v", w, err)
	}
}

// A detached arrow with a terminal: its application runs on a tty, sees
// the size a resize sets, reads what an attach sends, and its output is
// one stream; its exit status comes through wait.
func TestDaemonTTY(t *testing.T) {
	d := startDaemon(t)
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := `test -t 0 && test -t 1 && echo TTY-YES; stty size; ` +
		`while read l; do case "$l" in q) echo bye >&2; exit 4;; esac; echo "got $l"; stty size; done`
	_, err := c.Create(ctx, &api.CreateRequest{Name: "term", NoStart: true, Config: api.Config{
		Program: "/bin/busybox", Args: []string{"sh", "-c", script}, TTY: true, Stdin: true,
	}})
	if err != nil {
		t.Fatalf("create with tty: %v", err)
	}
	// Sized before it starts, as docker create's ConsoleSize is.
	if err := c.Resize(ctx, "term", 20, 60); err != nil {
		t.Fatalf("resize of a created arrow: %v", err)
	}
	conn, br, err := c.AttachWith(ctx, "term", client.AttachOptions{Next: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	at := readAttach(br)
	if _, err := c.Start(ctx, "term"); err != nil {
		t.Fatal(err)
	}
	waitOutput := func(what string, timeout time.Duration, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok(at.stdout.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s; output so far %q", what, at.stdout.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitOutput("tty test", time.Minute, func(s string) bool { return strings.Contains(s, "TTY-YES\r\n") })
	waitOutput("first size", 30*time.Second, func(s string) bool { return strings.Contains(s, "TTY-YES\r\n20 60\r\n") })
	if err := c.Resize(ctx, "term", 33, 101); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if err := c.Resize(ctx, "term", 0, 101); status(err) != 400 {
		t.Errorf("resize to 0 rows: %v, want 400", err)
	}
	// The resize and the input travel apart: ask until the size shows
	// after an answer.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !strings.Contains(at.stdout.String(), fmt.Sprintf("got %d\r\n33 101\r\n", i-1)); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the resize never showed; output %q", at.stdout.String())
		}
		if _, err := fmt.Fprintf(conn, "%d\n", i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := io.WriteString(conn, "q\n"); err != nil {
		t.Fatal(err)
	}
	at.wait(t, time.Minute)
	if at.stderr.String() != "" {
		t.Errorf("a terminal's output came on stderr too: %q", at.stderr.String())
	}
	if !strings.Contains(at.stdout.String(), "bye") {
		t.Errorf("stderr's line is not in the one stream: %q", at.stdout.String())
	}
	w, err := c.Wait(ctx, "term")
	if err != nil || w.ExitCode != 4 {
		t.Fatalf("wait: %+v, %v; want exit 4", w, err)
	}
	if logs := d.must("logs", "term"); !strings.Contains(logs, "TTY-YES") || !strings.Contains(logs, "bye") {
		t.Errorf("log of a tty arrow: %q", logs)
	}
	// A service has no terminal.
	if _, err := c.Create(ctx, &api.CreateRequest{NoStart: true, Config: api.Config{Service: "nginx", TTY: true}}); status(err) != 400 {
		t.Errorf("service with tty: %v, want 400", err)
	}
}
