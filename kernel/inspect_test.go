package kernel

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// rawSection is a section for buildELF.
type rawSection struct {
	name  string
	typ   elf.SectionType
	flags elf.SectionFlag
	data  []byte
}

// buildELF returns an x86-64 ET_EXEC ELF file with notePhdrs PT_NOTE
// program headers that all name the same payload, followed by secs (and
// their name table). Unlike makeELF it lets a test say what a hostile
// file would: many headers over one region, compressed sections.
func buildELF(notePhdrs int, payload []byte, secs []rawSection) []byte {
	le := binary.LittleEndian
	const ehsize, phentsize, shentsize = 64, 56, 64
	payloadOff := ehsize + notePhdrs*phentsize
	var body bytes.Buffer
	body.Write(payload)
	type placed struct{ off, name int }
	var at []placed
	shstr := []byte{0}
	for _, s := range secs {
		at = append(at, placed{payloadOff + body.Len(), len(shstr)})
		shstr = append(append(shstr, s.name...), 0)
		body.Write(s.data)
	}
	shstrOff := payloadOff + body.Len()
	shstrName := len(shstr)
	shstr = append(shstr, ".shstrtab\x00"...)
	body.Write(shstr)
	shoff := payloadOff + body.Len()
	shnum := len(secs) + 2 // null, secs, .shstrtab

	out := make([]byte, shoff+shnum*shentsize)
	copy(out, elf.ELFMAG)
	out[4], out[5], out[6] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[32:], ehsize)
	le.PutUint64(out[40:], uint64(shoff))
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[54:], phentsize)
	le.PutUint16(out[56:], uint16(notePhdrs))
	le.PutUint16(out[58:], shentsize)
	le.PutUint16(out[60:], uint16(shnum))
	le.PutUint16(out[62:], uint16(shnum-1))
	for i := range notePhdrs {
		ph := out[ehsize+i*phentsize:]
		le.PutUint32(ph[0:], uint32(elf.PT_NOTE))
		le.PutUint64(ph[8:], uint64(payloadOff))
		le.PutUint64(ph[32:], uint64(len(payload)))
		le.PutUint64(ph[40:], uint64(len(payload)))
		le.PutUint64(ph[48:], 4)
	}
	copy(out[payloadOff:], body.Bytes())
	sh := func(i, name int, typ elf.SectionType, flags elf.SectionFlag, off, size int) {
		b := out[shoff+i*shentsize:]
		le.PutUint32(b[0:], uint32(name))
		le.PutUint32(b[4:], uint32(typ))
		le.PutUint64(b[8:], uint64(flags))
		le.PutUint64(b[24:], uint64(off))
		le.PutUint64(b[32:], uint64(size))
		le.PutUint64(b[48:], 1)
	}
	for i, s := range secs {
		sh(i+1, at[i].name, s.typ, s.flags, at[i].off, len(s.data))
	}
	sh(shnum-1, shstrName, elf.SHT_STRTAB, 0, shstrOff, len(shstr))
	return out
}

// noteBytes encodes one little-endian ELF note.
func noteBytes(n note) []byte {
	var b bytes.Buffer
	name := append([]byte(n.owner), 0)
	var hdr [12]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(name)))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(n.desc)))
	binary.LittleEndian.PutUint32(hdr[8:], n.typ)
	b.Write(hdr[:])
	b.Write(name)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(n.desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// maxInspectRead is what inspecting any file may read: the note and
// banner budgets, plus the ELF and boot headers (program and section
// header tables, the section name table), which debug/elf reads once and
// which cannot exceed the file.
func maxInspectRead(size int64) int64 {
	return maxNoteBytes + maxBannerBytes + 4*size + 4096
}

// TestInspectHostileELF plays a user handing Arrow a crafted --kernel
// file: each case would make a careless reader do unbounded work or carry
// hostile bytes into what Arrow prints.
func TestInspectHostileELF(t *testing.T) {
	pvh := noteBytes(pvhNote)
	t.Run("note headers over one region", func(t *testing.T) {
		// 4000 PT_NOTE headers over the same 600 KiB: 2.3 GB of notes
		// if each were read on its own.
		payload := append(pvh, make([]byte, 600<<10)...)
		data := buildELF(4000, payload, nil)
		r := &countingReaderAt{r: bytes.NewReader(data)}
		_, err := inspect(r, int64(len(data)))
		if err == nil || !strings.Contains(err.Error(), "ELF notes larger than") {
			t.Fatalf("inspect = %v, want the note budget error", err)
		}
		if got := r.n.Load(); got > maxInspectRead(int64(len(data))) {
			t.Fatalf("read %d bytes of a %d-byte file", got, len(data))
		}
	})
	t.Run("compressed rodata bomb", func(t *testing.T) {
		// A zlib .rodata that claims 4 GiB and inflates to 160 MiB of
		// zeros before its banner: only maxBannerBytes of it is read.
		var z bytes.Buffer
		var chdr [24]byte
		binary.LittleEndian.PutUint32(chdr[0:], uint32(elf.COMPRESS_ZLIB))
		binary.LittleEndian.PutUint64(chdr[8:], 1<<32)
		binary.LittleEndian.PutUint64(chdr[16:], 1)
		z.Write(chdr[:])
		zw := zlib.NewWriter(&z)
		zeros := make([]byte, 1<<20)
		for range 160 {
			zw.Write(zeros)
		}
		zw.Write([]byte("Linux version 6.6.6 (x)\x00"))
		zw.Close()
		data := buildELF(1, pvh, []rawSection{{name: ".rodata", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_COMPRESSED, data: z.Bytes()}})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		k, err := inspect(bytes.NewReader(data), int64(len(data)))
		runtime.ReadMemStats(&after)
		if err != nil || !k.PVH {
			t.Fatalf("inspect = %+v, %v; want a PVH kernel", k, err)
		}
		if k.Release != "" {
			t.Errorf("release %q found past the banner bound", k.Release)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*maxBannerBytes {
			t.Fatalf("inspecting a %d-byte file allocated %d bytes", len(data), alloc)
		}
	})
	for _, tc := range []struct{ name, banner string }{
		{"escape in release", "Linux version 6.1.0\x1b[2J (x)"},
		{"slash in release", "Linux version 6.1/../../x (x)"},
		{"overlong release", "Linux version 6." + strings.Repeat("1", 100) + " (x)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := makeELF(62, 2, []note{pvhNote}, []byte(tc.banner+"\x00"))
			k, err := inspect(bytes.NewReader(data), int64(len(data)))
			if err != nil || k.Release != "" || k.Version != "" {
				t.Fatalf("inspect = %+v, %v; want a kernel without a release", k, err)
			}
		})
	}
	t.Run("escape in bzImage version", func(t *testing.T) {
		data := makeBzImage("6.1.0\x1b]0;pwned\x07 (x) #1")
		k, err := inspect(bytes.NewReader(data), int64(len(data)))
		if err != nil || k.Format != FormatBzImage || k.Release != "" {
			t.Fatalf("inspect = %+v, %v; want a bzImage without a release", k, err)
		}
	})
}

// FuzzInspect inspects arbitrary file contents: it must not panic, must
// read no more than its budgets allow, and any release it reports must be
// a plain version string.
func FuzzInspect(f *testing.F) {
	f.Add(fakeVmlinux())
	f.Add(makeELF(62, 2, []note{{owner: "Linux", typ: 6, desc: make([]byte, 4)}}, []byte("Linux version 6.6.1-x (a@b)\x00")))
	f.Add(makeELF(62, 3, []note{pvhNote}, nil))
	f.Add(buildELF(3, noteBytes(pvhNote), []rawSection{{name: ".note", typ: elf.SHT_NOTE, data: noteBytes(pvhNote)}}))
	f.Add(makeBzImage("6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"))
	f.Add(makeBzImage("")[:0x210])
	f.Add([]byte("\x7fELF"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReaderAt{r: bytes.NewReader(data)}
		k, err := inspect(r, int64(len(data)))
		if got := r.n.Load(); got > maxInspectRead(int64(len(data))) {
			t.Fatalf("read %d bytes of a %d-byte file", got, len(data))
		}
		if err != nil {
			return
		}
		if k.Format != FormatELF && k.Format != FormatBzImage {
			t.Fatalf("accepted with format %q", k.Format)
		}
		if k.Release != "" && !validRelease([]byte(k.Release)) {
			t.Fatalf("release %q", k.Release)
		}
	})
}
