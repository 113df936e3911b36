package closure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The glibc ld.so.cache format ("glibc-ld.so.cache1.1", glibc 2.32 and
// later write it alone; older ones put it after the libc5-era
// "ld.so-1.7.0" table). All numbers are in the host's byte order; string
// offsets are relative to the start of the new-format header.
const (
	ldCacheMagicNew = "glibc-ld.so.cache"
	ldCacheVersion  = "1.1"
	ldCacheMagicOld = "ld.so-1.7.0"

	ldCacheHeaderNew = 48 // magic+version(20) nlibs(4) len_strings(4) flags(1) pad(3) ext(4) unused(12)
	ldCacheEntryNew  = 24 // flags(4) key(4) value(4) osversion(4) hwcap(8)
	ldCacheHeaderOld = 16 // magic(11) pad(1) nlibs(4)
	ldCacheEntryOld  = 12 // flags(4) key(4) value(4)

	// ldCacheFlagTypeMask selects the object type of an entry's flags;
	// 1 (ELF), 2 (libc5) and 3 (libc6) are ELF libraries.
	ldCacheFlagTypeMask = 0x00ff

	// maxLDCacheEntries bounds the entry count a header may claim.
	maxLDCacheEntries = 1 << 20
)

// ldCacheEntry is one library of ld.so.cache.
type ldCacheEntry struct {
	name  string // the soname looked up, "libc.so.6"
	path  string // where it is, "/lib/x86_64-linux-gnu/libc.so.6"
	flags int32  // type and architecture, FLAG_ELF_LIBC6|FLAG_X8664_LIB64...
	hwcap uint64 // non-zero for hwcaps-specific variants
}

// ldCache maps sonames to the cache's entries for them, in cache order.
type ldCache struct {
	byName map[string][]ldCacheEntry
}

// errLDCache is wrapped by every parse error of ld.so.cache.
var errLDCache = errors.New("malformed ld.so.cache")

// parseLDCache parses an ld.so.cache file. It checks every count and offset
// against the data's bounds, so garbage gives an error, never a panic or a
// huge allocation.
func parseLDCache(data []byte) (*ldCache, error) {
	start := 0
	if bytes.HasPrefix(data, []byte(ldCacheMagicOld)) {
		// The old table first; the new one follows it, aligned to 8.
		if len(data) < ldCacheHeaderOld {
			return nil, fmt.Errorf("%w: old header truncated", errLDCache)
		}
		n := uint64(binary.NativeEndian.Uint32(data[12:16]))
		end := uint64(ldCacheHeaderOld) + n*ldCacheEntryOld
		if end > uint64(len(data)) {
			return nil, fmt.Errorf("%w: old table of %d entries past the end", errLDCache, n)
		}
		start = int((end + 7) &^ 7)
		if start >= len(data) {
			return nil, fmt.Errorf("%w: only the old libc5 format, which is not supported", errLDCache)
		}
	}
	d := data[start:]
	if len(d) < ldCacheHeaderNew {
		return nil, fmt.Errorf("%w: header truncated", errLDCache)
	}
	if string(d[:len(ldCacheMagicNew)]) != ldCacheMagicNew {
		return nil, fmt.Errorf("%w: bad magic", errLDCache)
	}
	if v := string(d[len(ldCacheMagicNew):20]); v != ldCacheVersion {
		return nil, fmt.Errorf("%w: version %q, want %q", errLDCache, v, ldCacheVersion)
	}
	order := ldCacheOrder(d)
	n := uint64(order.Uint32(d[20:24]))
	if n > maxLDCacheEntries || uint64(ldCacheHeaderNew)+n*ldCacheEntryNew > uint64(len(d)) {
		return nil, fmt.Errorf("%w: %d entries do not fit in %d bytes", errLDCache, n, len(d))
	}
	strs := string(d) // one copy; entries' strings are slices of it
	str := func(off uint32) (string, bool) {
		if uint64(off) >= uint64(len(strs)) {
			return "", false
		}
		s := strs[off:]
		i := strings.IndexByte(s, 0)
		if i < 0 {
			return "", false
		}
		return s[:i], true
	}
	c := &ldCache{byName: make(map[string][]ldCacheEntry, n)}
	for i := uint64(0); i < n; i++ {
		e := d[ldCacheHeaderNew+i*ldCacheEntryNew:]
		flags := int32(order.Uint32(e[0:4]))
		name, ok1 := str(order.Uint32(e[4:8]))
		path, ok2 := str(order.Uint32(e[8:12]))
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: entry %d: string offset out of bounds", errLDCache, i)
		}
		if name == "" || path == "" {
			continue
		}
		c.byName[name] = append(c.byName[name], ldCacheEntry{
			name: name, path: path, flags: flags, hwcap: order.Uint64(e[16:24]),
		})
	}
	return c, nil
}

// ldCacheOrder returns the byte order of the new-format header d. glibc
// writes the cache in the host's order (ldconfig can write a foreign one
// for cross installs); the entry count being the smaller of the two
// readings tells which.
func ldCacheOrder(d []byte) binary.ByteOrder {
	le := binary.LittleEndian.Uint32(d[20:24])
	be := binary.BigEndian.Uint32(d[20:24])
	if be < le {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// lookup returns the paths of the ELF libraries named soname, in the order
// the loader would try them: baseline entries first, then hwcaps-specific
// variants (which the guest's CPU may not support).
func (c *ldCache) lookup(soname string) []string {
	if c == nil {
		return nil
	}
	var base, hw []string
	for _, e := range c.byName[soname] {
		switch e.flags & ldCacheFlagTypeMask {
		case 1, 2, 3:
		default:
			continue
		}
		if e.hwcap != 0 {
			hw = append(hw, e.path)
		} else {
			base = append(base, e.path)
		}
	}
	return append(base, hw...)
}
