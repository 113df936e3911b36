package unit

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseTmpfiles(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []TmpDir
		notes    int
		err      string
	}{
		{name: "memcached", in: "d /run/memcached 0755 memcache memcache -\n",
			want: []TmpDir{{Path: "/run/memcached", Mode: 0o755, HasMode: true, User: "memcache", Group: "memcache", Where: "f:1"}}},
		{name: "postgresql", in: "# sockets\nd /run/postgresql 2775 postgres postgres - -\n\n# logs\nd /var/log/postgresql 1775 root postgres - -\n",
			want: []TmpDir{
				{Path: "/run/postgresql", Mode: 0o2775, HasMode: true, User: "postgres", Group: "postgres", Where: "f:2"},
				{Path: "/var/log/postgresql", Mode: 0o1775, HasMode: true, User: "root", Group: "postgres", Where: "f:5"},
			}},
		{name: "defaults", in: "D /run/lock\nd! /var/lib/x - - -\n",
			want: []TmpDir{{Path: "/run/lock", Where: "f:1"}, {Path: "/var/lib/x", Where: "f:2"}}},
		{name: "modifiers and prefixes", in: "d-= /run/a :0700 :1 :2 10d\nd!- /root :0700 root :root -\n",
			want: []TmpDir{
				{Path: "/run/a", Mode: 0o700, HasMode: true, User: "1", Group: "2", Optional: true, Replace: true, Where: "f:1"},
				{Path: "/root", Mode: 0o700, HasMode: true, User: "root", Group: "root", Optional: true, Where: "f:2"},
			}},
		{name: "specifiers", in: "d %t/x 0750 %u %G\nd %S/%%lit\n",
			want: []TmpDir{{Path: "/run/x", Mode: 0o750, HasMode: true, User: "root", Group: "0", Where: "f:1"}, {Path: "/var/lib/%lit", Where: "f:2"}}},
		{name: "quoted", in: `d "/run/with space" 0755 - -` + "\n",
			want: []TmpDir{{Path: "/run/with space", Mode: 0o755, HasMode: true, Where: "f:1"}}},
		{name: "cleaned", in: "d /run//x/ 0755\n", want: []TmpDir{{Path: "/run/x", Mode: 0o755, HasMode: true, Where: "f:1"}}},
		{name: "other types noted", in: "f /var/log/wtmp 0664 root utmp -\nL+ /etc/mtab - - - - ../proc/self/mounts\nx /tmp/systemd-private-%b-*\nq\n", notes: 4},
		{name: "relative", in: "d run/x\n", err: "f:1: path"},
		{name: "dotdot", in: "d /run/../etc\n", err: "f:1: path"},
		{name: "glob", in: "d /run/*\n", err: "f:1: path"},
		{name: "root", in: "d /\n", err: "f:1: path /"},
		{name: "no path", in: "d\n", err: "f:1: a directory without a path"},
		{name: "bad mode", in: "d /run/x 0999\n", err: "f:1: mode"},
		{name: "big mode", in: "d /run/x 17777\n", err: "f:1: mode"},
		{name: "machine id", in: "d /run/log/journal/%m\n", err: "%m"},
		{name: "unit specifier", in: "d /run/%n\n", err: "not one of tmpfiles.d's"},
		{name: "lone percent", in: "d /run/x%\n", err: "lone"},
		{name: "bad user", in: "d /run/x 0755 a:b\n", err: "not a user"},
		{name: "modifier", in: "d+ /run/x\n", err: "modifier '+'"},
		{name: "unterminated quote", in: "d \"/run/x\n", err: "f:1"},
		{name: "long line", in: "d /" + strings.Repeat("a", maxTmpfilesLine) + "\n", err: "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, notes, err := ParseTmpfiles("f", []byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes %q, want %d", notes, tc.notes)
			}
		})
	}
}

func TestLoadTmpfiles(t *testing.T) {
	r := root(t, map[string]string{
		"usr/lib/tmpfiles.d/memcached.conf": "d /run/memcached 0755 memcache memcache -\n",
		"usr/lib/tmpfiles.d/b.conf":         "d /run/b 0700\nd /run/memcached 0700 root root\n",
		"usr/lib/tmpfiles.d/masked.conf":    "d /run/masked\n",
		"usr/lib/tmpfiles.d/over.conf":      "d /run/lib\n",
		"usr/lib/tmpfiles.d/README":         "d /run/not-a-conf\n",
		"lib/tmpfiles.d/over.conf":          "d /run/lower\n",
		"lib/tmpfiles.d/a.conf":             "d /run/a\n",
		"etc/tmpfiles.d/over.conf":          "d /run/etc\n",
		"etc/tmpfiles.d/masked.conf":        "->/dev/null",
	})
	for _, tc := range []struct {
		name  string
		names []string
		files []string
		dirs  []string
	}{
		{name: "all", files: []string{"/lib/tmpfiles.d/a.conf", "/usr/lib/tmpfiles.d/b.conf", "/usr/lib/tmpfiles.d/memcached.conf", "/etc/tmpfiles.d/over.conf"},
			dirs: []string{"/run/a", "/run/b", "/run/memcached", "/run/etc"}},
		{name: "a package's", names: []string{"memcached.conf", "masked.conf"}, files: []string{"/usr/lib/tmpfiles.d/memcached.conf"}, dirs: []string{"/run/memcached"}},
		{name: "overridden", names: []string{"over.conf"}, files: []string{"/etc/tmpfiles.d/over.conf"}, dirs: []string{"/run/etc"}},
		{name: "none", names: []string{}, files: nil, dirs: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf, err := LoadTmpfiles(r, tc.names)
			if err != nil {
				t.Fatal(err)
			}
			var dirs []string
			for _, d := range tf.Dirs {
				dirs = append(dirs, d.Path)
			}
			if !reflect.DeepEqual(tf.Files, tc.files) || !reflect.DeepEqual(dirs, tc.dirs) {
				t.Errorf("files %q dirs %q, want %q %q (notes %q)", tf.Files, dirs, tc.files, tc.dirs, tf.Notes)
			}
		})
	}
	// The first line for a path wins: b.conf's /run/memcached comes
	// first by name, and memcached.conf's is noted.
	tf, err := LoadTmpfiles(r, []string{"b.conf", "memcached.conf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tf.Dirs) != 2 || tf.Dirs[1].Mode != 0o700 || tf.Dirs[1].User != "root" || len(tf.Notes) != 1 {
		t.Errorf("dirs %+v notes %q", tf.Dirs, tf.Notes)
	}
}

func TestLoadTmpfilesBounds(t *testing.T) {
	files := map[string]string{}
	var b strings.Builder
	for i := range MaxTmpDirs + 1 {
		b.WriteString("d /run/d" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "/" + strings.Repeat("y", i) + "\n")
	}
	files["usr/lib/tmpfiles.d/many.conf"] = b.String()
	if _, err := LoadTmpfiles(root(t, files), nil); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d directories: err %v", MaxTmpDirs+1, err)
	}
	big := root(t, map[string]string{"usr/lib/tmpfiles.d/big.conf": strings.Repeat("#\n", maxTmpfilesFile)})
	if _, err := LoadTmpfiles(big, nil); err == nil {
		t.Error("a file over the size limit was read")
	}
}

// TestHostTmpfiles parses every tmpfiles.d file of this host: Debian's
// own (systemd's, with types and specifiers Arrow does not run) must
// parse, not fail.
func TestHostTmpfiles(t *testing.T) {
	if _, err := os.Stat("/usr/lib/tmpfiles.d"); err != nil {
		t.Fatalf("this host has no tmpfiles.d: %v", err)
	}
	tf, err := LoadTmpfiles(DirFS("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tf.Files) == 0 {
		t.Error("no file read")
	}
	t.Logf("%d files, %d directories, %d notes", len(tf.Files), len(tf.Dirs), len(tf.Notes))
}

func FuzzParseTmpfiles(f *testing.F) {
	for _, s := range []string{
		"d /run/memcached 0755 memcache memcache -\n",
		"D! /run/x :0700 - - 1d\nL+ /etc/mtab - - - - ../proc/self/mounts\n",
		"d \"/run/a b\" ~2775 %u %G\n# c\n\nf /x 0644 - - - \"content\\n\"\n",
		"d /run/%m\nd /run/%%\nd /run/\\x41\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dirs, _, err := ParseTmpfiles("f", b)
		if err != nil {
			return
		}
		for _, d := range dirs {
			if !strings.HasPrefix(d.Path, "/") || d.Path == "/" || strings.Contains(d.Path, "/../") || strings.ContainsAny(d.Path, "\x00*?[") || d.Mode > 0o7777 {
				t.Fatalf("bad directory %+v from %q", d, b)
			}
			if strings.ContainsAny(d.User+d.Group, ":/\x00") {
				t.Fatalf("bad owner %+v from %q", d, b)
			}
		}
	})
}
