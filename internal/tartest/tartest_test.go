package tartest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTar(t *testing.T) {
	later := Time.Add(time.Hour)
	x := File("etc/x", "data")
	x.UID, x.GID, x.MTime, x.Xattrs = 7, 8, later, map[string]string{"user.k": "v"}
	ents := []Entry{Dir("etc"), x, Symlink("s", "etc/x"), Hardlink("h", "etc/x"), {Name: "dev/null", Type: tar.TypeChar}}
	tr := tar.NewReader(bytes.NewReader(Tar(t, ents...)))
	for _, want := range ents {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		mt := want.MTime
		if mt.IsZero() {
			mt = Time
		}
		if h.Name != want.Name || h.Typeflag != want.Type || h.Linkname != want.Link || h.Mode != want.Mode ||
			h.Uid != want.UID || h.Gid != want.GID || !h.ModTime.Equal(mt) || string(body) != want.Body ||
			h.PAXRecords["SCHILY.xattr.user.k"] != want.Xattrs["user.k"] {
			t.Errorf("read %+v body %q, wrote %+v", h, body, want)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the entries: %v, want EOF", err)
	}
}

func TestRandomFiles(t *testing.T) {
	a, b := RandomFiles(1, "d", 3, 20), RandomFiles(1, "d", 3, 20)
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Body != b[i].Body {
			t.Errorf("file %d differs for the same seed", i)
		}
		if a[i].Name != "d/f00"+string(rune('0'+i)) || len(a[i].Body) != 20 {
			t.Errorf("file %d: %s, %d bytes", i, a[i].Name, len(a[i].Body))
		}
	}
	if a[0].Body == a[1].Body || a[0].Body == RandomFiles(2, "d", 1, 20)[0].Body {
		t.Error("files share their content")
	}
}

func TestTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"d/short": "hi", "long": strings.Repeat("x", 40)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, Time, Time); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d/short", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    TreeOptions
		want []string
	}{
		{"content", TreeOptions{}, []string{"d/", "d/short = hi", "long = " + strings.Repeat("x", 40), "s -> d/short"}},
		{"root, short content", TreeOptions{Root: true, MaxContent: 32}, []string{"./", "d/", "d/short = hi", "long = 40 bytes", "s -> d/short"}},
		{"stat", TreeOptions{Root: true, Stat: true}, []string{
			// sha256("hi") and sha256(40 x) start so.
			"d/short -rw-r--r-- 1714979289 8f434346648f",
			"long -rw-r--r-- 1714979289 bd913ff68243",
			"s Lrwxrwxrwx ",
		}},
	} {
		got := Tree(t, dir, tc.o)
		if tc.o.Stat {
			// Directories' and links' times are the test's: check the
			// files' lines whole and the link's start.
			lines := strings.Split(got, "\n")
			if len(lines) != 5 || !strings.HasPrefix(lines[0], ". drwx") || !strings.HasPrefix(lines[1], "d drwxr-xr-x ") ||
				lines[2] != tc.want[0] || lines[3] != tc.want[1] || !strings.HasPrefix(lines[4], tc.want[2]) || !strings.HasSuffix(lines[4], " -> d/short") {
				t.Errorf("%s: got\n%s", tc.name, got)
			}
			continue
		}
		if want := strings.Join(tc.want, "\n"); got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, got, want)
		}
	}
}
