package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// follower reads a log with Follow in the background.
type follower struct {
	entries chan Entry
	cancel  context.CancelFunc
	done    chan error
}

func follow(t *testing.T, path string, opts ReadOptions) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &follower{entries: make(chan Entry, 1<<16), cancel: cancel, done: make(chan error, 1)}
	opts.Follow = true
	go func() {
		fl.done <- Read(ctx, path, opts, func(e Entry) error {
			fl.entries <- e
			return nil
		})
	}()
	t.Cleanup(func() { fl.stop(t) })
	return fl
}

// next returns the next entry, failing the test if none comes in time.
func (fl *follower) next(t *testing.T) Entry {
	t.Helper()
	select {
	case e := <-fl.entries:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no entry came")
		return Entry{}
	}
}

// none checks that no entry comes for a while.
func (fl *follower) none(t *testing.T) {
	t.Helper()
	select {
	case e := <-fl.entries:
		t.Errorf("unexpected entry %s %q", e.Stream, e.Line)
	case <-time.After(300 * time.Millisecond):
	}
}

func (fl *follower) stop(t *testing.T) {
	if fl.cancel == nil {
		return
	}
	fl.cancel()
	fl.cancel = nil
	if err := <-fl.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Read returned %v, want context.Canceled", err)
	}
}

func TestSinceTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	now := func() time.Time { i++; return base.Add(time.Duration(i) * time.Second) }
	// About 4 entries a file, all kept: the entries are spread over files.
	w, err := Create(path, WriterOptions{MaxSize: 300, MaxFiles: 100, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 20; n++ { // line n is stamped base+n s
		fmt.Fprintf(w.Stream(Stream(n%2)), "%d\n", n)
	}
	w.Close()
	if _, err := os.Stat(path + ".4"); err != nil {
		t.Fatalf("not rotated enough: %v", err)
	}
	at := func(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }
	for _, tc := range []struct {
		name     string
		opts     ReadOptions
		from, to int
	}{
		{"all", ReadOptions{Tail: -1}, 1, 20},
		{"tail 0", ReadOptions{Tail: 0}, 0, -1},
		{"tail 1", ReadOptions{Tail: 1}, 20, 20},
		{"tail 7 over files", ReadOptions{Tail: 7}, 14, 20},
		{"tail more than all", ReadOptions{Tail: 100}, 1, 20},
		{"since", ReadOptions{Since: at(15), Tail: -1}, 15, 20},
		{"since in another zone", ReadOptions{Since: at(15).In(time.FixedZone("Y", -7200)), Tail: -1}, 15, 20},
		{"since and tail", ReadOptions{Since: at(5), Tail: 2}, 19, 20},
		{"tail larger than since leaves", ReadOptions{Since: at(18), Tail: 5}, 18, 20},
		{"since before all", ReadOptions{Since: at(-100), Tail: -1}, 1, 20},
		{"since after all", ReadOptions{Since: at(21), Tail: -1}, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, path, tc.opts)
			var want []line
			for n := tc.from; n <= tc.to; n++ {
				want = append(want, line{Stream(n % 2), strconv.Itoa(n), false})
			}
			checkLines(t, lines(got), want)
			for _, e := range got {
				if n, _ := strconv.Atoi(string(e.Line)); !e.Time.Equal(at(n)) {
					t.Errorf("line %d stamped %v", n, e.Time)
				}
			}
		})
	}
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int // lines written before following
		tail   int
		skip   int // of the lines before, how many are not passed on
	}{
		{"all", 3, -1, 0},
		{"only new", 3, 0, 3},
		{"tail", 5, 2, 3},
		{"empty log", 0, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			out := w.Stream(Stdout)
			for n := 1; n <= tc.before; n++ {
				fmt.Fprintf(out, "%d\n", n)
			}
			fl := follow(t, path, ReadOptions{Tail: tc.tail})
			for n := tc.skip + 1; n <= tc.before; n++ {
				if e := fl.next(t); string(e.Line) != strconv.Itoa(n) {
					t.Fatalf("got %q, want %d", e.Line, n)
				}
			}
			fl.none(t)
			// Written while it follows, including a line over two writes.
			out.Write([]byte("new 1\nnew"))
			if e := fl.next(t); string(e.Line) != "new 1" || e.Partial {
				t.Fatalf("got %q, want %q", e.Line, "new 1")
			}
			fl.none(t)
			out.Write([]byte(" 2\n"))
			if e := fl.next(t); string(e.Line) != "new 2" || e.Partial {
				t.Fatalf("got %q, want %q", e.Line, "new 2")
			}
			w.Close()
			fl.none(t)
		})
	}
}

func TestFollowBeforeCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	fl := follow(t, path, ReadOptions{Tail: 10})
	time.Sleep(100 * time.Millisecond)
	w, err := Create(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Stream(Stderr).Write([]byte("hello\n"))
	if e := fl.next(t); string(e.Line) != "hello" || e.Stream != Stderr {
		t.Fatalf("got %s %q", e.Stream, e.Line)
	}
}

func TestReadMissing(t *testing.T) {
	err := Read(context.Background(), filepath.Join(t.TempDir(), "log"), ReadOptions{Tail: -1}, func(Entry) error { return nil })
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}

func TestReadStopsOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, _ := Create(path, WriterOptions{})
	w.Stream(Stdout).Write([]byte("a\nb\nc\n"))
	w.Close()
	stop := errors.New("stop")
	n := 0
	err := Read(context.Background(), path, ReadOptions{Tail: -1, Follow: true}, func(Entry) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("Read returned %v after %d entries", err, n)
	}
}

// TestFollowRotation writes numbered lines to both streams from two
// goroutines into a log rotated every few lines, and checks that a follower
// sees each stream's lines exactly once and in order.
func TestFollowRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxSize  int64
		maxFiles int
		lines    int
		pace     time.Duration // between the lines of a stream
	}{
		// All files kept: however fast the writer, nothing may be lost.
		{"fast writer", 1000, 100000, 2000, 0},
		{"one line a file", 1, 100000, 150, 0},
		// Files removed: the follower has to keep up with a slower writer.
		{"three files", 16000, 3, 500, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, WriterOptions{MaxSize: tc.maxSize, MaxFiles: tc.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			// Some lines before it starts, and one started.
			fmt.Fprintf(w.Stream(Stdout), "stdout 1\nstdout 2\nstd")
			fl := follow(t, path, ReadOptions{Tail: -1})
			var wg sync.WaitGroup
			for s := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st := Stream(s)
					n := 1
					if st == Stdout {
						fmt.Fprintf(w.Stream(st), "out 3\n")
						n = 4
					}
					for ; n <= tc.lines; n++ {
						// A line in two writes now and then.
						text := fmt.Sprintf("%s %d\n", st, n)
						if n%7 == 0 {
							w.Stream(st).Write([]byte(text[:3]))
							w.Stream(st).Write([]byte(text[3:]))
						} else {
							w.Stream(st).Write([]byte(text))
						}
						if tc.pace > 0 {
							time.Sleep(tc.pace)
						}
					}
				}()
			}
			next := [2]int{1, 1}
			for next[0] <= tc.lines || next[1] <= tc.lines {
				e := fl.next(t)
				want := fmt.Sprintf("%s %d", e.Stream, next[e.Stream])
				if string(e.Line) != want || e.Partial {
					t.Fatalf("got %q (partial %v), want %q", e.Line, e.Partial, want)
				}
				next[e.Stream]++
			}
			wg.Wait()
			w.Close()
			fl.none(t)
			if names, _ := filepath.Glob(path + "*"); len(names) > tc.maxFiles {
				t.Errorf("%d files", len(names))
			}
		})
	}
}

func TestCorruptLines(t *testing.T) {
	good := func(s string) string {
		return `{"log":"` + s + `\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n"
	}
	for _, tc := range []struct {
		name    string
		content string
		want    []string
	}{
		{"garbage", "garbage\n" + good("a"), []string{"a"}},
		{"truncated JSON", good("a")[:30] + "\n" + good("b"), []string{"b"}},
		{"empty lines", "\n\n" + good("a") + "\n" + good("b"), []string{"a", "b"}},
		{"empty object", "{}\n" + good("a"), []string{"a"}},
		{"unknown stream", strings.Replace(good("x"), "stdout", "stdin", 1) + good("a"), []string{"a"}},
		{"bad time", strings.Replace(good("x"), "2024", "yesterday", 1) + good("a"), []string{"a"}},
		{"no time", `{"log":"x\n","stream":"stdout"}` + "\n" + good("a"), []string{"a"}},
		{"null log", `{"log":null,"stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n" + good("a"), []string{"a"}},
		{"log not a string", `{"log":1,"stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n" + good("a"), []string{"a"}},
		{"bad base64", `{"log":"x\n","b64":"!!","stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n" + good("a"), []string{"a"}},
		{"binary", "\x00\x01\xff{\"log\n" + good("a"), []string{"a"}},
		{"array", "[1,2]\n" + good("a"), []string{"a"}},
		{"two objects on a line", strings.TrimSuffix(good("x"), "\n") + good("y") + good("a"), []string{"a"}},
		{"overlong line", strings.Repeat("x", maxRecord+10) + "\n" + good("a"), []string{"a"}},
		{"overlong line over reads", strings.Repeat("{", 3*maxRecord) + "\n" + good("a"), []string{"a"}},
		{"torn last line", good("a") + good("b")[:20], []string{"a"}},
		{"last line without newline", good("a") + strings.TrimSuffix(good("b"), "\n"), []string{"a"}},
		{"unknown fields", `{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:00Z","attrs":{"x":1}}` + "\n", []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range readAll(t, path, ReadOptions{Tail: -1}) {
				got = append(got, string(e.Line))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFollowTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	rec := `{"log":"b\n","stream":"stderr","time":"2024-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(path, []byte(strings.Replace(rec, `"b`, `"a`, 1)+rec[:25]), 0o600); err != nil {
		t.Fatal(err)
	}
	fl := follow(t, path, ReadOptions{Tail: -1})
	if e := fl.next(t); string(e.Line) != "a" {
		t.Fatalf("got %q", e.Line)
	}
	fl.none(t)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(rec[25:])
	if e := fl.next(t); string(e.Line) != "b" || e.Stream != Stderr {
		t.Fatalf("got %s %q", e.Stream, e.Line)
	}
}

// TestRotatedGap reads a log whose writer crashed while it rotated, leaving
// a gap in the numbering.
func TestRotatedGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	rec := func(s string) string {
		return `{"log":"` + s + `\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n"
	}
	os.WriteFile(path+".3", []byte(rec("a")), 0o600)
	os.WriteFile(path+".1", []byte(rec("b")+`{"log":"x`), 0o600)
	os.WriteFile(path, []byte(rec("c")), 0o600)
	var got []string
	for _, e := range readAll(t, path, ReadOptions{Tail: -1}) {
		got = append(got, string(e.Line))
	}
	if fmt.Sprint(got) != "[a b c]" {
		t.Errorf("got %q", got)
	}
}

func FuzzRead(f *testing.F) {
	rec := `{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n"
	f.Add([]byte(rec+rec), uint16(0), int8(-1))
	f.Add([]byte(rec+rec+"garbage\n"), uint16(len(rec)), int8(1))
	f.Add([]byte(`{"log":"\ufffd","b64":"/w==","stream":"stderr","time":"2024-01-01T00:00:00.5+02:00"}`+"\n"+rec[:10]), uint16(3), int8(0))
	f.Add([]byte("\n\n{}\n[]\nnull\n\"x\"\n"), uint16(5), int8(2))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, tail int8) {
		// The first part goes to a rotated file, the rest to the current.
		path := filepath.Join(t.TempDir(), "log")
		cut := int(split) % (len(data) + 1)
		if cut > 0 {
			if err := os.WriteFile(path+".1", data[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(path, data[cut:], 0o600); err != nil {
			t.Fatal(err)
		}
		var got []Entry
		err := Read(context.Background(), path, ReadOptions{Tail: int(tail)}, func(e Entry) error {
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if tail >= 0 && len(got) > int(tail) {
			t.Errorf("%d entries, tail %d", len(got), tail)
		}
		if len(got) > bytes.Count(data, []byte("\n")) {
			t.Errorf("%d entries from %d lines", len(got), bytes.Count(data, []byte("\n")))
		}
		for _, e := range got {
			if e.Stream != Stdout && e.Stream != Stderr || e.Time.IsZero() {
				t.Errorf("bad entry %+v", e)
			}
		}
	})
}
