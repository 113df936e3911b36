package kernel

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// note is an ELF note for makeELF.
type note struct {
	owner string
	typ   uint32
	desc  []byte
}

// makeELF returns a minimal little-endian ELF64 file with one PT_NOTE
// segment holding notes, and optionally a .rodata section with rodata.
func makeELF(machine uint16, typ uint16, notes []note, rodata []byte) []byte {
	le := binary.LittleEndian
	var nb bytes.Buffer
	pad := func(b *bytes.Buffer) {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for _, n := range notes {
		name := append([]byte(n.owner), 0)
		var hdr [12]byte
		le.PutUint32(hdr[0:], uint32(len(name)))
		le.PutUint32(hdr[4:], uint32(len(n.desc)))
		le.PutUint32(hdr[8:], n.typ)
		nb.Write(hdr[:])
		nb.Write(name)
		pad(&nb)
		nb.Write(n.desc)
		pad(&nb)
	}
	const ehsize, phsize, shsize = 64, 56, 64
	noteOff := uint64(ehsize + phsize)
	rodataOff := noteOff + uint64(nb.Len())
	shstr := []byte("\x00.rodata\x00.shstrtab\x00")
	shstrOff := rodataOff + uint64(len(rodata))
	shOff := shstrOff + uint64(len(shstr))
	for shOff%8 != 0 {
		shOff++
	}

	out := make([]byte, shOff+3*shsize)
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(out[16:], typ)
	le.PutUint16(out[18:], machine)
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[24:], 0x1000000)
	le.PutUint64(out[32:], ehsize) // phoff
	le.PutUint64(out[40:], shOff)  // shoff
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[54:], phsize)
	le.PutUint16(out[56:], 1) // phnum
	le.PutUint16(out[58:], shsize)
	le.PutUint16(out[60:], 3) // shnum
	le.PutUint16(out[62:], 2) // shstrndx

	ph := out[ehsize:]
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint32(ph[4:], 4) // PF_R
	le.PutUint64(ph[8:], noteOff)
	le.PutUint64(ph[32:], uint64(nb.Len()))
	le.PutUint64(ph[40:], uint64(nb.Len()))
	le.PutUint64(ph[48:], 4)
	copy(out[noteOff:], nb.Bytes())
	copy(out[rodataOff:], rodata)
	copy(out[shstrOff:], shstr)

	sh := out[shOff+shsize:] // section 1: .rodata
	le.PutUint32(sh[0:], 1)
	le.PutUint32(sh[4:], 1) // SHT_PROGBITS
	le.PutUint64(sh[24:], rodataOff)
	le.PutUint64(sh[32:], uint64(len(rodata)))
	le.PutUint64(sh[48:], 1)
	sh = out[shOff+2*shsize:] // section 2: .shstrtab
	le.PutUint32(sh[0:], 9)
	le.PutUint32(sh[4:], 3) // SHT_STRTAB
	le.PutUint64(sh[24:], shstrOff)
	le.PutUint64(sh[32:], uint64(len(shstr)))
	le.PutUint64(sh[48:], 1)
	return out
}

// pvhNote is the PVH entry note of a vmlinux built with CONFIG_PVH.
var pvhNote = note{owner: "Xen", typ: xenElfnotePhys32Entry, desc: []byte{0xa0, 4, 0, 1, 0, 0, 0, 0}}

// fakeVmlinux is a synthetic PVH-capable vmlinux.
func fakeVmlinux() []byte {
	return makeELF(62, 2, []note{{owner: "Linux", typ: 6, desc: []byte{0, 0, 0, 0}}, pvhNote},
		[]byte("\x00Linux version %s\x00Linux version 6.1.192 (arrow@arrow) #1 SMP\n\x00"))
}

// makeBzImage returns a synthetic bzImage whose header points at version.
func makeBzImage(version string) []byte {
	out := make([]byte, 0x1000)
	binary.LittleEndian.PutUint16(out[bootFlagOff:], 0xAA55)
	copy(out[headerMagicOff:], "HdrS")
	binary.LittleEndian.PutUint16(out[protocolOff:], 0x020f)
	if version != "" {
		const at = 0x400
		binary.LittleEndian.PutUint16(out[kernelVersionOff:], at-0x200)
		copy(out[at:], version+"\x00")
	}
	return out
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
