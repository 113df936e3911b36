package initramfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// record is one entry read back from an archive.
type record struct {
	name                 string
	ino, mode, uid, gid  uint32
	nlink, mtime, size   uint32
	rmajor, rminor       uint32
	data                 []byte
	headerOff, dataOff   int64 // where the header and the data start
	namesize, checkField uint32
}

// readArchive parses a newc archive strictly: magic, hexadecimal fields,
// NUL-terminated names, 4-byte alignment of header+name and of data, and a
// trailer at the end followed by nothing but padding.
func readArchive(t *testing.T, b []byte) []record {
	t.Helper()
	var out []record
	off := int64(0)
	for {
		if off%4 != 0 {
			t.Fatalf("header at %d: not 4-byte aligned", off)
		}
		if int64(len(b)) < off+headerSize {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+headerSize]
		if string(h[:6]) != newcMagic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		r := record{ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], size: f[6],
			rmajor: f[9], rminor: f[10], namesize: f[11], checkField: f[12], headerOff: off}
		nameStart := off + headerSize
		nameEnd := nameStart + int64(r.namesize)
		if int64(len(b)) < nameEnd || r.namesize == 0 || b[nameEnd-1] != 0 {
			t.Fatalf("bad name at %d", nameStart)
		}
		r.name = string(b[nameStart : nameEnd-1])
		if bytes.IndexByte([]byte(r.name), 0) >= 0 {
			t.Fatalf("NUL inside name %q", r.name)
		}
		dataOff := (nameEnd + 3) &^ 3
		for _, c := range b[nameEnd:dataOff] {
			if c != 0 {
				t.Fatalf("%s: non-zero name padding", r.name)
			}
		}
		r.dataOff = dataOff
		end := dataOff + int64(r.size)
		if int64(len(b)) < end {
			t.Fatalf("%s: data truncated", r.name)
		}
		r.data = b[dataOff:end]
		next := (end + 3) &^ 3
		if int64(len(b)) < next {
			t.Fatalf("%s: data padding truncated", r.name)
		}
		for _, c := range b[end:next] {
			if c != 0 {
				t.Fatalf("%s: non-zero data padding", r.name)
			}
		}
		off = next
		if r.name == trailerName {
			if off != int64(len(b)) {
				t.Fatalf("%d bytes after the trailer", int64(len(b))-off)
			}
			return out
		}
		out = append(out, r)
	}
}

// byName indexes records.
func byName(rs []record) map[string]record {
	m := make(map[string]record)
	for _, r := range rs {
		m[r.name] = r
	}
	return m
}

// extract unpacks records under dir the way the kernel does, creating
// device nodes (needs root) only when mknod is set.
func extract(t *testing.T, rs []record, dir string, mknod bool) {
	t.Helper()
	for _, r := range rs {
		p := filepath.Join(dir, r.name)
		perm := os.FileMode(r.mode & 0o7777)
		switch r.mode & sIFMT {
		case sIFDIR:
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(p, perm) // after the contents
		case sIFREG:
			if err := os.WriteFile(p, r.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Chmod(p, r.mode&0o7777); err != nil {
				t.Fatal(err)
			}
		case sIFLNK:
			if err := os.Symlink(string(r.data), p); err != nil {
				t.Fatal(err)
			}
		case sIFCHR:
			if mknod {
				dev := int(r.rmajor<<8 | r.rminor)
				if err := syscall.Mknod(p, r.mode, dev); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("%s: unexpected mode %o", r.name, r.mode)
		}
	}
}

func describe(r record) string {
	return fmt.Sprintf("%s mode=%o nlink=%d size=%d rdev=%d:%d", r.name, r.mode, r.nlink, r.size, r.rmajor, r.rminor)
}
