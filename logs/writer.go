package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
	"unicode/utf8"
)

// FileMode is the mode of log files: the output of an application is for
// its owner alone.
const FileMode os.FileMode = 0o600

// The defaults of WriterOptions.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
	DefaultMaxLine  = 16 << 10
)

// WriterOptions configures a Writer. The zero value gives the defaults.
type WriterOptions struct {
	// MaxSize is the size in bytes at which the file is rotated
	// (DefaultMaxSize if 0). A file can exceed it by one line of the file.
	MaxSize int64
	// MaxFiles is the number of files kept, the current one included:
	// path, path.1, ... path.(MaxFiles-1) (DefaultMaxFiles if 0). With 1
	// the file is removed and started anew when it is full.
	MaxFiles int
	// MaxLine is the longest line kept whole (DefaultMaxLine if 0); a
	// longer one is cut into partial entries of at most MaxLine bytes.
	MaxLine int
	// Now returns the time lines are stamped with (time.Now if nil).
	Now func() time.Time
}

// Writer writes the output streams of an application to a log file. Its
// methods and the writers of its streams are safe for concurrent use.
type Writer struct {
	path string
	opts WriterOptions

	mu      sync.Mutex
	f       *os.File // nil after a failed rotation, until reopened
	size    int64
	buf     bytes.Buffer // encoded lines not yet written
	enc     *json.Encoder
	streams [2]*streamWriter
	closed  bool
	top     int // the highest index of a rotated file that may exist
}

// Create opens the log at path for writing, creating it with mode 0600 if
// it does not exist and appending to it if it does: a restarted arrow
// keeps its log. An application's output is its owner's only, so a log
// found with a looser mode (left by an older Arrow) is made 0600 too.
func Create(path string, opts WriterOptions) (*Writer, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Writer{path: path, opts: opts}
	w.enc = json.NewEncoder(&w.buf)
	w.enc.SetEscapeHTML(false)
	for s := range w.streams {
		w.streams[s] = &streamWriter{w: w, stream: Stream(s)}
	}
	top, err := rotated(path)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	w.top = top
	if err := w.open(); err != nil {
		return nil, err
	}
	if w.size >= opts.MaxSize {
		if err := w.rotate(); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	return w, nil
}

// open opens the file at w.path for appending. If the file ends in the
// middle of a line, left by a writer that crashed, a newline ends that line
// so that the next one is not glued to it (the reader skips the torn one).
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, FileMode)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	if fi.Mode().Perm() != FileMode {
		if err := f.Chmod(FileMode); err != nil {
			f.Close()
			return fmt.Errorf("open log %s: %w", w.path, err)
		}
	}
	size := fi.Size()
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			f.Close()
			return fmt.Errorf("open log %s: %w", w.path, err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return fmt.Errorf("write log %s: %w", w.path, err)
			}
			size++
		}
	}
	w.f, w.size = f, size
	return nil
}

// Stream returns the writer of stream s (Stdout or Stderr). It splits what
// it is given into lines, keeping an incomplete line until its newline
// comes or it reaches MaxLine bytes. A Write reports an error when the file
// cannot be written; what it was given is consumed either way.
func (w *Writer) Stream(s Stream) io.Writer {
	if int(s) >= len(w.streams) {
		panic("logs: no stream " + s.String())
	}
	return w.streams[s]
}

// Close writes the incomplete lines of both streams as partial entries and
// closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	now := w.opts.Now()
	var errs []error
	for _, sw := range w.streams {
		if len(sw.line) > 0 {
			errs = append(errs, w.add(sw.stream, sw.line, true, now))
			sw.line = nil
		}
	}
	errs = append(errs, w.flush())
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log: %w", err))
		}
		w.f = nil
	}
	return errors.Join(errs...)
}

// add encodes one entry and writes the pending ones, rotating first, when
// the file would reach MaxSize.
func (w *Writer) add(s Stream, line []byte, partial bool, t time.Time) error {
	if err := w.enc.Encode(newRecord(s, line, partial, t)); err != nil {
		return fmt.Errorf("encode log line: %w", err)
	}
	if w.size+int64(w.buf.Len()) < w.opts.MaxSize {
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	return w.rotate()
}

// flush writes the encoded lines to the file.
func (w *Writer) flush() error {
	if w.buf.Len() == 0 {
		return nil
	}
	defer w.buf.Reset() // on error too: the lines are dropped, not retried forever
	if w.f == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(w.buf.Bytes())
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write log %s: %w", w.path, err)
	}
	return nil
}

// rotate renames path.(n-1) to path.n, ... path to path.1, removing the
// oldest (and any beyond MaxFiles left by an earlier writer), and starts a
// new path.
//
// A reader relies on the order: the renames go from the oldest file to the
// newest, each file only ever moves to the next higher index, and the new
// file is created after the current one has been renamed and will not be
// written again.
func (w *Writer) rotate() error {
	last := w.opts.MaxFiles - 1
	for i := max(w.top, last); i >= last; i-- {
		if err := os.Remove(name(w.path, i)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	w.top = min(w.top, last)
	for i := min(w.top, last-1); i >= 0; i-- {
		if err := os.Rename(name(w.path, i), name(w.path, i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	w.top = min(w.top+1, last)
	old := w.f
	w.f = nil
	err := w.open()
	if old != nil {
		old.Close()
	}
	return err
}

// streamWriter is the io.Writer of one stream.
type streamWriter struct {
	w      *Writer
	stream Stream
	line   []byte // the incomplete line, guarded by w.mu
}

// Write implements io.Writer.
func (sw *streamWriter) Write(p []byte) (int, error) {
	w := sw.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("write log %s: %w", w.path, os.ErrClosed)
	}
	n := len(p)
	now := w.opts.Now()
	var errs []error
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			sw.line = append(sw.line, p...)
			errs = append(errs, sw.cut(now))
			break
		}
		sw.line = append(sw.line, p[:i]...)
		errs = append(errs, sw.cut(now), w.add(sw.stream, sw.line, false, now))
		sw.line = sw.line[:0]
		p = p[i+1:]
	}
	errs = append(errs, w.flush())
	return n, errors.Join(errs...)
}

// cut writes partial entries of MaxLine bytes while the incomplete line is
// longer than that. It cuts before a UTF-8 sequence rather than in it, so
// that text stays text.
func (sw *streamWriter) cut(now time.Time) error {
	max := sw.w.opts.MaxLine
	var errs []error
	off := 0
	for len(sw.line)-off > max {
		end := off + max // sw.line[end] exists
		// A valid sequence that starts in the last bytes and ends after
		// them goes to the next entry.
		for k := end - 1; k > off && k > end-utf8.UTFMax; k-- {
			if utf8.RuneStart(sw.line[k]) {
				if r, n := utf8.DecodeRune(sw.line[k:]); r != utf8.RuneError && k+n > end {
					end = k
				}
				break
			}
		}
		errs = append(errs, sw.w.add(sw.stream, sw.line[off:end], true, now))
		off = end
	}
	if off > 0 {
		sw.line = sw.line[:copy(sw.line, sw.line[off:])]
	}
	return errors.Join(errs...)
}
