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
	var buf [4096]byte
	n, err := r.ReadAt(buf[:], 0)
	if n < len(buf) && err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	hdr := buf[:n]
	if len(hdr) < 4 || string(hdr[:4]) != elf.ELFMAG {
		return nil, errNotELF
	}
	if len(hdr) < 52 {
		return nil, errors.New("ELF header truncated")
	}
	info := &elfInfo{class: elf.Class(hdr[elf.EI_CLASS]), data: elf.Data(hdr[elf.EI_DATA])}
	var order binary.ByteOrder
	switch info.data {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("unknown ELF data encoding %d", info.data)
	}
	info.typ = elf.Type(order.Uint16(hdr[16:]))
	info.machine = elf.Machine(order.Uint16(hdr[18:]))
	var (
		phoff         uint64
		phentsize     uint64
		phnum         uint64
		is64          bool
		wantPhentsize uint64
	)
	switch info.class {
	case elf.ELFCLASS64:
		if len(hdr) < 64 {
			return nil, errors.New("ELF header truncated")
		}
		is64, wantPhentsize = true, 56
		phoff = order.Uint64(hdr[32:])
		phentsize = uint64(order.Uint16(hdr[54:]))
		phnum = uint64(order.Uint16(hdr[56:]))
	case elf.ELFCLASS32:
		wantPhentsize = 32
		phoff = uint64(order.Uint32(hdr[28:]))
		phentsize = uint64(order.Uint16(hdr[42:]))
		phnum = uint64(order.Uint16(hdr[44:]))
	default:
		return nil, fmt.Errorf("unknown ELF class %d", info.class)
	}
	if phnum == 0 {
		return info, nil // no segments: nothing to load
	}
	fileSize := uint64(max(size, 0))
	phsize := phnum * phentsize
	if phentsize < wantPhentsize || phoff > fileSize || phsize > fileSize-phoff {
		return nil, fmt.Errorf("bad program headers (%d of %d bytes at %#x)", phnum, phentsize, phoff)
	}
	var ph []byte
	if phoff+phsize <= uint64(len(hdr)) {
		ph = hdr[phoff : phoff+phsize]
	} else {
		ph = make([]byte, phsize)
		if _, err := r.ReadAt(ph, int64(phoff)); err != nil {
			return nil, fmt.Errorf("read program headers: %w", err)
		}
	}
	progs := make([]prog, 0, phnum)
	for i := uint64(0); i < phnum; i++ {
		e := ph[i*phentsize:]
		var p prog
		p.typ = elf.ProgType(order.Uint32(e[0:]))
		if is64 {
			p.off = order.Uint64(e[8:])
			p.vaddr = order.Uint64(e[16:])
			p.filesz = order.Uint64(e[32:])
		} else {
			p.off = uint64(order.Uint32(e[4:]))
			p.vaddr = uint64(order.Uint32(e[8:]))
			p.filesz = uint64(order.Uint32(e[16:]))
		}
		progs = append(progs, p)
	}
	read := func(off, n uint64, what string) ([]byte, error) {
		if off > fileSize || n > fileSize-off {
			return nil, fmt.Errorf("%s: %d bytes at %#x past the end of the file", what, n, off)
		}
		b := make([]byte, n)
		if off+n <= uint64(len(hdr)) {
			copy(b, hdr[off:])
			return b, nil
		}
		m, err := r.ReadAt(b, int64(off))
		if uint64(m) < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		return b, nil
	}
	var dyn *prog
	for i := range progs {
		p := &progs[i]
		switch p.typ {
		case elf.PT_INTERP:
			if p.filesz == 0 || p.filesz > maxInterpSize {
				return nil, fmt.Errorf("PT_INTERP of %d bytes", p.filesz)
			}
			b, err := read(p.off, p.filesz, "PT_INTERP")
			if err != nil {
				return nil, err
			}
			info.interp = string(bytes.TrimRight(b, "\x00"))
		case elf.PT_DYNAMIC:
			if dyn == nil {
				dyn = p
			}
		}
	}
	if dyn == nil {
		return info, nil // static
	}
	if dyn.filesz > maxDynamicSize {
		return nil, fmt.Errorf("PT_DYNAMIC of %d bytes", dyn.filesz)
	}
	raw, err := read(dyn.off, dyn.filesz, "PT_DYNAMIC")
	if err != nil {
		return nil, err
	}
	entSize := 16
	if !is64 {
		entSize = 8
	}
	var (
		strtab, strsz                 uint64
		haveStrtab                    bool
		needed                        []uint64
		rpath, runpath                uint64
		haveRpath, haveRunpath, dflib bool
	)
	for off := 0; off+entSize <= len(raw); off += entSize {
		var tag, val uint64
		if is64 {
			tag = order.Uint64(raw[off:])
			val = order.Uint64(raw[off+8:])
		} else {
			tag = uint64(order.Uint32(raw[off:]))
			val = uint64(order.Uint32(raw[off+4:]))
		}
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			off = len(raw)
		case elf.DT_NEEDED:
			if len(needed) < 4096 {
				needed = append(needed, val)
			}
		case elf.DT_STRTAB:
			strtab, haveStrtab = val, true
		case elf.DT_STRSZ:
			strsz = val
		case elf.DT_RPATH:
			rpath, haveRpath = val, true
		case elf.DT_RUNPATH:
			runpath, haveRunpath = val, true
		case elf.DT_FLAGS_1:
			dflib = val&uint64(elf.DF_1_NODEFLIB) != 0
		}
	}
	info.nodeflib = dflib
	info.hasRunpath = haveRunpath
	if len(needed) == 0 && !haveRpath && !haveRunpath {
		return info, nil
	}
	if !haveStrtab {
		return nil, errors.New("PT_DYNAMIC has strings but no DT_STRTAB")
	}
	if strsz == 0 || strsz > maxStrtabSize {
		return nil, fmt.Errorf("DT_STRSZ of %d bytes", strsz)
	}
	// DT_STRTAB is an address: find the file offset of the PT_LOAD
	// segment mapping it.
	var tab []byte
	for _, p := range progs {
		if p.typ != elf.PT_LOAD || strtab < p.vaddr || strtab-p.vaddr >= p.filesz {
			continue
		}
		start := strtab - p.vaddr
		if tab, err = read(p.off+start, min(strsz, p.filesz-start), "DT_STRTAB"); err != nil {
			return nil, err
		}
		break
	}
	if tab == nil {
		return nil, fmt.Errorf("DT_STRTAB %#x is in no PT_LOAD segment", strtab)
	}
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
	for _, off := range needed {
		s, err := str(off)
		if err != nil {
			return nil, fmt.Errorf("DT_NEEDED: %w", err)
		}
		if s != "" {
			info.needed = append(info.needed, s)
		}
	}
	if haveRpath && !haveRunpath {
		s, err := str(rpath)
		if err != nil {
			return nil, fmt.Errorf("DT_RPATH: %w", err)
		}
		info.rpath = splitPath(s)
	}
	if haveRunpath {
		s, err := str(runpath)
		if err != nil {
			return nil, fmt.Errorf("DT_RUNPATH: %w", err)
		}
		info.runpath = splitPath(s)
	}
	return info, nil
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
