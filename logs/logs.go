// Package logs keeps an arrow's output in a log file and reads it back.
//
// The supervisor of an arrow writes the application's stdout and stderr
// through a [Writer]; the daemon, another process, reads the file with
// [Read], optionally following it as it grows. The two share nothing but the
// files.
//
// # Format
//
// The file holds one JSON object per line, as docker's json-file driver
// writes them:
//
//	{"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}
//
// "log" is one line of output with its newline; a line without one is
// partial: it was cut at the maximum line size (the next entry of the same
// stream continues it) or the output ended without a newline. "time" is in
// UTC, RFC 3339 with nanoseconds, the moment the line was completed.
//
// JSON strings hold Unicode text, so a line that is not valid UTF-8 cannot
// be stored in "log" exactly: for such a line (and only for it) the exact
// bytes, newline included, are in an extra field "b64", standard base64,
// and "log" holds the same line with each invalid byte replaced by U+FFFD,
// so that tools that know only docker's format still show something
// readable. A reader takes "b64" over "log" when both are present.
//
// # Rotation
//
// When the file reaches its maximum size it is renamed path.1 (path.1 to
// path.2, and so on, the oldest beyond the limit removed) and a new path is
// started. [Read] reads the rotated files oldest first, and while it follows
// it moves from a file to the one written after it without losing or
// repeating a line, even when the file is rotated several times while it
// reads.
//
// A line the writer was in the middle of writing when it crashed, or any
// other line that does not parse, is skipped by the reader.
package logs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Stream is one of an application's output streams.
type Stream uint8

// The output streams.
const (
	Stdout Stream = iota
	Stderr
)

// String returns "stdout" or "stderr".
func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "stream(" + strconv.Itoa(int(s)) + ")"
}

// parseStream is the inverse of String for the two streams.
func parseStream(s string) (Stream, bool) {
	switch s {
	case "stdout":
		return Stdout, true
	case "stderr":
		return Stderr, true
	}
	return 0, false
}

// Entry is one line of output.
type Entry struct {
	// Time is when the line was completed (for a partial line, when it was
	// cut or when the output ended).
	Time time.Time
	// Stream is the stream the line was written to.
	Stream Stream
	// Line is the line without its newline.
	Line []byte
	// Partial is set when the line had no newline: it was longer than the
	// maximum line size and continues in the next entry of the same
	// stream, or the output ended in the middle of it.
	Partial bool
}

// record is the JSON form of an Entry, one line of the file.
type record struct {
	Log    *string   `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
	// B64 holds the exact bytes of Log when they are not valid UTF-8.
	// encoding/json writes a []byte as standard base64.
	B64 []byte `json:"b64,omitempty"`
}

// maxRecord bounds the length of a line of the file the reader accepts.
// The writer's lines are far shorter (at most about 6 bytes per byte of
// output for "log" plus 4/3 for "b64"); longer ones are garbage.
const maxRecord = 4 << 20

// parseRecord decodes one line of the file; ok is false for anything but a
// well-formed entry.
func parseRecord(b []byte) (e Entry, ok bool) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.Log == nil || r.Time.IsZero() {
		return Entry{}, false
	}
	s, ok := parseStream(r.Stream)
	if !ok {
		return Entry{}, false
	}
	line := r.B64
	if line == nil {
		line = []byte(*r.Log)
	}
	e = Entry{Time: r.Time, Stream: s, Line: line, Partial: true}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		e.Line, e.Partial = line[:n-1], false
	}
	return e, true
}

// newRecord returns the record of one line; line excludes the newline.
func newRecord(s Stream, line []byte, partial bool, t time.Time) record {
	b := line
	if !partial {
		b = append(line[:len(line):len(line)], '\n')
	}
	str := string(b) // encoding/json replaces invalid bytes with U+FFFD
	r := record{Log: &str, Stream: s.String(), Time: t.UTC()}
	if !utf8.Valid(b) {
		r.B64 = b
	}
	return r
}

// name returns the name of the i-th file of the log at path: path itself
// for 0, path.i for a rotated one.
func name(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// rotated returns the largest index i for which path.i shows in path's
// directory, 0 if none does.
func rotated(path string) (int, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return 0, err
	}
	prefix := filepath.Base(path) + "."
	max := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(rest); err == nil && i > max && strconv.Itoa(i) == rest {
			max = i
		}
	}
	return max, nil
}
