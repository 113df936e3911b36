// Package mountinfo reads the mount points of /proc/self/mountinfo. It
// serves the code that must not delete through a mount (an apt build's
// chroot, a test's Debian tree) and the cgroup finder, which all need the
// same decoding of the kernel's escaped paths.
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Under lists the mount points of this process's mount namespace at or
// below dir, in mount order (a mount before those stacked on it), so
// that unmounting in reverse order takes the deepest first.
func Under(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	return under(f, dir)
}

// under is Under reading the table from r.
func under(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	// A line holds two escaped paths and options; the kernel caps a path
	// at PATH_MAX, so 1 MiB leaves room to spare.
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options ...
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := Unescape(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// Unescape undoes the octal escapes (\040 for a space, \134 for a
// backslash...) the kernel writes in mountinfo's paths. A backslash not
// followed by three octal digits stays as it is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
