package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strings"
	"time"
)

// Entry is one file of the archive.
type Entry struct {
	// Path is the absolute guest path.
	Path string
	// Source is the host file a regular file's content is read from;
	// empty for an empty file, and for other types.
	Source string
	// Mode is the type and permission bits: a directory, a regular file,
	// a symlink, or a device node (fs.ModeDevice, with fs.ModeCharDevice
	// for a character device).
	Mode fs.FileMode
	// Target is a symlink's target.
	Target string
	// Major and Minor are a device node's number.
	Major, Minor uint32
	// UID and GID own the file; 0 (root) unless set.
	UID, GID uint32
	// ModTime is the modification time the kernel gives the unpacked
	// file; the epoch when zero.
	ModTime time.Time
}

// newc format constants.
const (
	newcMagic   = "070701"
	headerSize  = 110
	trailerName = "TRAILER!!!"
	// maxFileSize is the largest size a newc header can carry.
	maxFileSize = math.MaxUint32
)

// Unix file type bits, as in the archive's mode field.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
	sISUID  = 0o4000
	sISGID  = 0o2000
	sISVTX  = 0o1000
)

// unixMode converts m to the mode field of a newc header.
func unixMode(m fs.FileMode) (uint32, error) {
	mode := uint32(m.Perm())
	switch {
	case m.IsDir():
		mode |= sIFDIR
	case m.IsRegular():
		mode |= sIFREG
	case m&fs.ModeSymlink != 0:
		mode |= sIFLNK
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		mode |= sIFCHR
	case m&fs.ModeDevice != 0:
		mode |= sIFBLK
	case m&fs.ModeNamedPipe != 0:
		mode |= sIFIFO
	default:
		return 0, fmt.Errorf("unsupported file type %v", m.Type())
	}
	if m&fs.ModeSetuid != 0 {
		mode |= sISUID
	}
	if m&fs.ModeSetgid != 0 {
		mode |= sISGID
	}
	if m&fs.ModeSticky != 0 {
		mode |= sISVTX
	}
	return mode, nil
}

// Writer writes a newc ("070701", SVR4 without checksums) cpio archive,
// the format the Linux kernel unpacks into the initial root file system.
// Each entry is a 110-byte header of hexadecimal fields, the NUL-terminated
// name, padding to a multiple of 4 bytes, the data and padding again. A
// Writer does not check that directories precede their contents: write
// entries in that order (see [Builder]).
type Writer struct {
	bw     *bufio.Writer
	ino    uint32
	closed bool
	err    error
}

// NewWriter returns a Writer writing to w. File data is streamed from the
// sources; when w is an *os.File, large files are copied by the kernel
// (copy_file_range) without passing through the process.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 256<<10)}
}

// WriteEntry appends e. A regular file's content is read from e.Source,
// which must not change size while it is copied.
func (w *Writer) WriteEntry(e Entry) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("cpio: write after close")
	}
	if err := w.writeEntry(e); err != nil {
		w.err = fmt.Errorf("cpio: %s: %w", e.Path, err)
		return w.err
	}
	return nil
}

func (w *Writer) writeEntry(e Entry) error {
	name, err := archiveName(e.Path)
	if err != nil {
		return err
	}
	mode, err := unixMode(e.Mode)
	if err != nil {
		return err
	}
	var (
		size  int64
		nlink uint32 = 1
		data  io.Reader
	)
	switch mode & sIFMT {
	case sIFDIR:
		nlink = 2
	case sIFLNK:
		if e.Target == "" {
			return errors.New("symlink without a target")
		}
		size = int64(len(e.Target))
		data = strings.NewReader(e.Target)
	case sIFREG:
		if e.Source != "" {
			f, err := os.Open(e.Source)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("source %s is not a regular file", e.Source)
			}
			size = fi.Size()
			data = f
		}
	}
	if size > maxFileSize {
		return fmt.Errorf("%d bytes: larger than a newc archive can hold", size)
	}
	w.ino++
	mtime := e.ModTime.Unix()
	if e.ModTime.IsZero() || mtime < 0 {
		mtime = 0
	}
	if mtime > math.MaxUint32 {
		mtime = math.MaxUint32
	}
	var major, minor uint32
	if mode&sIFMT == sIFCHR || mode&sIFMT == sIFBLK {
		major, minor = e.Major, e.Minor
	}
	if err := w.header(name, w.ino, mode, e.UID, e.GID, nlink, uint32(mtime), uint32(size), major, minor); err != nil {
		return err
	}
	if data != nil {
		n, err := io.CopyN(w.bw, data, size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("source %s shrank while archived (%d of %d bytes)", e.Source, n, size)
			}
			return err
		}
	}
	return w.pad(size)
}

// header writes an entry's header and padded name.
func (w *Writer) header(name string, ino, mode, uid, gid, nlink, mtime, size, rmajor, rminor uint32) error {
	var h [headerSize]byte
	copy(h[:], newcMagic)
	fields := [13]uint32{
		ino, mode, uid, gid, nlink, mtime, size,
		0, 0, // devmajor, devminor: the archive's own device, unused
		rmajor, rminor,
		uint32(len(name) + 1), // namesize, with the NUL
		0,                     // check: none in 070701
	}
	const hex = "0123456789ABCDEF"
	for i, v := range fields {
		off := 6 + 8*i
		for j := 7; j >= 0; j-- {
			h[off+j] = hex[v&0xf]
			v >>= 4
		}
	}
	if _, err := w.bw.Write(h[:]); err != nil {
		return err
	}
	if _, err := w.bw.WriteString(name); err != nil {
		return err
	}
	if err := w.bw.WriteByte(0); err != nil {
		return err
	}
	return w.pad(int64(headerSize + len(name) + 1))
}

var zeros [4]byte

// pad writes the zeros that bring n to a multiple of 4.
func (w *Writer) pad(n int64) error {
	if r := n % 4; r != 0 {
		_, err := w.bw.Write(zeros[:4-r])
		return err
	}
	return nil
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.header(trailerName, 0, 0, 0, 0, 1, 0, 0, 0, 0); err != nil {
		return err
	}
	return w.bw.Flush()
}

// archiveName is the name of guest path p in the archive: relative to the
// root, as the kernel's unpacker (and cpio -i) expect.
func archiveName(p string) (string, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("guest path %q: want absolute, clean and not the root", p)
	}
	name := p[1:]
	if name == trailerName {
		return "", fmt.Errorf("guest path %q is the archive trailer's name", p)
	}
	return name, nil
}
