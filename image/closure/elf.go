package closure

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on what is read from an ELF file: generous for real objects, small
// enough that a corrupt header cannot make the resolver allocate gigabytes.
const (
	maxDynamicSize = 1 << 20
	maxStrtabSize  = 64 << 20
	maxInterpSize  = 4096
)

// elfInfo is what the dynamic loader reads from an ELF object to load its
// dependencies.
type elfInfo struct {
	class   elf.Class
	data    elf.Data
	machine elf.Machine
	typ     elf.Type
	interp  string   // PT_INTERP, empty for static and shared objects
	needed  []string // DT_NEEDED, in order
	rpath   []string // DT_RPATH, split; ignored when hasRunpath
	runpath []string // DT_RUNPATH, split
	// hasRunpath is set when the object has a DT_RUNPATH, which disables
	// its DT_RPATH.
	hasRunpath bool
	// nodeflib is DF_1_NODEFLIB: the object's dependencies are not looked
	// up in ld.so.cache or the default directories.
	nodeflib bool
}

// errNotELF is returned by readELF for a file without the ELF magic.
var errNotELF = errors.New("not an ELF file")

// prog is a program header.
type prog struct {
	typ                elf.ProgType
	off, vaddr, filesz uint64
}

// readELF reads the loader's view of the ELF object in r, of size bytes:
// the ELF header, the program headers, PT_INTERP and the PT_DYNAMIC
// segment, as ld.so does (section headers are not needed, and stripped
// objects may have none). Every offset and size is checked against size: a
// corrupt file gives an error, never a panic or an allocation larger than
// the file.
func readELF(r io.ReaderAt, size int64) (*elfInfo, error) {
	f, info, err := openELF(r, size)
	if err != nil {
		return nil, err
	}
	progs, err := f.programHeaders()
	if err != nil {
		return nil, err
	}
	if info.interp, err = f.interp(progs); err != nil {
		return nil, err
	}
	dyn, err := f.dynamic(progs)
	if err != nil {
		return nil, err
	}
	if dyn == nil {
		return info, nil // static
	}
	info.nodeflib = dyn.nodeflib
	info.hasRunpath = dyn.haveRunpath
	if len(dyn.needed) == 0 && !dyn.haveRpath && !dyn.haveRunpath {
		return info, nil
	}
	tab, err := f.strtab(progs, dyn)
	if err != nil {
		return nil, err
	}
	if err := dyn.resolve(info, tab); err != nil {
		return nil, err
	}
	return info, nil
}

// elfFile is an ELF object being read: its first block, the byte order and
// class its header gives, and where its program headers are.
type elfFile struct {
	r io.ReaderAt
	// size is the file's size: every offset and length is checked
	// against it before anything is read or allocated.
	size uint64
	// hdr is the first up to 4096 bytes, which hold the ELF header and,
	// in most objects, the program headers and PT_INTERP.
	hdr   []byte
	order binary.ByteOrder
	is64  bool
	// phoff, phentsize and phnum locate the program headers.
	phoff, phentsize, phnum uint64
}

// openELF reads the ELF header of the object in r, of size bytes: its
// identity (class, data encoding, type, machine) and where its program
// headers are.
func openELF(r io.ReaderAt, size int64) (*elfFile, *elfInfo, error) {
	var buf [4096]byte
	n, err := r.ReadAt(buf[:], 0)
	if n < len(buf) && err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	hdr := buf[:n]
	if len(hdr) < 4 || string(hdr[:4]) != elf.ELFMAG {
		return nil, nil, errNotELF
	}
	if len(hdr) < 52 {
		return nil, nil, errors.New("ELF header truncated")
	}
	f := &elfFile{r: r, size: uint64(max(size, 0)), hdr: hdr}
	info := &elfInfo{class: elf.Class(hdr[elf.EI_CLASS]), data: elf.Data(hdr[elf.EI_DATA])}
	switch info.data {
	case elf.ELFDATA2LSB:
		f.order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		f.order = binary.BigEndian
	default:
		return nil, nil, fmt.Errorf("unknown ELF data encoding %d", info.data)
	}
	info.typ = elf.Type(f.order.Uint16(hdr[16:]))
	info.machine = elf.Machine(f.order.Uint16(hdr[18:]))
	switch info.class {
	case elf.ELFCLASS64:
		if len(hdr) < 64 {
			return nil, nil, errors.New("ELF header truncated")
		}
		f.is64 = true
		f.phoff = f.order.Uint64(hdr[32:])
		f.phentsize = uint64(f.order.Uint16(hdr[54:]))
		f.phnum = uint64(f.order.Uint16(hdr[56:]))
	case elf.ELFCLASS32:
		f.phoff = uint64(f.order.Uint32(hdr[28:]))
		f.phentsize = uint64(f.order.Uint16(hdr[42:]))
		f.phnum = uint64(f.order.Uint16(hdr[44:]))
	default:
		return nil, nil, fmt.Errorf("unknown ELF class %d", info.class)
	}
	return f, info, nil
}

// programHeaders reads the program headers; none for an object without
// segments, which has nothing to load.
func (f *elfFile) programHeaders() ([]prog, error) {
	if f.phnum == 0 {
		return nil, nil
	}
	wantPhentsize := uint64(32)
	if f.is64 {
		wantPhentsize = 56
	}
	phsize := f.phnum * f.phentsize
	if f.phentsize < wantPhentsize || f.phoff > f.size || phsize > f.size-f.phoff {
		return nil, fmt.Errorf("bad program headers (%d of %d bytes at %#x)", f.phnum, f.phentsize, f.phoff)
	}
	var ph []byte
	if f.phoff+phsize <= uint64(len(f.hdr)) {
		ph = f.hdr[f.phoff : f.phoff+phsize]
	} else {
		ph = make([]byte, phsize)
		if _, err := f.r.ReadAt(ph, int64(f.phoff)); err != nil {
			return nil, fmt.Errorf("read program headers: %w", err)
		}
	}
	progs := make([]prog, 0, f.phnum)
	for i := uint64(0); i < f.phnum; i++ {
		e := ph[i*f.phentsize:]
		var p prog
		p.typ = elf.ProgType(f.order.Uint32(e[0:]))
		if f.is64 {
			p.off = f.order.Uint64(e[8:])
			p.vaddr = f.order.Uint64(e[16:])
			p.filesz = f.order.Uint64(e[32:])
		} else {
			p.off = uint64(f.order.Uint32(e[4:]))
			p.vaddr = uint64(f.order.Uint32(e[8:]))
			p.filesz = uint64(f.order.Uint32(e[16:]))
		}
		progs = append(progs, p)
	}
	return progs, nil
}

// read reads n bytes at off, what naming them in errors; from the first
// block when they are in it.
func (f *elfFile) read(off, n uint64, what string) ([]byte, error) {
	if off > f.size || n > f.size-off {
		return nil, fmt.Errorf("%s: %d bytes at %#x past the end of the file", what, n, off)
	}
	b := make([]byte, n)
	if off+n <= uint64(len(f.hdr)) {
		copy(b, f.hdr[off:])
		return b, nil
	}
	m, err := f.r.ReadAt(b, int64(off))
	if uint64(m) < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return b, nil
}

// interp returns the program interpreter PT_INTERP names, the last one's
// if there are several; empty for static and shared objects.
func (f *elfFile) interp(progs []prog) (string, error) {
	var interp string
	for _, p := range progs {
		if p.typ != elf.PT_INTERP {
			continue
		}
		if p.filesz == 0 || p.filesz > maxInterpSize {
			return "", fmt.Errorf("PT_INTERP of %d bytes", p.filesz)
		}
		b, err := f.read(p.off, p.filesz, "PT_INTERP")
		if err != nil {
			return "", err
		}
		interp = string(bytes.TrimRight(b, "\x00"))
	}
	return interp, nil
}

// dynamicInfo is what the loader takes from the dynamic section: the
// string table's address and size, and offsets into it.
type dynamicInfo struct {
	strtab, strsz                    uint64
	haveStrtab                       bool
	needed                           []uint64
	rpath, runpath                   uint64
	haveRpath, haveRunpath, nodeflib bool
}

// dynamic reads the first PT_DYNAMIC segment's entries up to DT_NULL;
// nil for an object without one (a static one).
func (f *elfFile) dynamic(progs []prog) (*dynamicInfo, error) {
	var dyn *prog
	for i := range progs {
		if progs[i].typ == elf.PT_DYNAMIC {
			dyn = &progs[i]
			break
		}
	}
	if dyn == nil {
		return nil, nil
	}
	if dyn.filesz > maxDynamicSize {
		return nil, fmt.Errorf("PT_DYNAMIC of %d bytes", dyn.filesz)
	}
	raw, err := f.read(dyn.off, dyn.filesz, "PT_DYNAMIC")
	if err != nil {
		return nil, err
	}
	entSize := 16
	if !f.is64 {
		entSize = 8
	}
	d := &dynamicInfo{}
	for off := 0; off+entSize <= len(raw); off += entSize {
		var tag, val uint64
		if f.is64 {
			tag = f.order.Uint64(raw[off:])
			val = f.order.Uint64(raw[off+8:])
		} else {
			tag = uint64(f.order.Uint32(raw[off:]))
			val = uint64(f.order.Uint32(raw[off+4:]))
		}
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			off = len(raw)
		case elf.DT_NEEDED:
			if len(d.needed) < 4096 {
				d.needed = append(d.needed, val)
			}
		case elf.DT_STRTAB:
			d.strtab, d.haveStrtab = val, true
		case elf.DT_STRSZ:
			d.strsz = val
		case elf.DT_RPATH:
			d.rpath, d.haveRpath = val, true
		case elf.DT_RUNPATH:
			d.runpath, d.haveRunpath = val, true
		case elf.DT_FLAGS_1:
			d.nodeflib = val&uint64(elf.DF_1_NODEFLIB) != 0
		}
	}
	return d, nil
}

// strtab reads the dynamic string table. DT_STRTAB is an address: it is
// read from the PT_LOAD segment mapping it, no further than its end.
func (f *elfFile) strtab(progs []prog, d *dynamicInfo) ([]byte, error) {
	if !d.haveStrtab {
		return nil, errors.New("PT_DYNAMIC has strings but no DT_STRTAB")
	}
	if d.strsz == 0 || d.strsz > maxStrtabSize {
		return nil, fmt.Errorf("DT_STRSZ of %d bytes", d.strsz)
	}
	for _, p := range progs {
		if p.typ != elf.PT_LOAD || d.strtab < p.vaddr || d.strtab-p.vaddr >= p.filesz {
			continue
		}
		start := d.strtab - p.vaddr
		return f.read(p.off+start, min(d.strsz, p.filesz-start), "DT_STRTAB")
	}
	return nil, fmt.Errorf("DT_STRTAB %#x is in no PT_LOAD segment", d.strtab)
}

// resolve fills info's needed libraries and search paths from the string
// table tab. A DT_RUNPATH disables the DT_RPATH, which is then not read.
func (d *dynamicInfo) resolve(info *elfInfo, tab []byte) error {
	str := func(off uint64) (string, error) {
		if off >= uint64(len(tab)) {
			return "", fmt.Errorf("string offset %#x past DT_STRTAB's %d bytes", off, len(tab))
		}
		s := tab[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s), nil
	}
	for _, off := range d.needed {
		s, err := str(off)
		if err != nil {
			return fmt.Errorf("DT_NEEDED: %w", err)
		}
		if s != "" {
			info.needed = append(info.needed, s)
		}
	}
	if d.haveRpath && !d.haveRunpath {
		s, err := str(d.rpath)
		if err != nil {
			return fmt.Errorf("DT_RPATH: %w", err)
		}
		info.rpath = splitPath(s)
	}
	if d.haveRunpath {
		s, err := str(d.runpath)
		if err != nil {
			return fmt.Errorf("DT_RUNPATH: %w", err)
		}
		info.runpath = splitPath(s)
	}
	return nil
}

// splitPath splits a colon-separated search path, dropping empty elements
// (which ld.so would take as the process's current directory, which means
// nothing in the guest).
func splitPath(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ":") {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// compatible reports whether a library of ELF identity lib can be loaded
// into a process of identity exe, as the loader checks before mapping it.
func compatible(exe, lib *elfInfo) bool {
	return exe.class == lib.class && exe.data == lib.data && exe.machine == lib.machine
}

// archOf returns the multiarch tuple and $PLATFORM of an ELF identity, and
// the default library directories the host's loader searches after
// ld.so.cache, in order.
func archOf(e *elfInfo) (tuple, platform string, defaults []string) {
	switch {
	case e.machine == elf.EM_X86_64 && e.class == elf.ELFCLASS64:
		tuple, platform = "x86_64-linux-gnu", "x86_64"
	case e.machine == elf.EM_X86_64 && e.class == elf.ELFCLASS32:
		tuple, platform = "x86_64-linux-gnux32", "x86_64"
	case e.machine == elf.EM_386:
		tuple, platform = "i386-linux-gnu", "i686"
	case e.machine == elf.EM_AARCH64:
		tuple, platform = "aarch64-linux-gnu", "aarch64"
	case e.machine == elf.EM_ARM:
		tuple, platform = "arm-linux-gnueabihf", "v7l"
	case e.machine == elf.EM_RISCV && e.class == elf.ELFCLASS64:
		tuple, platform = "riscv64-linux-gnu", "riscv64"
	case e.machine == elf.EM_PPC64:
		tuple, platform = "powerpc64le-linux-gnu", "powerpc64le"
	case e.machine == elf.EM_S390:
		tuple, platform = "s390x-linux-gnu", "s390x"
	}
	if tuple != "" {
		defaults = append(defaults, "/lib/"+tuple, "/usr/lib/"+tuple)
	}
	if e.class == elf.ELFCLASS64 {
		defaults = append(defaults, "/lib64", "/usr/lib64")
	}
	defaults = append(defaults, "/lib", "/usr/lib")
	return tuple, platform, defaults
}
