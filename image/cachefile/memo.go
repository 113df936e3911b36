package cachefile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Memo remembers small values derived from files (a file's hash, a
// program's version line) across processes, in files under Dir whose names
// are Prefix and a hash of the value's key. Values are written with
// [WriteFile], so a reader sees a whole value or none. A memo is best
// effort: a value that cannot be written is derived again next time. The
// zero Memo remembers nothing.
type Memo struct {
	Dir    string
	Prefix string
}

// maxMemo bounds a memoized value: memos hold hashes and version lines.
const maxMemo = 4096

func (m Memo) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(m.Dir, m.Prefix+hex.EncodeToString(sum[:16]))
}

// Get returns the value memoized under key.
func (m Memo) Get(key string) (string, bool) {
	if m.Dir == "" {
		return "", false
	}
	b, err := os.ReadFile(m.path(key))
	if err != nil || len(b) == 0 || len(b) > maxMemo {
		return "", false
	}
	return string(b), true
}

// Put memoizes v under key.
func (m Memo) Put(key, v string) {
	if m.Dir == "" || len(v) == 0 || len(v) > maxMemo || PrivateDir(m.Dir) != nil {
		return
	}
	_ = WriteFile(m.path(key), []byte(v), FileMode)
}

// FileSum returns the SHA-256 of the file at path, in hex, memoized under
// the file's identity: its path, device, inode, size, and modification and
// change times. A file whose identity is unchanged has the same content,
// so the kernel, arrow-init and QEMU are hashed once, not on every run.
func (m Memo) FileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	key := fmt.Sprintf("sha256\x00%s\x00%d %d %d %d.%d %d.%d", path, st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	if v, ok := m.Get(key); ok && len(v) == 2*sha256.Size {
		return v, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	m.Put(key, sum)
	return sum, nil
}
