package closure

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// elfSpec describes a synthetic ELF object for hermetic tests: just the
// headers and dynamic section the resolver reads, nothing runnable.
type elfSpec struct {
	class    elf.Class // ELFCLASS64 unless set
	machine  elf.Machine
	typ      elf.Type
	interp   string
	needed   []string
	rpath    string
	runpath  string
	nodeflib bool
	static   bool // no PT_DYNAMIC at all
}

// mkELF builds the object: the ELF header, program headers (PT_INTERP,
// one PT_LOAD mapping the whole file at address 0, PT_DYNAMIC), the
// interpreter path, the string table and the dynamic entries.
func mkELF(s elfSpec) []byte {
	if s.class == 0 {
		s.class = elf.ELFCLASS64
	}
	if s.machine == 0 {
		s.machine = elf.EM_X86_64
	}
	if s.typ == 0 {
		s.typ = elf.ET_DYN
	}
	is64 := s.class == elf.ELFCLASS64
	ehsize, phentsize, dynent := 52, 32, 8
	if is64 {
		ehsize, phentsize, dynent = 64, 56, 16
	}
	nph := 1 // PT_LOAD
	if s.interp != "" {
		nph++
	}
	if !s.static {
		nph++
	}
	off := ehsize + nph*phentsize
	interpOff := off
	if s.interp != "" {
		off += len(s.interp) + 1
	}
	// String table.
	var strtab bytes.Buffer
	strtab.WriteByte(0)
	addStr := func(v string) uint64 {
		o := uint64(strtab.Len())
		strtab.WriteString(v)
		strtab.WriteByte(0)
		return o
	}
	type dyn struct{ tag, val uint64 }
	var dyns []dyn
	for _, n := range s.needed {
		dyns = append(dyns, dyn{uint64(elf.DT_NEEDED), addStr(n)})
	}
	if s.rpath != "" {
		dyns = append(dyns, dyn{uint64(elf.DT_RPATH), addStr(s.rpath)})
	}
	if s.runpath != "" {
		dyns = append(dyns, dyn{uint64(elf.DT_RUNPATH), addStr(s.runpath)})
	}
	if s.nodeflib {
		dyns = append(dyns, dyn{uint64(elf.DT_FLAGS_1), uint64(elf.DF_1_NODEFLIB)})
	}
	strOff := off
	off += strtab.Len()
	for off%8 != 0 {
		off++
	}
	dyns = append(dyns,
		dyn{uint64(elf.DT_STRTAB), uint64(strOff)},
		dyn{uint64(elf.DT_STRSZ), uint64(strtab.Len())},
		dyn{uint64(elf.DT_NULL), 0})
	dynOff := off
	total := dynOff
	if !s.static {
		total += len(dyns) * dynent
	}

	out := make([]byte, total)
	le := binary.LittleEndian
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS] = byte(s.class)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(out[16:], uint16(s.typ))
	le.PutUint16(out[18:], uint16(s.machine))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	if is64 {
		le.PutUint64(out[32:], uint64(ehsize)) // e_phoff
		le.PutUint16(out[52:], uint16(ehsize))
		le.PutUint16(out[54:], uint16(phentsize))
		le.PutUint16(out[56:], uint16(nph))
	} else {
		le.PutUint32(out[28:], uint32(ehsize))
		le.PutUint16(out[40:], uint16(ehsize))
		le.PutUint16(out[42:], uint16(phentsize))
		le.PutUint16(out[44:], uint16(nph))
	}
	ph := ehsize
	putPhdr := func(typ elf.ProgType, o, size int) {
		b := out[ph:]
		if is64 {
			le.PutUint32(b[0:], uint32(typ))
			le.PutUint64(b[8:], uint64(o))  // p_offset
			le.PutUint64(b[16:], uint64(o)) // p_vaddr
			le.PutUint64(b[24:], uint64(o)) // p_paddr
			le.PutUint64(b[32:], uint64(size))
			le.PutUint64(b[40:], uint64(size))
		} else {
			le.PutUint32(b[0:], uint32(typ))
			le.PutUint32(b[4:], uint32(o))
			le.PutUint32(b[8:], uint32(o))
			le.PutUint32(b[12:], uint32(o))
			le.PutUint32(b[16:], uint32(size))
			le.PutUint32(b[20:], uint32(size))
		}
		ph += phentsize
	}
	if s.interp != "" {
		putPhdr(elf.PT_INTERP, interpOff, len(s.interp)+1)
		copy(out[interpOff:], s.interp)
	}
	putPhdr(elf.PT_LOAD, 0, total)
	if !s.static {
		putPhdr(elf.PT_DYNAMIC, dynOff, len(dyns)*dynent)
		copy(out[strOff:], strtab.Bytes())
		for i, d := range dyns {
			b := out[dynOff+i*dynent:]
			if is64 {
				le.PutUint64(b[0:], d.tag)
				le.PutUint64(b[8:], d.val)
			} else {
				le.PutUint32(b[0:], uint32(d.tag))
				le.PutUint32(b[4:], uint32(d.val))
			}
		}
	}
	return out
}

// ldEntry is one library of a synthetic ld.so.cache.
type ldEntry struct {
	name, path string
	flags      int32
	hwcap      uint64
}

// flagsX8664 are the flags ldconfig gives x86-64 libc6 libraries.
const flagsX8664 = 0x0303

// mkLDCache builds a "glibc-ld.so.cache1.1" file.
func mkLDCache(entries []ldEntry) []byte {
	le := binary.LittleEndian
	hdr := make([]byte, ldCacheHeaderNew)
	copy(hdr, ldCacheMagicNew+ldCacheVersion)
	strBase := ldCacheHeaderNew + len(entries)*ldCacheEntryNew
	var strs bytes.Buffer
	ents := make([]byte, len(entries)*ldCacheEntryNew)
	for i, e := range entries {
		k := strBase + strs.Len()
		strs.WriteString(e.name + "\x00")
		v := strBase + strs.Len()
		strs.WriteString(e.path + "\x00")
		b := ents[i*ldCacheEntryNew:]
		le.PutUint32(b[0:], uint32(e.flags))
		le.PutUint32(b[4:], uint32(k))
		le.PutUint32(b[8:], uint32(v))
		le.PutUint64(b[16:], e.hwcap)
	}
	le.PutUint32(hdr[20:], uint32(len(entries)))
	le.PutUint32(hdr[24:], uint32(strs.Len()))
	hdr[28] = 2 // little endian
	out := append(hdr, ents...)
	return append(out, strs.Bytes()...)
}

// tree builds a fake host root for hermetic tests.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree {
	t.Helper()
	return &tree{t: t, root: t.TempDir()}
}

// file writes a file at guest path p.
func (tr *tree) file(p string, data []byte, mode os.FileMode) {
	tr.t.Helper()
	hp := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(hp, data, mode); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(hp, mode); err != nil {
		tr.t.Fatal(err)
	}
}

// elf writes a synthetic ELF object at guest path p.
func (tr *tree) elf(p string, s elfSpec) {
	tr.t.Helper()
	tr.file(p, mkELF(s), 0o755)
}

// link makes a symlink at guest path p.
func (tr *tree) link(target, p string) {
	tr.t.Helper()
	hp := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, hp); err != nil {
		tr.t.Fatal(err)
	}
}

// dir makes a directory at guest path p.
func (tr *tree) dir(p string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.root, p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

// merged lays out a merged-/usr root with an x86-64 loader, libc and the
// symlinks Debian has: /bin, /lib, /lib64 into /usr, and
// /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.
func (tr *tree) merged() {
	tr.t.Helper()
	tr.dir("/usr/bin")
	tr.dir("/usr/lib/x86_64-linux-gnu")
	tr.dir("/usr/lib64")
	tr.link("usr/bin", "/bin")
	tr.link("usr/lib", "/lib")
	tr.link("usr/lib64", "/lib64")
	tr.elf("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", elfSpec{static: true})
	tr.link("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2")
	tr.elf("/usr/lib/x86_64-linux-gnu/libc.so.6", elfSpec{needed: []string{"ld-linux-x86-64.so.2"}})
}

// interp is the x86-64 loader's PT_INTERP.
const interp = "/lib64/ld-linux-x86-64.so.2"

// paths returns the set's paths with a one-letter type: "f /usr/bin/x",
// "l /bin -> usr/bin", "d /usr".
func paths(s *Set) map[string]string {
	out := make(map[string]string)
	for _, f := range s.Files() {
		switch {
		case f.IsDir():
			out[f.Path] = "d"
		case f.IsSymlink():
			out[f.Path] = "l " + f.Target
		default:
			out[f.Path] = "f"
		}
	}
	return out
}
