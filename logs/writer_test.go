package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// line is an entry as the tests compare them.
type line struct {
	stream  Stream
	text    string
	partial bool
}

func (l line) String() string {
	p := ""
	if l.partial {
		p = " (partial)"
	}
	return fmt.Sprintf("%s %q%s", l.stream, l.text, p)
}

// readAll reads the log at path without following and returns its entries.
func readAll(t *testing.T, path string, opts ReadOptions) []Entry {
	t.Helper()
	var got []Entry
	err := Read(context.Background(), path, opts, func(e Entry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return got
}

func lines(entries []Entry) []line {
	var l []line
	for _, e := range entries {
		l = append(l, line{e.Stream, string(e.Line), e.Partial})
	}
	return l
}

func checkLines(t *testing.T, got, want []line) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got\n\t%v\nwant\n\t%v", got, want)
	}
}

// write is one Write to a stream.
type write struct {
	stream Stream
	data   string
}

func TestLines(t *testing.T) {
	o, e := Stdout, Stderr
	for _, tc := range []struct {
		name   string
		writes []write
		want   []line
	}{
		{"one line", []write{{o, "hello\n"}}, []line{{o, "hello", false}}},
		{"lines in one write", []write{{o, "a\nb\n\nc\n"}},
			[]line{{o, "a", false}, {o, "b", false}, {o, "", false}, {o, "c", false}}},
		{"line over writes", []write{{o, "he"}, {o, "l"}, {o, "lo\nwor"}, {o, "ld\n"}},
			[]line{{o, "hello", false}, {o, "world", false}}},
		{"no newline at the end", []write{{o, "a\nbc"}},
			[]line{{o, "a", false}, {o, "bc", true}}},
		{"carriage return kept", []write{{o, "a\r\n"}}, []line{{o, "a\r", false}}},
		{"exactly max", []write{{o, "12345678\n"}}, []line{{o, "12345678", false}}},
		{"exactly max then newline later", []write{{o, "12345678"}, {o, "\n"}},
			[]line{{o, "12345678", false}}},
		{"max plus one", []write{{o, "123456789\n"}},
			[]line{{o, "12345678", true}, {o, "9", false}}},
		{"very long over writes", []write{{o, "1234"}, {o, "5678abcd"}, {o, "efghij\nk"}},
			[]line{{o, "12345678", true}, {o, "abcdefgh", true}, {o, "ij", false}, {o, "k", true}}},
		{"long line of exactly twice max", []write{{o, "12345678abcdefgh\n"}},
			[]line{{o, "12345678", true}, {o, "abcdefgh", false}}},
		{"UTF-8 sequence fits", []write{{o, "123456é8\n"}}, // é is 2 bytes
			[]line{{o, "123456é", true}, {o, "8", false}}},
		{"cut before a UTF-8 sequence", []write{{o, "1234567é8\n"}},
			[]line{{o, "1234567", true}, {o, "é8", false}}},
		{"cut before a 3-byte sequence", []write{{o, "123456€\n"}},
			[]line{{o, "123456", true}, {o, "€", false}}},
		{"cut in invalid UTF-8", []write{{o, "1234567\x80\x80\n"}},
			[]line{{o, "1234567\x80", true}, {o, "\x80", false}}},
		{"cut at a UTF-8 boundary", []write{{o, "1234567é\n"}},
			[]line{{o, "1234567", true}, {o, "é", false}}},
		{"interleaved streams", []write{{o, "out "}, {e, "err 1\n"}, {o, "1\n"}, {e, "err"}, {o, "out 2\n"}, {e, " 2\n"}},
			[]line{{e, "err 1", false}, {o, "out 1", false}, {o, "out 2", false}, {e, "err 2", false}}},
		{"both streams left partial", []write{{o, "x"}, {e, "y"}},
			[]line{{o, "x", true}, {e, "y", true}}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, WriterOptions{MaxLine: 8})
			if err != nil {
				t.Fatal(err)
			}
			for _, wr := range tc.writes {
				if n, err := w.Stream(wr.stream).Write([]byte(wr.data)); err != nil || n != len(wr.data) {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkLines(t, lines(readAll(t, path, ReadOptions{Tail: -1})), tc.want)
		})
	}
}

func TestFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	now := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.FixedZone("X", 3600))
	w, err := Create(path, WriterOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w.Stream(Stdout), "a <b> & \"c\" \\ \t\x01\n")
	w.Stream(Stderr).Write([]byte("bad \xff\xfe\n"))
	w.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"log":"a <b> & \"c\" \\ \t\u0001\n","stream":"stdout","time":"2024-05-01T09:00:00.123456789Z"}
{"log":"bad \ufffd\ufffd\n","stream":"stderr","time":"2024-05-01T09:00:00.123456789Z","b64":"YmFkIP/+Cg=="}
`
	if string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
	// Docker's fields are there for tools that know only them.
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["log"] == nil || m["stream"] == nil || m["time"] == nil {
			t.Errorf("%s: %v %v", l, m, err)
		}
	}
}

func TestInvalidUTF8RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, data string
	}{
		{"invalid bytes", "\xff\xfe\xfd"},
		{"truncated sequence", "abc\xc3"},
		{"surrogate", "\xed\xa0\x80"},
		{"overlong", "\xc0\xaf"},
		{"nul and controls", "\x00\x1b[31mred\x1b[0m"},
		{"mixed", "ok é \xe2\x82 €"},
		{"replacement char itself", "\ufffd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			w.Stream(Stdout).Write([]byte(tc.data + "\n" + tc.data))
			w.Close()
			got := readAll(t, path, ReadOptions{Tail: -1})
			checkLines(t, lines(got), []line{{Stdout, tc.data, false}, {Stdout, tc.data, true}})
		})
	}
}

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxFiles int
		lines    int
	}{
		{"three files", 3, 103},
		{"one file", 1, 103},
		{"five files", 5, 103},
		{"fewer lines than files", 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "log")
			// Each line of the file is about 80 bytes: 4 or 5 per file.
			w, err := Create(path, WriterOptions{MaxSize: 350, MaxFiles: tc.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tc.lines; i++ {
				fmt.Fprintf(w.Stream(Stdout), "line %d\n", i)
			}
			w.Close()

			names, _ := filepath.Glob(path + "*")
			var want []string
			for i := 0; i < tc.maxFiles; i++ {
				if _, err := os.Stat(name(path, i)); err == nil {
					want = append(want, name(path, i))
				}
			}
			if len(names) != len(want) || len(names) > tc.maxFiles {
				t.Errorf("files %v, want at most %d", names, tc.maxFiles)
			}
			for i := 0; i < tc.maxFiles-1 && tc.lines > 10*tc.maxFiles; i++ {
				if fi, err := os.Stat(name(path, i+1)); err != nil || fi.Size() < 350 {
					t.Errorf("rotated file %d: %v", i+1, err)
				}
			}
			// The entries read are the last ones written, in order.
			got := readAll(t, path, ReadOptions{Tail: -1})
			if len(got) == 0 {
				t.Fatal("nothing read")
			}
			first := tc.lines - len(got) + 1
			for i, e := range got {
				if want := fmt.Sprintf("line %d", first+i); string(e.Line) != want {
					t.Fatalf("entry %d is %q, want %q", i, e.Line, want)
				}
			}
			if tc.lines > 10*tc.maxFiles && len(got) < 4*(tc.maxFiles-1) {
				t.Errorf("only %d entries read", len(got))
			}
		})
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	for _, s := range []string{"first\n", "second\n"} {
		w, err := Create(path, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Stream(Stdout).Write([]byte(s))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A writer that crashed in the middle of a line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"log":"torn\n","stream":"std`)
	f.Close()
	w, err := Create(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Stream(Stderr).Write([]byte("third\n"))
	w.Close()
	checkLines(t, lines(readAll(t, path, ReadOptions{Tail: -1})),
		[]line{{Stdout, "first", false}, {Stdout, "second", false}, {Stderr, "third", false}})
}

func TestReopenFullRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, WriterOptions{MaxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("a full file was not rotated: %v %v", fi, err)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Error(err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "log"), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := w.Stream(Stdout).Write([]byte("x\n")); err == nil {
		t.Error("write after Close succeeded")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
