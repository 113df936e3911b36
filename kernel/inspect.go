package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the note of owner "Xen"
// that holds the 32-bit PVH entry point QEMU jumps to when it boots an ELF
// kernel directly.
const xenElfnotePhys32Entry = 18

// Offsets in the x86 boot protocol setup header (Documentation/x86/boot.rst).
const (
	bootFlagOff      = 0x1FE // u16 0xAA55
	headerMagicOff   = 0x202 // "HdrS"
	protocolOff      = 0x206 // u16 boot protocol version
	kernelVersionOff = 0x20E // u16 pointer to the version string, minus 0x200
	setupHeaderEnd   = 0x268
)

// Bounds on what inspecting a kernel reads beyond its headers.
const (
	// maxNoteBytes bounds the ELF notes, in all; a vmlinux has a few
	// hundred bytes of them.
	maxNoteBytes = 1 << 20
	// maxBannerBytes bounds the part of .rodata searched for the version
	// banner, which the kernel puts near its start.
	maxBannerBytes = 64 << 20
	// maxReleaseLen bounds a release string (uname -r is at most 64).
	maxReleaseLen = 64
)

// linuxBanner starts the version string of every Linux kernel.
var linuxBanner = []byte("Linux version ")

// Inspect examines a user-supplied kernel image. It accepts an x86-64 ELF
// vmlinux (reporting whether it has the PVH entry note that QEMU microvm
// needs to boot it directly) or an x86 bzImage such as Debian's
// /boot/vmlinuz-* kernels, and rejects any other file with an error saying
// why.
func Inspect(path string) (Kernel, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Kernel{}, fmt.Errorf("inspect kernel %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return Kernel{}, fmt.Errorf("inspect kernel: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Kernel{}, fmt.Errorf("inspect kernel: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Kernel{}, fmt.Errorf("inspect kernel %s: not a regular file", abs)
	}
	k, err := inspect(f, st.Size())
	if err != nil {
		return Kernel{}, fmt.Errorf("inspect kernel %s: %w", abs, err)
	}
	k.Path = abs
	return k, nil
}

// inspect examines the kernel image in r, of size bytes. The image is
// untrusted input: what it reads is bounded by maxNoteBytes and
// maxBannerBytes besides the ELF and boot headers, whatever the headers
// claim.
func inspect(r io.ReaderAt, size int64) (Kernel, error) {
	head := make([]byte, setupHeaderEnd)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Kernel{}, err
	}
	head = head[:n]
	k := Kernel{Size: size}
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		err = inspectELF(io.NewSectionReader(r, 0, size), &k)
	case len(head) >= protocolOff+2 && string(head[headerMagicOff:headerMagicOff+4]) == "HdrS":
		err = inspectBzImage(r, head, &k)
	default:
		err = errors.New("not a kernel image: neither an ELF vmlinux nor a bzImage (no \"HdrS\" boot header at 0x202)")
	}
	if err != nil {
		return Kernel{}, err
	}
	return k, nil
}

// inspectELF checks an ELF vmlinux.
func inspectELF(r io.ReaderAt, k *Kernel) error {
	ef, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("bad ELF file: %w", err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return fmt.Errorf("ELF kernel is %v %v, want ELFCLASS64 x86-64", ef.Class, ef.Machine)
	}
	if ef.Type != elf.ET_EXEC {
		return fmt.Errorf("ELF file of type %v is not a kernel (a vmlinux is ET_EXEC)", ef.Type)
	}
	k.Format = FormatELF
	notes, err := elfNotes(ef)
	if err != nil {
		return err
	}
	isLinux := false
	for _, n := range notes {
		switch {
		case n.owner == "Xen" && n.typ == xenElfnotePhys32Entry:
			k.PVH = true
		case n.owner == "Linux":
			isLinux = true
		}
	}
	if sec := ef.Section(".rodata"); sec != nil && sec.Type != elf.SHT_NOBITS {
		// Read through Open, not Data: the section's size is the file's
		// word, and a compressed section would be inflated whole.
		data, err := io.ReadAll(io.LimitReader(sec.Open(), maxBannerBytes))
		if err == nil {
			if rel := releaseFromBanner(data); rel != "" {
				k.Release, isLinux = rel, true
			}
		}
	}
	if !isLinux && !k.PVH {
		return errors.New("ELF file is not a Linux kernel: no Linux or Xen notes and no Linux version banner")
	}
	k.Version = k.Release
	return nil
}

// elfNote is one entry of an ELF note segment or section.
type elfNote struct {
	owner string
	typ   uint32
	desc  []byte
}

// elfNotes collects the notes of all PT_NOTE segments, or of SHT_NOTE
// sections when the file has no note segments.
func elfNotes(ef *elf.File) ([]elfNote, error) {
	// One budget for all note bytes: many note headers may name the same
	// region of the file, and each would otherwise be read again.
	budget := int64(maxNoteBytes)
	read := func(what string, r io.Reader) ([]byte, error) {
		data, err := io.ReadAll(io.LimitReader(r, budget+1))
		if err != nil {
			return nil, fmt.Errorf("read ELF note %s: %w", what, err)
		}
		if int64(len(data)) > budget {
			return nil, fmt.Errorf("ELF notes larger than %d bytes in all", maxNoteBytes)
		}
		budget -= int64(len(data))
		return data, nil
	}
	var blobs [][]byte
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := read("segment", p.Open())
		if err != nil {
			return nil, err
		}
		blobs = append(blobs, data)
	}
	if len(blobs) == 0 {
		for _, s := range ef.Sections {
			if s.Type != elf.SHT_NOTE {
				continue
			}
			data, err := read("section "+s.Name, s.Open())
			if err != nil {
				return nil, err
			}
			blobs = append(blobs, data)
		}
	}
	var notes []elfNote
	for _, b := range blobs {
		notes = append(notes, parseNotes(b, ef.ByteOrder)...)
	}
	return notes, nil
}

// parseNotes decodes a note blob, stopping at the first malformed entry.
func parseNotes(b []byte, bo binary.ByteOrder) []elfNote {
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	var out []elfNote
	for len(b) >= 12 {
		namesz := uint64(bo.Uint32(b[0:]))
		descsz := uint64(bo.Uint32(b[4:]))
		typ := bo.Uint32(b[8:])
		rest := uint64(len(b) - 12)
		if align4(namesz) > rest || align4(namesz)+descsz > rest {
			break
		}
		name := b[12 : 12+namesz]
		desc := b[12+align4(namesz) : 12+align4(namesz)+descsz]
		out = append(out, elfNote{owner: string(bytes.TrimRight(name, "\x00")), typ: typ, desc: desc})
		next := 12 + align4(namesz) + align4(descsz)
		if next > uint64(len(b)) {
			break
		}
		b = b[next:]
	}
	return out
}

// inspectBzImage checks an x86 boot protocol image.
func inspectBzImage(r io.ReaderAt, head []byte, k *Kernel) error {
	if len(head) < setupHeaderEnd {
		return errors.New("truncated bzImage: file ends inside the setup header")
	}
	if binary.LittleEndian.Uint16(head[bootFlagOff:]) != 0xAA55 {
		return errors.New("bad bzImage: boot flag 0xAA55 missing at 0x1FE")
	}
	if proto := binary.LittleEndian.Uint16(head[protocolOff:]); proto < 0x0200 {
		return fmt.Errorf("unsupported x86 boot protocol %d.%02d, want 2.00 or later", proto>>8, proto&0xff)
	}
	k.Format = FormatBzImage
	if ptr := binary.LittleEndian.Uint16(head[kernelVersionOff:]); ptr != 0 {
		buf := make([]byte, 256)
		n, _ := r.ReadAt(buf, int64(ptr)+0x200)
		buf = buf[:n]
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			buf = buf[:i]
		}
		// The string is "<release> (<builder>) #<n> <date>".
		if i := bytes.IndexByte(buf, ' '); i >= 0 {
			buf = buf[:i]
		}
		if validRelease(buf) {
			k.Release = string(buf)
		}
	}
	k.Version = k.Release
	return nil
}

// releaseFromBanner extracts the release from the first "Linux version X "
// banner in data whose release starts with a digit (skipping format strings
// such as "Linux version %s").
func releaseFromBanner(data []byte) string {
	for {
		i := bytes.Index(data, linuxBanner)
		if i < 0 {
			return ""
		}
		data = data[i+len(linuxBanner):]
		end := bytes.IndexAny(data, " \x00\n")
		if end > 0 && validRelease(data[:end]) {
			return string(data[:end])
		}
	}
}

// validRelease reports whether b looks like a kernel release (uname -r):
// it starts with a digit and holds only the characters of version
// strings. A release read from a user's file is shown and stored; bytes
// such as terminal escapes or slashes are refused rather than carried.
func validRelease(b []byte) bool {
	if len(b) == 0 || len(b) > maxReleaseLen || b[0] < '0' || b[0] > '9' {
		return false
	}
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c == '.', c == '-', c == '_', c == '+', c == '~':
		default:
			return false
		}
	}
	return true
}
