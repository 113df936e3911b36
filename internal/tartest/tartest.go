// Package tartest builds tar archives and describes extracted trees for the
// tests of the image packages (image/layer, image/oci, image/store): one
// copy of the helpers, so that what an archive in one package's tests
// holds means the same in the others'. It is for tests only.
package tartest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Time is the modification time of every entry that does not set its own.
var Time = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// Entry is one entry of a test archive.
type Entry struct {
	Name string
	Type byte
	// Body is a regular file's content; other types have none.
	Body string
	// Link is a link's target.
	Link     string
	Mode     int64
	UID, GID int
	// MTime is the modification time; [Time] when zero.
	MTime time.Time
	// Xattrs become SCHILY.xattr. PAX records.
	Xattrs map[string]string
}

// File is a regular file, mode 0644.
func File(name, body string) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Body: body, Mode: 0o644}
}

// Dir is a directory, mode 0755.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }

// Symlink is a symbolic link, mode 0777.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}

// Hardlink is a hard link; its mode is the target's, so it sets none.
func Hardlink(name, target string) Entry { return Entry{Name: name, Type: tar.TypeLink, Link: target} }

// Tar writes an archive of ents in the PAX format (which is plain USTAR
// for an entry that needs no PAX record).
func Tar(t testing.TB, ents ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mt := e.MTime
		if mt.IsZero() {
			mt = Time
		}
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: mt, Format: tar.FormatPAX}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("header %s: %v", e.Name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// RandomFiles makes n files of size random bytes under dir, the same for
// the same seed: content no compressor shrinks and no two files share.
func RandomFiles(seed uint64, dir string, n, size int) []Entry {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []Entry
	for i := range n {
		b := make([]byte, size)
		for j := 0; j < size; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		out = append(out, File(fmt.Sprintf("%s/f%03d", dir, i), string(b)))
	}
	return out
}

// TreeOptions choose what [Tree] tells of each entry.
type TreeOptions struct {
	// Root lists dir itself too, as ".".
	Root bool
	// Stat tells each entry's mode, modification time (Unix seconds) and,
	// for a file, the first 12 hex digits of its content's SHA-256,
	// instead of its content.
	Stat bool
	// MaxContent, when not zero, replaces a file's content longer than
	// it by its length, "N bytes".
	MaxContent int
}

// Tree describes the tree at dir as sorted lines, one an entry, by its
// path relative to dir: "path/" for a directory, "path -> target" for a
// symbolic link, "path = content" for anything else; or with
// [TreeOptions.Stat] "path mode mtime" followed by " -> target" or
// " sha256-prefix".
func Tree(t testing.TB, dir string, o TreeOptions) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." && !o.Root {
			return nil
		}
		var target string
		var content []byte
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ = os.Readlink(p)
		case !d.IsDir():
			if content, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		if o.Stat {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.ModTime().Unix())
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				line += " -> " + target
			case !d.IsDir():
				sum := sha256.Sum256(content)
				line += " " + hex.EncodeToString(sum[:])[:12]
			}
			lines = append(lines, line)
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			lines = append(lines, rel+" -> "+target)
		case d.IsDir():
			lines = append(lines, rel+"/")
		default:
			if o.MaxContent > 0 && len(content) > o.MaxContent {
				content = []byte(fmt.Sprintf("%d bytes", len(content)))
			}
			lines = append(lines, rel+" = "+string(content))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
