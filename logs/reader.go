package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// ReadOptions selects what Read passes on.
type ReadOptions struct {
	// Since drops the entries older than it (none if zero).
	Since time.Time
	// Tail keeps only the last Tail entries of those already written
	// (after Since is applied), counted across the rotated files; -1 (any
	// negative number) keeps them all, 0 none. Entries that come while
	// following are all passed on.
	Tail int
	// Follow keeps reading as the log grows, until the context is done.
	Follow bool
}

// How often a follower looks for new lines, and how often it looks again
// for the file that follows one that was rotated.
const (
	pollInterval   = 50 * time.Millisecond
	rotateInterval = 5 * time.Millisecond
)

// How many times a reader looks for the file written after a rotated one
// before it takes the next older one that exists (a gap left by a writer
// that crashed while it rotated) and, when not following, before it gives
// up.
const (
	gapTries    = 200
	giveUpTries = 400
)

// Read calls fn for the entries of the log at path, oldest first: those of
// the rotated files, then those of path. It skips lines that do not parse
// and a last line not yet complete. fn may keep the entries it is given; an
// error from it ends Read and is returned as is.
//
// With opts.Follow it then waits for new entries, following the log across
// rotations, until ctx is done, and returns ctx.Err(); a log that does not
// exist yet is waited for. Without it, Read returns at the end of the log,
// and an error wrapping fs.ErrNotExist if there is no log.
func Read(ctx context.Context, path string, opts ReadOptions, fn func(Entry) error) error {
	r := &reader{ctx: ctx, path: path, opts: opts, fn: fn, chunk: make([]byte, 64<<10)}
	defer r.closeFile()
	if opts.Tail >= 0 {
		r.tail = newRing(opts.Tail)
	}
	for r.f == nil {
		f, fi, err := r.openOldest()
		if err != nil {
			return err
		}
		if f != nil {
			r.f, r.fi = f, fi
			break
		}
		if !opts.Follow {
			return fmt.Errorf("read log %s: %w", path, fs.ErrNotExist)
		}
		if err := r.catchUp(); err != nil {
			return err
		}
		if err := r.sleep(pollInterval); err != nil {
			return err
		}
	}
	for {
		n, err := r.drain()
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err == nil && os.SameFile(st, r.fi) {
			if !r.live {
				if err := r.catchUp(); err != nil {
					return err
				}
				if !opts.Follow {
					return nil
				}
			}
			if n == 0 {
				if err := r.sleep(pollInterval); err != nil {
					return err
				}
			}
			continue
		}
		// The file was rotated, or removed. It is no longer written to now
		// that the rename shows: read what is left of it, forget a torn
		// last line, and go on with the file written after it.
		if _, err := r.drain(); err != nil {
			return err
		}
		f, fi, err := r.successor()
		if err != nil {
			return err
		}
		if f == nil { // not following, and no file comes after this one
			return r.catchUp()
		}
		if f != r.f {
			r.closeFile()
			r.f, r.fi = f, fi
			r.pending, r.skipping = r.pending[:0], false
		}
	}
}

// reader is the state of one Read.
type reader struct {
	ctx  context.Context
	path string
	opts ReadOptions
	fn   func(Entry) error

	f        *os.File
	fi       os.FileInfo // of f
	chunk    []byte
	pending  []byte // the start of a line of f not read to its end yet
	skipping bool   // in the rest of an overlong line
	tail     *ring  // entries kept for Tail until caught up; nil for all
	live     bool   // caught up: entries go straight to fn
}

func (r *reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// sleep waits for d or for the context to be done.
func (r *reader) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// catchUp passes on the entries kept for Tail; from then on entries go
// straight to fn.
func (r *reader) catchUp() error {
	if r.live {
		return nil
	}
	r.live = true
	if r.tail == nil {
		return nil
	}
	entries := r.tail.entries()
	r.tail = nil
	for _, e := range entries {
		if err := r.fn(e); err != nil {
			return err
		}
	}
	return nil
}

// openOldest opens the oldest file of the log, if there is one.
//
// It takes the one with the highest index, and makes sure that no
// rotation made another older one appear above it meanwhile: after the open
// it looks for a file at the next two indices, in that order (a rotation
// under way leaves a gap of one), then checks that the one opened did not
// move, which means that the others moved at most once.
func (r *reader) openOldest() (*os.File, os.FileInfo, error) {
	for try := 0; ; try++ {
		if err := r.ctx.Err(); err != nil {
			return nil, nil, err
		}
		max, err := rotated(r.path)
		if err != nil {
			if os.IsNotExist(err) {
				return nil, nil, nil
			}
			return nil, nil, fmt.Errorf("read log %s: %w", r.path, err)
		}
		i := max + 1
		var f *os.File
		for ; i >= 0; i-- {
			if f, err = os.Open(name(r.path, i)); err == nil {
				break
			}
			if !os.IsNotExist(err) {
				return nil, nil, fmt.Errorf("read log: %w", err)
			}
		}
		if f == nil {
			return nil, nil, nil
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("read log: %w", err)
		}
		if try >= giveUpTries || !exists(name(r.path, i+1)) && !exists(name(r.path, i+2)) && isFile(name(r.path, i), fi) {
			return f, fi, nil
		}
		f.Close()
	}
}

// exists reports whether there is a file at path.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// isFile reports whether fi is the file at path.
func isFile(path string, fi os.FileInfo) bool {
	st, err := os.Stat(path)
	return err == nil && os.SameFile(st, fi)
}

// successor opens the file written after r.f, which has been rotated. It
// returns a nil file when not following and none comes, and r.f if it
// turns out not to have been rotated.
//
// The file written after r.f was path when r.f was renamed path.1, and
// every rotation moves each file one index up, oldest first. So if r.f is
// path.k, the next file is path.(k-1): to be sure it did not move on and
// leave another in its place while it was opened, path.k is looked at
// again after the open: if it is still r.f, the file opened is the right
// one. If r.f is gone, removed as the oldest, the oldest that exists is the
// next best (what was between them is lost: the reader was too slow).
func (r *reader) successor() (*os.File, os.FileInfo, error) {
	for try := 0; ; try++ {
		if err := r.ctx.Err(); err != nil {
			return nil, nil, err
		}
		if !r.opts.Follow && try >= giveUpTries {
			return nil, nil, nil
		}
		if try > 0 {
			if err := r.sleep(rotateInterval); err != nil {
				return nil, nil, err
			}
		}
		k, err := r.index()
		if err != nil {
			return nil, nil, err
		}
		var f *os.File
		switch {
		case k < 0 && r.removed():
			f, fi, err := r.openOldest()
			if err != nil {
				return nil, nil, err
			}
			if f == nil {
				continue
			}
			if os.SameFile(fi, r.fi) {
				f.Close()
				continue
			}
			return f, fi, nil
		case k < 0:
			continue // r.f is moving; look again
		case k == 0:
			// Still path after all (the look at it failed, or it was
			// renamed back, not by a Writer): carry on with it.
			return r.f, r.fi, nil
		}
		next := k - 1
		if try >= gapTries {
			// path.(k-1) has been missing for long: take the next that is
			// there.
			for next >= 0 {
				if _, err := os.Stat(name(r.path, next)); err == nil {
					break
				}
				next--
			}
			if next < 0 {
				continue
			}
		}
		f, err = os.Open(name(r.path, next))
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		st, serr := os.Stat(name(r.path, k))
		if err == nil && serr == nil && os.SameFile(st, r.fi) && !os.SameFile(fi, r.fi) {
			return f, fi, nil
		}
		f.Close()
	}
}

// index returns the index of r.f among the files of the log, -1 if it is
// not found.
func (r *reader) index() (int, error) {
	max, err := rotated(r.path)
	if err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("read log %s: %w", r.path, err)
	}
	// Files only move up: looking from the bottom, r.f is found wherever
	// it moves while we look, unless it is removed.
	for i := 0; i <= max+1; i++ {
		if st, err := os.Stat(name(r.path, i)); err == nil && os.SameFile(st, r.fi) {
			return i, nil
		}
	}
	return -1, nil
}

// removed reports whether r.f has no name left.
func (r *reader) removed() bool {
	fi, err := r.f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}

// drain reads r.f to its end, passing on the complete lines, and returns
// the number of bytes read.
func (r *reader) drain() (int, error) {
	total := 0
	for {
		if err := r.ctx.Err(); err != nil {
			return total, err
		}
		n, err := r.f.Read(r.chunk)
		total += n
		if perr := r.process(r.chunk[:n]); perr != nil {
			return total, perr
		}
		if err == io.EOF || n == 0 {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read log %s: %w", r.f.Name(), err)
		}
	}
}

// process splits what was read into lines and handles the complete ones.
func (r *reader) process(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !r.skipping {
				r.pending = append(r.pending, data...)
				if len(r.pending) > maxRecord {
					r.pending, r.skipping = r.pending[:0], true
				}
			}
			return nil
		}
		if !r.skipping {
			line := data[:i]
			if len(r.pending) > 0 {
				r.pending = append(r.pending, line...)
				line = r.pending
			}
			if err := r.handle(line); err != nil {
				return err
			}
		}
		r.pending, r.skipping = r.pending[:0], false
		data = data[i+1:]
	}
	return nil
}

// handle passes on the entry of one line, if it is one that is wanted.
func (r *reader) handle(line []byte) error {
	e, ok := parseRecord(line)
	if !ok || e.Time.Before(r.opts.Since) {
		return nil
	}
	if !r.live && r.tail != nil {
		r.tail.add(e)
		return nil
	}
	return r.fn(e)
}

// ring keeps the last n entries added.
type ring struct {
	n    int
	buf  []Entry // grows up to n, then wraps
	next int     // where the next entry goes once buf is full
}

func newRing(n int) *ring { return &ring{n: n} }

func (q *ring) add(e Entry) {
	switch {
	case q.n == 0:
	case len(q.buf) < q.n:
		q.buf = append(q.buf, e)
	default:
		q.buf[q.next] = e
		q.next = (q.next + 1) % q.n
	}
}

// entries returns the entries kept, oldest first.
func (q *ring) entries() []Entry {
	return append(q.buf[q.next:len(q.buf):len(q.buf)], q.buf[:q.next]...)
}
