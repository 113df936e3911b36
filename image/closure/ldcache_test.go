package closure

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseLDCache(t *testing.T) {
	data := mkLDCache([]ldEntry{
		{"libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", flagsX8664, 0},
		{"libc.so.6", "/lib/i386-linux-gnu/libc.so.6", 0x0003, 0},
		{"libm.so.6", "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libm.so.6", flagsX8664, 1<<62 | 2},
		{"libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", flagsX8664, 0},
		{"libaout.so", "/old/libaout.so", 0x0000, 0}, // not ELF
	})
	c, err := parseLDCache(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]string{
		"libc.so.6":  {"/lib/x86_64-linux-gnu/libc.so.6", "/lib/i386-linux-gnu/libc.so.6"},
		"libm.so.6":  {"/lib/x86_64-linux-gnu/libm.so.6", "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libm.so.6"},
		"libaout.so": nil,
		"libnone.so": nil,
	}
	for name, want := range tests {
		if got := c.lookup(name); !reflect.DeepEqual(got, want) {
			t.Errorf("lookup(%s) = %q, want %q", name, got, want)
		}
	}

	// The new format after the old libc5 table.
	old := make([]byte, ldCacheHeaderOld+2*ldCacheEntryOld)
	copy(old, ldCacheMagicOld)
	binary.NativeEndian.PutUint32(old[12:], 2)
	for len(old)%8 != 0 {
		old = append(old, 0)
	}
	c2, err := parseLDCache(append(old, data...))
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.lookup("libc.so.6"); len(got) != 2 {
		t.Errorf("after the old table: %q", got)
	}
	var nilCache *ldCache
	if nilCache.lookup("x") != nil {
		t.Error("nil cache finds something")
	}
}

func TestParseLDCacheGarbage(t *testing.T) {
	good := mkLDCache([]ldEntry{{"libc.so.6", "/lib/libc.so.6", flagsX8664, 0}})
	hugeCount := append([]byte{}, good...)
	binary.LittleEndian.PutUint32(hugeCount[20:], 0xfffffff0)
	badOffset := append([]byte{}, good...)
	binary.LittleEndian.PutUint32(badOffset[ldCacheHeaderNew+4:], 1<<30)
	noNUL := good[:len(good)-1]
	oldOnly := make([]byte, ldCacheHeaderOld)
	copy(oldOnly, ldCacheMagicOld)
	oldHuge := append([]byte{}, oldOnly...)
	binary.NativeEndian.PutUint32(oldHuge[12:], 0xffffffff)
	cases := map[string][]byte{
		"empty":          nil,
		"short":          []byte(ldCacheMagicNew),
		"bad magic":      append([]byte("glibc-ld.so.cachX1.1"), good[20:]...),
		"bad version":    append([]byte("glibc-ld.so.cache9.9"), good[20:]...),
		"huge count":     hugeCount,
		"bad offset":     badOffset,
		"string no NUL":  noNUL,
		"old only":       oldOnly,
		"old huge count": oldHuge,
	}
	for name, b := range cases {
		if _, err := parseLDCache(b); !errors.Is(err, errLDCache) {
			t.Errorf("%s: err = %v, want errLDCache", name, err)
		}
	}
}

func TestParseLDCacheHost(t *testing.T) {
	data, err := os.ReadFile("/etc/ld.so.cache")
	if err != nil {
		t.Skip(err)
	}
	c, err := parseLDCache(data)
	if err != nil {
		t.Fatal(err)
	}
	paths := c.lookup("libc.so.6")
	if len(paths) == 0 || !strings.HasSuffix(paths[0], "/libc.so.6") {
		t.Errorf("libc.so.6: %q", paths)
	}
}

func FuzzParseLDCache(f *testing.F) {
	f.Add(mkLDCache([]ldEntry{
		{"libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", flagsX8664, 0},
		{"libm.so.6", "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libm.so.6", flagsX8664, 1<<62 | 2},
	}))
	f.Add([]byte(ldCacheMagicOld + "\x00\x01\x00\x00\x00"))
	if data, err := os.ReadFile("/etc/ld.so.cache"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseLDCache(data)
		if err != nil {
			if !errors.Is(err, errLDCache) {
				t.Fatalf("error %v does not wrap errLDCache", err)
			}
			return
		}
		for name := range c.byName {
			for _, p := range c.lookup(name) {
				if p == "" {
					t.Fatal("empty path")
				}
			}
		}
	})
}
