package initramfs

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestWriterRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	// Sizes around every alignment, and one large enough for the kernel
	// copy path.
	var contents [][]byte
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 1 << 20} {
		contents = append(contents, bytes.Repeat([]byte{byte('a' + n%26)}, n))
	}
	entries := []Entry{
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
		{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/usr", Mode: fs.ModeDir | 0o755, ModTime: time.Unix(1700000000, 0)},
		{Path: "/usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "/usr/bin/su", Mode: fs.ModeSetuid | 0o755, UID: 0, GID: 0},
		{Path: "/usr/lib", Mode: fs.ModeDir | 0o755},
		{Path: "/usr/lib/link", Mode: fs.ModeSymlink | 0o777, Target: "../bin/su"},
		{Path: "/usr/lib/l", Mode: fs.ModeSymlink | 0o777, Target: "abc"},
		{Path: "/usr/lib/empty", Mode: 0o644},
		{Path: "/var", Mode: fs.ModeDir | 0o750, UID: 1, GID: 2},
	}
	for i, c := range contents {
		p := src + string(rune('0'+i))
		if err := os.WriteFile(p, c, 0o644); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Path: "/usr/lib/f" + strings.Repeat("x", i), Source: p, Mode: 0o640})
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range entries {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteEntry(entries[0]); err == nil {
		t.Error("write after Close succeeded")
	}
	rs := readArchive(t, buf.Bytes())
	if len(rs) != len(entries) {
		t.Fatalf("%d records, want %d", len(rs), len(entries))
	}
	m := byName(rs)
	check := func(name string, mode, nlink uint32, data string) {
		t.Helper()
		r, ok := m[name]
		if !ok {
			t.Fatalf("%s missing", name)
		}
		if r.mode != mode || r.nlink != nlink || string(r.data) != data {
			t.Errorf("%s, want mode=%o nlink=%d data=%q", describe(r), mode, nlink, data)
		}
	}
	check("dev", 0o40755, 2, "")
	check("tmp", 0o41777, 2, "")
	check("usr/bin/su", 0o104755, 1, "")
	check("usr/lib/link", 0o120777, 1, "../bin/su")
	check("usr/lib/l", 0o120777, 1, "abc")
	check("usr/lib/empty", 0o100644, 1, "")
	for i, c := range contents {
		check("usr/lib/f"+strings.Repeat("x", i), 0o100640, 1, string(c))
	}
	if c := m["dev/console"]; c.mode != 0o20600 || c.rmajor != 5 || c.rminor != 1 || c.size != 0 {
		t.Errorf("console: %s", describe(c))
	}
	if v := m["var"]; v.uid != 1 || v.gid != 2 {
		t.Errorf("var: uid %d gid %d", v.uid, v.gid)
	}
	if m["usr"].mtime != 1700000000 {
		t.Errorf("usr: mtime %d", m["usr"].mtime)
	}
	inos := make(map[uint32]bool)
	for _, r := range rs {
		if inos[r.ino] || r.ino == 0 {
			t.Errorf("%s: inode %d reused or zero", r.name, r.ino)
		}
		inos[r.ino] = true
		if r.checkField != 0 {
			t.Errorf("%s: check %d", r.name, r.checkField)
		}
	}

	// GNU cpio agrees, when it is installed.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		got := strings.Fields(string(out))
		var want []string
		for _, e := range entries {
			want = append(want, e.Path[1:])
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("cpio -t lists %v, want %v", got, want)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]Entry{
		"relative":        {Path: "usr", Mode: fs.ModeDir | 0o755},
		"unclean":         {Path: "/usr/../x", Mode: 0o644},
		"root":            {Path: "/", Mode: fs.ModeDir | 0o755},
		"trailer name":    {Path: "/" + trailerName, Mode: 0o644},
		"missing source":  {Path: "/x", Source: filepath.Join(dir, "nope"), Mode: 0o644},
		"dir source":      {Path: "/x", Source: dir, Mode: 0o644},
		"link no target":  {Path: "/x", Mode: fs.ModeSymlink | 0o777},
		"socket":          {Path: "/x", Mode: fs.ModeSocket | 0o777},
		"irregular other": {Path: "/x", Mode: fs.ModeIrregular},
	}
	for name, e := range tests {
		w := NewWriter(&bytes.Buffer{})
		err := w.WriteEntry(e)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		// The error sticks.
		if w.WriteEntry(Entry{Path: "/ok", Mode: 0o644}) == nil || w.Close() == nil {
			t.Errorf("%s: the writer went on after an error", name)
		}
	}
}
