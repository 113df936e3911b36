package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeQEMU answers QMP on conn as QEMU does: a greeting, then one reply
// per command, with an event before the reply to "stop".
func fakeQEMU(t *testing.T, conn net.Conn) {
	t.Helper()
	go func() {
		defer conn.Close()
		w := bufio.NewWriter(conn)
		send := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
		send(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute string `json:"execute"`
			}
			if json.Unmarshal(sc.Bytes(), &req) != nil {
				return
			}
			switch req.Execute {
			case "qmp_capabilities":
				send(`{"return": {}}`)
			case "query-status":
				send(`{"return": {"status": "running", "running": true}}`)
			case "stop":
				send(`{"event": "STOP", "data": {}, "timestamp": {"seconds": 1}}`)
				send(`{"return": {}}`)
			case "quit":
				return // QEMU closes the monitor as it exits
			default:
				send(`{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}}`)
			}
		}
	}()
}

func TestQMP(t *testing.T) {
	host, guest := net.Pipe()
	fakeQEMU(t, guest)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := NewQMP(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil || !strings.Contains(string(ret), `"running"`) {
		t.Fatalf("query-status: %s, %v", ret, err)
	}
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-q.Events():
		if ev.Name != "STOP" {
			t.Errorf("event %q, want STOP", ev.Name)
		}
	case <-ctx.Done():
		t.Fatal("no STOP event")
	}
	_, err = q.Execute(ctx, "frobnicate", map[string]any{"x": 1})
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("unknown command: %v", err)
	}
	// QEMU gone: commands fail instead of hanging.
	if _, err := q.Execute(ctx, "quit", nil); err == nil {
		t.Fatal("quit on a closed monitor succeeded")
	}
	if _, err := q.Execute(ctx, "query-status", nil); err == nil || ctx.Err() != nil {
		t.Fatalf("after close: %v (ctx %v)", err, ctx.Err())
	}
}

func TestQMPNoGreeting(t *testing.T) {
	host, guest := net.Pipe()
	go func() { guest.Write([]byte("{\"return\": {}}\n")); guest.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewQMP(ctx, host); err == nil {
		t.Fatal("accepted a peer without a QMP greeting")
	}
}
