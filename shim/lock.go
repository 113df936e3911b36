package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the file of an arrow's (or a spare's) directory that its
// shim holds locked (flock, exclusive) for as long as it lives, with its
// PID written in it.
//
// Why a lock and not only a PID: the kernel releases it when the shim
// dies, however it dies, so it tells a live shim from a dead one without
// trusting a PID that may have been reused; and since a second shim cannot
// take it, no shim can ever start over a live one for the same arrow.
const LockFile = "shim.lock"

// errHeld means another live process holds a directory's shim lock.
var errHeld = errors.New("another shim supervises it")

// lockDir takes dir's shim lock for this process and writes its PID in
// it. The lock is held until the returned file is closed or the process
// ends. It fails, without touching anything, when a live shim holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	// O_CLOEXEC (os.OpenFile's default): QEMU and other children must
	// not inherit the lock, or it would outlive the shim.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid, _ := Holder(dir)
			return nil, fmt.Errorf("%s: %w (pid %d)", dir, errHeld, pid)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// Holder returns the PID of the live shim that holds dir's lock; 0 when
// none does (none was ever started there, or it ended). A holder whose
// PID is not written yet (it has just taken the lock) is reported as -1.
//
// The probe takes a shared lock for an instant: a shim that tries to lock
// dir at that very instant fails to start, which is the safe way round.
func Holder(dir string) (int, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("shim lock of %s: %w", dir, err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		return 0, nil // closing f releases it
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, fmt.Errorf("shim lock of %s: %w", dir, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return -1, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return -1, nil
	}
	return pid, nil
}
