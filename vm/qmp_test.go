package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQEMU answers QMP on conn as QEMU does: a greeting, then one reply
// per command carrying the command's id, with an event before the reply
// to "stop".
func fakeQEMU(t *testing.T, conn net.Conn) {
	t.Helper()
	go func() {
		defer conn.Close()
		w := bufio.NewWriter(conn)
		send := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
		send(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req qmpRequest
			if json.Unmarshal(sc.Bytes(), &req) != nil || req.ID == nil {
				return
			}
			id := `, "id": ` + string(req.ID) + `}`
			switch req.Execute {
			case "qmp_capabilities":
				send(`{"return": {}` + id)
			case "query-status":
				send(`{"return": {"status": "running", "running": true}` + id)
			case "stop":
				send(`{"event": "STOP", "data": {}, "timestamp": {"seconds": 1}}`)
				send(`{"return": {}` + id)
			case "quit":
				return // QEMU closes the monitor as it exits
			default:
				send(`{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}` + id)
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

// qmpRequest is a command as the fake QEMU side reads it.
type qmpRequest struct {
	Execute   string          `json:"execute"`
	ID        json.RawMessage `json:"id"`
	Arguments struct {
		N int `json:"n"`
	} `json:"arguments"`
}

// TestQMPDesync plays a QEMU that answers out of turn: replies without an
// id, with ids the client never sent, with the id of a command not yet
// issued, a late reply to a command that timed out, greetings and events
// in between. Each command must get exactly the reply carrying its id.
func TestQMPDesync(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	go func() {
		defer guest.Close()
		w := bufio.NewWriter(guest)
		send := func(s string) { w.WriteString(s + "\n"); w.Flush() }
		send(`{"QMP": {"version": {}, "capabilities": []}}`)
		sc := bufio.NewScanner(guest)
		var late []byte
		for sc.Scan() {
			var req qmpRequest
			if json.Unmarshal(sc.Bytes(), &req) != nil {
				return
			}
			if req.Execute == "slow" {
				// Answer only with the next command.
				late = req.ID
				continue
			}
			if late != nil {
				send(`{"return": {"for": "slow"}, "id": ` + string(late) + `}`)
				late = nil
			}
			id := string(req.ID)
			for _, decoy := range []string{
				`{"return": {"for": "nobody"}}`,
				`{"return": {"for": "foreign"}, "id": "qemu-7"}`,
				`{"return": {"for": "number"}, "id": 1}`,
				`{"return": {"for": "next"}, "id": "arrow-` + strconv.Itoa(req.Arguments.N+100) + `"}`,
				`{"error": {"class": "GenericError", "desc": "decoy"}, "id": "arrow-0"}`,
				`{"QMP": {"version": {}, "capabilities": []}}`,
				`{"event": "STOP", "data": {}}`,
				`{"id": ` + id + `}`,
				`{}`,
			} {
				send(decoy)
			}
			send(`{"return": {"for": ` + id + `, "n": ` + strconv.Itoa(req.Arguments.N) + `}, "id": ` + id + `}`)
			// A second reply with the same id: the command already has
			// its answer, and the next command must not take this one.
			send(`{"return": {"for": "duplicate"}, "id": ` + id + `}`)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := NewQMP(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 20; n++ {
		if n%5 == 0 {
			sctx, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := q.Execute(sctx, "slow", map[string]int{"n": n})
			scancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("slow command: %v, want a timeout", err)
			}
			continue
		}
		ret, err := q.Execute(ctx, "cmd", map[string]int{"n": n})
		if err != nil {
			t.Fatalf("command %d: %v", n, err)
		}
		var got struct {
			For string `json:"for"`
			N   int    `json:"n"`
		}
		if err := json.Unmarshal(ret, &got); err != nil || got.N != n || !strings.HasPrefix(got.For, "arrow-") {
			t.Fatalf("command %d got reply %s, meant for another", n, ret)
		}
	}
}

// TestQMPHostile checks that a peer sending garbage or overlong lines, or
// hanging up, makes commands fail rather than hang.
func TestQMPHostile(t *testing.T) {
	greeting := `{"QMP": {"version": {}, "capabilities": []}}` + "\n"
	for _, tc := range []struct {
		name  string
		after string // sent after the reply to qmp_capabilities
	}{
		{"garbage", "\x00\xffnot json\n"},
		{"huge line", `{"return": "` + strings.Repeat("A", maxQMPLine) + `"}` + "\n"},
		{"huge line without newline", strings.Repeat("{", maxQMPLine+10)},
		{"hang up", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := net.Pipe()
			defer host.Close()
			go func() {
				defer guest.Close()
				guest.Write([]byte(greeting))
				sc := bufio.NewScanner(guest)
				if !sc.Scan() {
					return
				}
				var req qmpRequest
				json.Unmarshal(sc.Bytes(), &req)
				guest.Write([]byte(`{"return": {}, "id": ` + string(req.ID) + "}\n"))
				go io.Copy(io.Discard, guest)
				guest.Write([]byte(tc.after))
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			q, err := NewQMP(ctx, host)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := q.Execute(ctx, "query-status", nil); err == nil || ctx.Err() != nil {
				t.Fatalf("command on a hostile monitor: %v (ctx %v)", err, ctx.Err())
			}
		})
	}
}

// TestQMPStuckWriter checks that a QEMU that stops reading commands does
// not hold the caller past its context, and that the monitor is then
// refused (half a command may be on the wire).
func TestQMPStuckWriter(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	defer guest.Close()
	go func() {
		guest.Write([]byte(`{"QMP": {}}` + "\n"))
		sc := bufio.NewScanner(guest)
		sc.Scan()
		var req qmpRequest
		json.Unmarshal(sc.Bytes(), &req)
		guest.Write([]byte(`{"return": {}, "id": ` + string(req.ID) + "}\n"))
		// Never read again.
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := NewQMP(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel()
	if _, err := q.Execute(sctx, "stop", nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("send to a stuck monitor: %v, want a deadline error", err)
	}
	if _, err := q.Execute(ctx, "cont", nil); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("command after a failed send: %v", err)
	}
}

// FuzzQMPReplies feeds arbitrary bytes as QEMU's side of the monitor while
// commands are issued. Whatever the bytes, the client must not panic or
// hang, must bound the lines it buffers, and a command that gets a reply
// must get one carrying its own id.
func FuzzQMPReplies(f *testing.F) {
	g := `{"QMP": {"version": {}, "capabilities": []}}` + "\n"
	for _, s := range []string{
		g + `{"return": {}, "id": "arrow-1"}` + "\n" + `{"return": {"a": 1}, "id": "arrow-2"}` + "\n",
		g + `{"return": {}, "id": "arrow-1"}` + "\n" + `{"return": {"a": 1}, "id": "arrow-3"}` + "\n" + `{"return": 2, "id": "arrow-2"}` + "\n",
		g + `{"return": {}}` + "\n" + `{"return": {}, "id": "arrow-1"}` + "\n" + `{"error": {"class": "X", "desc": "y"}, "id": "arrow-2"}` + "\n",
		g + `{"return": {}, "id": "arrow-1"}` + "\n" + g + `{"event": "STOP"}` + "\n" + `{"return": [], "id": "arrow-2"}` + "\n" + `{"return": [], "id": "arrow-2"}` + "\n",
		g + `{"return": {}, "id": "arrow-1"}` + "\n" + `{"return": "` + strings.Repeat("x", 300) + `", "id": "arrow-2"}` + "\n",
		g + `{"return": {}, "id": "arrow-1"}` + "\n" + `{"return": {}, "id": 2}` + "\n" + `{"return": {}, "ID": "arrow-2"}` + "\n",
		g + "\x00garbage\n",
		`{"return": {}, "id": "arrow-1"}` + "\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxLine = 256
		host, guest := net.Pipe()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		// The fake QEMU side: one goroutine reads commands and notes the
		// id each was sent with; another writes data a line at a time,
		// holding back while no command awaits a reply so that replies
		// meet pending commands.
		var (
			mu       sync.Mutex
			cond     = sync.NewCond(&mu)
			idOf     = map[int]string{} // command number -> id sent
			read     int                // commands read
			answered int                // commands returned
			done     bool               // no more commands
		)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(guest)
			for sc.Scan() {
				var req qmpRequest
				if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
					t.Errorf("client sent %q: %v", sc.Bytes(), err)
					return
				}
				var id string
				if err := json.Unmarshal(req.ID, &id); err != nil || id == "" {
					t.Errorf("command without a string id: %s", sc.Bytes())
				}
				mu.Lock()
				if req.Execute != "qmp_capabilities" {
					idOf[req.Arguments.N] = id
				}
				read++
				cond.Broadcast()
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			defer guest.Close()
			for i, line := range bytes.SplitAfter(data, []byte("\n")) {
				if i > 0 {
					mu.Lock()
					for read <= answered && !done {
						cond.Wait()
					}
					mu.Unlock()
				}
				if _, err := guest.Write(line); err != nil {
					return // the client stopped reading
				}
			}
		}()

		type result struct {
			n   int
			ret json.RawMessage
			err error
		}
		var results []result
		q, err := newQMP(ctx, host, maxLine)
		if err == nil {
			mu.Lock()
			answered++ // qmp_capabilities
			mu.Unlock()
			for n := 1; n <= 4; n++ {
				ret, err := q.Execute(ctx, "cmd", map[string]int{"n": n})
				results = append(results, result{n, ret, err})
				mu.Lock()
				answered++
				cond.Broadcast()
				mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("client hung: %v", ctx.Err())
		}
		mu.Lock()
		done = true
		cond.Broadcast()
		mu.Unlock()
		host.Close()
		wg.Wait()

		// The replies data holds, by id.
		byID := map[string][]qmpMessage{}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var m qmpMessage
			var id string
			if json.Unmarshal(line, &m) == nil && json.Unmarshal(m.ID, &id) == nil {
				byID[id] = append(byID[id], m)
			}
		}
		for _, r := range results {
			var qe *QMPError
			if r.err != nil && !errors.As(r.err, &qe) {
				continue // no reply: the monitor failed
			}
			id, ok := idOf[r.n]
			if !ok {
				t.Fatalf("command %d got a reply but was never sent", r.n)
			}
			matched := false
			for _, m := range byID[id] {
				switch {
				case qe != nil:
					matched = matched || m.Error != nil && *m.Error == *qe
				default:
					matched = matched || m.Error == nil && bytes.Equal(m.Return, r.ret)
				}
			}
			if !matched {
				t.Fatalf("command %d (id %s) got %s / %v, which no reply with its id holds", r.n, id, r.ret, r.err)
			}
		}
	})
}
