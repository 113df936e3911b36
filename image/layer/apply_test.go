package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/tartest"
	"golang.org/x/sys/unix"
)

func TestApplyRejects(t *testing.T) {
	big := strings.Repeat("x", 300)
	tests := []struct {
		name string
		ents []tartest.Entry
		opts Options
		want error
	}{
		{"dot-dot name", []tartest.Entry{tartest.File("../victim", "pwned")}, Options{}, ErrTraversal},
		{"dot-dot deep", []tartest.Entry{tartest.File("a/b/../../../victim", "pwned")}, Options{}, ErrTraversal},
		{"absolute dot-dot", []tartest.Entry{tartest.File("/../etc/passwd", "pwned")}, Options{}, ErrTraversal},
		{"symlink escape pair", []tartest.Entry{tartest.Symlink("evil", "../etc"), tartest.File("evil/passwd", "pwned")}, Options{}, ErrSymlinkEscape},
		{"symlink escape deep", []tartest.Entry{tartest.Dir("a"), tartest.Symlink("a/up", "../../.."), tartest.File("a/up/victim", "pwned")}, Options{}, ErrSymlinkEscape},
		{"symlink chain escape", []tartest.Entry{tartest.Symlink("s1", "s2"), tartest.Symlink("s2", "d/../.."), tartest.Dir("d"), tartest.File("s1/victim", "pwned")}, Options{}, ErrSymlinkEscape},
		{"hard link escape", []tartest.Entry{tartest.Hardlink("pw", "../etc/passwd")}, Options{}, ErrTraversal},
		{"hard link through symlink escape", []tartest.Entry{tartest.Symlink("up", ".."), tartest.Hardlink("pw", "up/etc/passwd")}, Options{}, ErrSymlinkEscape},
		{"hard link to missing", []tartest.Entry{tartest.Hardlink("pw", "nothing")}, Options{}, ErrInvalidEntry},
		{"hard link to dir", []tartest.Entry{tartest.Dir("d"), tartest.Hardlink("pw", "d")}, Options{}, ErrInvalidEntry},
		{"whiteout of parent", []tartest.Entry{tartest.File("a/f", "x"), tartest.File("a/.wh...", "")}, Options{}, ErrTraversal},
		{"whiteout of self", []tartest.Entry{tartest.File("a/f", "x"), tartest.File("a/.wh..", "")}, Options{}, ErrInvalidEntry},
		{"whiteout of nothing", []tartest.Entry{tartest.File(".wh.", "")}, Options{}, ErrInvalidEntry},
		{"parent is a file", []tartest.Entry{tartest.File("f", "x"), tartest.File("f/g", "y")}, Options{}, ErrInvalidEntry},
		{"symlink loop", []tartest.Entry{tartest.Symlink("a", "b"), tartest.Symlink("b", "a"), tartest.File("a/x", "y")}, Options{}, ErrInvalidEntry},
		{"component too long", []tartest.Entry{tartest.File(big, "x")}, Options{}, ErrNameTooLong},
		{"name too long", []tartest.Entry{tartest.File(strings.Repeat("abcdefgh/", 460)+"x", "x")}, Options{}, ErrNameTooLong},
		{"symlink target too long", []tartest.Entry{tartest.Symlink("s", strings.Repeat("a/", 2100))}, Options{}, ErrNameTooLong},
		{"file too large", []tartest.Entry{tartest.File("f", "0123456789")}, Options{MaxFileSize: 9}, ErrTooLarge},
		{"layer too large", []tartest.Entry{tartest.File("f", "01234"), tartest.File("g", "56789")}, Options{MaxTotalSize: 9}, ErrTooLarge},
		{"too many entries", []tartest.Entry{tartest.Dir("a"), tartest.Dir("b"), tartest.Dir("c")}, Options{MaxEntries: 2}, ErrTooManyEntries},
		{"root as file", []tartest.Entry{tartest.File(".", "x")}, Options{}, ErrInvalidEntry},
		{"owner out of range", []tartest.Entry{{Name: "f", Type: tar.TypeReg, UID: -1}}, Options{}, ErrInvalidEntry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent, dst := sandbox(t)
			before := snapshot(t, parent, dst)
			_, err := Apply(context.Background(), dst, bytes.NewReader(tartest.Tar(t, tc.ents...)), tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
			var ee *EntryError
			if !errors.As(err, &ee) && tc.want != ErrTooManyEntries {
				t.Errorf("error %v is not an *EntryError", err)
			}
			after := snapshot(t, parent, dst)
			if !equalMaps(before, after) {
				t.Errorf("files outside dst changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestApplyCorrupt(t *testing.T) {
	good := tartest.Tar(t, tartest.File("a", strings.Repeat("a", 2000)), tartest.File("b", "b"))
	padded := append(append([]byte(nil), good...), make([]byte, 8192)...)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated in a file", good[:1024], ErrCorrupt},
		{"truncated in a header", good[:100], ErrCorrupt},
		{"garbage", bytes.Repeat([]byte("garbage!"), 128), ErrCorrupt},
		{"data after the end", append(append([]byte(nil), good...), make([]byte, maxTrailing+10)...), ErrCorrupt},
		{"padding after the end", padded, nil},
		{"empty", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(tc.data), Options{})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestApplyTree(t *testing.T) {
	parent, dst := sandbox(t)
	before := snapshot(t, parent, dst)
	ents := []tartest.Entry{
		tartest.Dir("./"),
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Type: tar.TypeReg, Body: "ELF", Mode: 0o4755, UID: 0, GID: 0},
		tartest.Symlink("bin/sh", "busybox"),
		tartest.Hardlink("bin/ls", "bin/busybox"),
		tartest.Symlink("lib", "usr/lib"),
		{Name: "usr/lib/libc.so", Type: tar.TypeReg, Body: "libc", Mode: 0o644, UID: 12, GID: 34},
		tartest.File("lib/via-link", "in usr/lib"),        // through an in-root symlink
		tartest.Symlink("abs", "/usr"),                    // absolute: the root is "/"
		tartest.File("abs/lib/abs-file", "in usr/lib"),    // through it
		tartest.Symlink("evil", "/../../../../etc"),       // stored verbatim; never written through
		tartest.Symlink("dangling", "../../../../victim"), // stored verbatim
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		{Name: "fifo", Type: tar.TypeFifo, Mode: 0o644},
		{Name: "xattr", Type: tar.TypeReg, Body: "x", Mode: 0o600, Xattrs: map[string]string{"user.color": "blue", "trusted.secret": "no"}},
		{Name: "ro/", Type: tar.TypeDir, Mode: 0o555},
		tartest.File("ro/inside", "ok"),
		tartest.File("/abs-name", "cleaned"),
		tartest.File("a/../cleaned", "inside"),
	}
	st, err := Apply(context.Background(), dst, bytes.NewReader(tartest.Tar(t, ents...)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"abs -> /usr",
		"abs-name = cleaned",
		"bin/",
		"bin/busybox = ELF",
		"bin/ls = ELF",
		"bin/sh -> busybox",
		"cleaned = inside",
		"dangling -> ../../../../victim",
		"dev/",
		"evil -> /../../../../etc",
		"lib -> usr/lib",
		"ro/",
		"ro/inside = ok",
		"usr/",
		"usr/lib/",
		"usr/lib/abs-file = in usr/lib",
		"usr/lib/libc.so = libc",
		"usr/lib/via-link = in usr/lib",
		"xattr = x",
	}, "\n")
	if got := tartest.Tree(t, dst, tartest.TreeOptions{}); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
	if st.Files != 8 || st.Symlinks != 5 || st.HardLinks != 1 || st.Skipped != 2 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(strings.Join(st.Notes, "\n"), "trusted.secret") || !strings.Contains(strings.Join(st.Notes, "\n"), "device nodes") {
		t.Errorf("notes %q", st.Notes)
	}
	var bb, ls unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "bin/busybox"), &bb); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(dst, "bin/ls"), &ls); err != nil {
		t.Fatal(err)
	}
	if bb.Ino != ls.Ino {
		t.Error("bin/ls is not a hard link of bin/busybox")
	}
	if bb.Mode&0o7777 != 0o4755 {
		t.Errorf("busybox mode %o", bb.Mode&0o7777)
	}
	if mt := time.Unix(bb.Mtim.Unix()); !mt.Equal(tartest.Time) {
		t.Errorf("busybox mtime %v", mt)
	}
	fi, err := os.Stat(filepath.Join(dst, "ro"))
	if err != nil || fi.Mode().Perm() != 0o555 || !fi.ModTime().Equal(tartest.Time) {
		t.Errorf("ro: %v %v", fi.Mode(), err)
	}
	fi, err = os.Lstat(filepath.Join(dst, "bin/sh"))
	if err != nil || !fi.ModTime().Equal(tartest.Time) {
		t.Errorf("bin/sh mtime: %v %v", fi.ModTime(), err)
	}
	if os.Geteuid() == 0 {
		var lc unix.Stat_t
		if err := unix.Lstat(filepath.Join(dst, "usr/lib/libc.so"), &lc); err != nil {
			t.Fatal(err)
		}
		if lc.Uid != 12 || lc.Gid != 34 {
			t.Errorf("libc owner %d:%d", lc.Uid, lc.Gid)
		}
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dst, "xattr"), "user.color", buf); err == nil {
		if string(buf[:n]) != "blue" {
			t.Errorf("user.color = %q", buf[:n])
		}
	} else if !errors.Is(err, unix.ENOTSUP) {
		t.Errorf("user.color: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dst, "xattr"), "trusted.secret", buf); err == nil {
		t.Error("trusted.secret was set")
	}
	if !equalMaps(before, snapshot(t, parent, dst)) {
		t.Error("files outside dst changed")
	}
}

// TestApplyLayers applies layers in order: replacements, whiteouts and
// opaque directories.
func TestApplyLayers(t *testing.T) {
	lower := []tartest.Entry{
		tartest.File("a/x", "ax"), tartest.File("a/y", "ay"), tartest.File("a/sub/z", "asz"),
		tartest.File("b/z", "bz"), tartest.File("c", "c"),
		tartest.File("d/old", "dold"),
		tartest.File("e/keep", "ekeep"), tartest.File("e/gone", "egone"),
		tartest.Dir("f"), tartest.File("f/in-dir", "fin"),
		tartest.File("g", "g"),
		tartest.Symlink("h", "e"),
		tartest.Symlink("victim-link", "../victim"),
	}
	tests := []struct {
		name  string
		upper []tartest.Entry
		want  []string
	}{
		{"whiteout a file", []tartest.Entry{tartest.File(".wh.c", "")}, []string{"-c = c"}},
		{"whiteout a dir", []tartest.Entry{tartest.File(".wh.a", "")}, []string{"-a/", "-a/sub/", "-a/sub/z = asz", "-a/x = ax", "-a/y = ay"}},
		{"opaque dir", []tartest.Entry{tartest.Dir("a/"), tartest.File("a/.wh..wh..opq", ""), tartest.File("a/new", "anew")},
			[]string{"-a/sub/", "-a/sub/z = asz", "-a/x = ax", "-a/y = ay", "+a/new = anew"}},
		{"opaque after its entries", []tartest.Entry{tartest.File("a/new", "anew"), tartest.File("a/sub/w", "w"), tartest.File("a/.wh..wh..opq", "")},
			[]string{"-a/sub/z = asz", "-a/x = ax", "-a/y = ay", "+a/new = anew", "+a/sub/w = w"}},
		{"whiteout after same-layer entry", []tartest.Entry{tartest.File("d/new", "dnew"), tartest.File(".wh.d", "")},
			[]string{"-d/old = dold", "+d/new = dnew"}},
		{"whiteout in a missing dir", []tartest.Entry{tartest.File("nowhere/.wh.x", "")}, nil},
		{"whiteout below a file", []tartest.Entry{tartest.File("c/.wh.x", "")}, nil},
		{"whiteout through a symlink", []tartest.Entry{tartest.File("h/.wh.gone", "")}, []string{"-e/gone = egone"}},
		{"dir replaces file", []tartest.Entry{tartest.Dir("g"), tartest.File("g/in", "gin")}, []string{"-g = g", "+g/", "+g/in = gin"}},
		{"file replaces dir", []tartest.Entry{tartest.File("f", "now a file")}, []string{"-f/", "-f/in-dir = fin", "+f = now a file"}},
		{"file replaces escaping symlink", []tartest.Entry{tartest.File("victim-link", "mine")}, []string{"-victim-link -> ../victim", "+victim-link = mine"}},
		{"symlink replaces dir", []tartest.Entry{tartest.Symlink("a", "b")}, []string{"-a/", "-a/sub/", "-a/sub/z = asz", "-a/x = ax", "-a/y = ay", "+a -> b"}},
		{"hard link to lower file", []tartest.Entry{tartest.Hardlink("c2", "c")}, []string{"+c2 = c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent, dst := sandbox(t)
			before := snapshot(t, parent, dst)
			if _, err := Apply(context.Background(), dst, bytes.NewReader(tartest.Tar(t, lower...)), Options{}); err != nil {
				t.Fatal(err)
			}
			base := tartest.Tree(t, dst, tartest.TreeOptions{})
			if _, err := Apply(context.Background(), dst, bytes.NewReader(tartest.Tar(t, tc.upper...)), Options{}); err != nil {
				t.Fatal(err)
			}
			got := diffLines(base, tartest.Tree(t, dst, tartest.TreeOptions{}))
			if strings.Join(got, "\n") != strings.Join(sorted(tc.want), "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sorted(tc.want), "\n"))
			}
			if !equalMaps(before, snapshot(t, parent, dst)) {
				t.Error("files outside dst changed")
			}
		})
	}
}

// TestApplyAttrs checks the metadata Attrs records, as an unprivileged
// process would see it.
func TestApplyAttrs(t *testing.T) {
	for _, privileged := range []bool{false, true} {
		t.Run(map[bool]string{false: "unprivileged", true: "privileged"}[privileged], func(t *testing.T) {
			if privileged && os.Geteuid() != 0 {
				t.Skip("not root")
			}
			dst := t.TempDir()
			attrs := NewAttrs()
			l1 := tartest.Tar(t,
				tartest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o700, UID: 5, GID: 6},
				tartest.Entry{Name: "etc/shadow", Type: tar.TypeReg, Body: "s", Mode: 0o000, UID: 0, GID: 42},
				tartest.Entry{Name: "bin/ping", Type: tar.TypeReg, Body: "p", Mode: 0o4711, Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
				tartest.Hardlink("bin/ping6", "bin/ping"),
				tartest.File("old/x", "x"),
			)
			l2 := tartest.Tar(t, tartest.File(".wh.old", ""), tartest.File("etc/.wh.shadow", ""))
			for _, l := range [][]byte{l1, l2} {
				if _, err := apply(context.Background(), dst, bytes.NewReader(l), Options{Attrs: attrs}, privileged); err != nil {
					t.Fatal(err)
				}
			}
			tests := []struct {
				path string
				want *Attr
			}{
				{"", &Attr{Mode: 0o755, ModTime: time.Unix(0, 0).UTC(), Implicit: true}},
				{"etc", &Attr{Mode: 0o700, UID: 5, GID: 6, ModTime: tartest.Time}},
				{"etc/shadow", nil},
				{"bin", &Attr{Mode: 0o755, ModTime: time.Unix(0, 0).UTC(), Implicit: true}},
				{"bin/ping", &Attr{Mode: 0o4711, ModTime: tartest.Time}},
				{"bin/ping6", &Attr{Mode: 0o4711, ModTime: tartest.Time}},
				{"old", nil},
				{"old/x", nil},
			}
			for _, tc := range tests {
				got, ok := attrs.Get(tc.path)
				if tc.want == nil {
					if ok {
						t.Errorf("%q: %+v, want none", tc.path, got)
					}
					continue
				}
				got.Xattrs = nil
				if !ok || got.Mode != tc.want.Mode || got.UID != tc.want.UID || got.GID != tc.want.GID ||
					!got.ModTime.Equal(tc.want.ModTime) || got.Implicit != tc.want.Implicit {
					t.Errorf("%q: %+v (%v), want %+v", tc.path, got, ok, *tc.want)
				}
			}
			if at, _ := attrs.Get("bin/ping"); len(at.Xattrs["security.capability"]) != 20 {
				t.Errorf("capability not recorded: %v", at.Xattrs)
			}
			fi, err := os.Stat(filepath.Join(dst, "etc"))
			if err != nil {
				t.Fatal(err)
			}
			if !privileged && fi.Mode().Perm() != 0o700 {
				t.Errorf("etc mode on disk %v", fi.Mode())
			}
			if attrs.Len() != 5 {
				t.Errorf("Len %d, want 5", attrs.Len())
			}
			st := fi.Sys().(*syscall.Stat_t)
			if privileged && (st.Uid != 5 || st.Gid != 6) {
				t.Errorf("etc owner %d:%d", st.Uid, st.Gid)
			}
		})
	}
}

func TestApplyCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	data := tartest.Tar(t, tartest.File("a", strings.Repeat("a", 1<<20)), tartest.File("b", "b"))
	r := &cancelAfter{r: bytes.NewReader(data), n: 4096, cancel: cancel}
	_, err := Apply(ctx, t.TempDir(), r, Options{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Apply: %v, want context.Canceled", err)
	}
	// The same through a compressed stream.
	ctx, cancel = context.WithCancel(context.Background())
	var gz bytes.Buffer
	zw := newGzip(&gz)
	zw.Write(data)
	zw.Close()
	rc, err := Decompress(&ctxReader{ctx: ctx, r: &cancelAfter{r: bytes.NewReader(gz.Bytes()), n: 1024, cancel: cancel}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Apply(context.Background(), t.TempDir(), rc, Options{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Apply through gzip: %v, want context.Canceled", err)
	}
}

// cancelAfter cancels once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 512 {
		p = p[:512]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// diffLines lists the lines removed ("-") from and added ("+") to a tree
// listing, sorted.
func diffLines(before, after string) []string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for l := range strings.SplitSeq(s, "\n") {
			m[l] = true
		}
		return m
	}
	b, a := in(before), in(after)
	var out []string
	for l := range b {
		if !a[l] {
			out = append(out, "-"+l)
		}
	}
	for l := range a {
		if !b[l] {
			out = append(out, "+"+l)
		}
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
