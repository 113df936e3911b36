package store

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// flock is a held flock on a lock file.
type flock struct{ f *os.File }

// lockFile takes a flock on path (how is unix.LOCK_SH or unix.LOCK_EX),
// waiting until it is free or ctx is done.
func lockFile(ctx context.Context, path string, how int) (*flock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := waitLock(ctx, func() error { return unix.Flock(int(f.Fd()), how|unix.LOCK_NB) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &flock{f: f}, nil
}

// tryLockFile takes a flock on path if it is free now.
func tryLockFile(path string, how int) (*flock, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return &flock{f: f}, true, nil
}

// unlock releases the lock.
func (l *flock) unlock() {
	if l != nil {
		l.f.Close()
	}
}

// lockRange takes an exclusive open-file-description lock on one byte of
// path, at an offset derived from key: a lock per key in a single file.
func lockRange(ctx context.Context, path, key string) (*flock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	var off int64
	if b, err := hex.DecodeString(key); err == nil && len(b) >= 8 {
		off = int64(binary.BigEndian.Uint64(b) >> 2)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	err = waitLock(ctx, func() error { return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk) })
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &flock{f: f}, nil
}

// waitLock retries try while the lock is held elsewhere, backing off up to
// 100ms, until ctx is done.
func waitLock(ctx context.Context, try func() error) error {
	delay := time.Millisecond
	for {
		err := try()
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}
