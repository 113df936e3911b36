package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
)

// TestMaterializeSubtree: a named volume starts with the tree under its
// mount path, that directory's owner and mode on the volume's top.
func TestMaterializeSubtree(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img, err := s.Import(ctx, baseImage(t), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subtree string
		want    string // the tree, as tartest.Tree lists it; "" for ErrNotFound
	}{
		{"/etc", "conf = conf\n"},
		{"/etc/", "conf = conf\n"},
		{"/opq", "upper = upper\n"},
		// bin/app-alias is a hard link to bin/app, both inside.
		{"/bin", "app = app binary\napp-alias = app binary\nsh -> app\nthrough-link = x\n"},
		{"/srv", "copy-of-same = shared content\n"},
		{"/nope", ""},
		{"/same", ""}, // a file, not a directory
		{"/usr/bin", ""},
	}
	for _, tc := range tests {
		t.Run(tc.subtree, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "vol")
			_, err := s.Materialize(ctx, img, dst, MaterializeOptions{Copy: true, Subtree: tc.subtree})
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Materialize: %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tartest.Tree(t, dst, tartest.TreeOptions{}) + "\n"; got != tc.want {
				t.Errorf("tree:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	// Owner and mode of /etc (0750, 7:8) go to the top; the file keeps
	// its own.
	dst := filepath.Join(t.TempDir(), "etc")
	if _, err := s.Materialize(ctx, img, dst, MaterializeOptions{Copy: true, Subtree: "/etc"}); err != nil {
		t.Fatal(err)
	}
	var top, conf syscall.Stat_t
	if err := syscall.Lstat(dst, &top); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(dst, "conf"), &conf); err != nil {
		t.Fatal(err)
	}
	if top.Mode&0o7777 != 0o750 || conf.Mode&0o7777 != 0o640 {
		t.Errorf("modes %o %o", top.Mode&0o7777, conf.Mode&0o7777)
	}
	if os.Geteuid() == 0 && (top.Uid != 7 || top.Gid != 8 || conf.Uid != 7) {
		t.Errorf("owners %d:%d %d", top.Uid, top.Gid, conf.Uid)
	}
}

// TestSubtreeHardLinkOutside: a hard link whose first name is outside the
// subtree becomes a file of its own inside, and later links to the same
// file link to it.
func TestSubtreeHardLinkOutside(t *testing.T) {
	entries := []Entry{
		{Path: "/", Type: TypeDir},
		{Path: "/a", Type: TypeFile, Digest: "sha256:x"},
		{Path: "/d", Type: TypeDir},
		{Path: "/d/b", Type: TypeFile, Link: "/a", Digest: "sha256:x"},
		{Path: "/d/c", Type: TypeFile, Link: "/a", Digest: "sha256:x"},
		{Path: "/d/e", Type: TypeFile, Link: "/d/b", Digest: "sha256:x"},
	}
	got, err := subtree(entries, "/d")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{Path: "/", Type: TypeDir}, {Path: "/b", Type: TypeFile, Digest: "sha256:x"},
		{Path: "/c", Type: TypeFile, Link: "/b", Digest: "sha256:x"}, {Path: "/e", Type: TypeFile, Link: "/b", Digest: "sha256:x"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Path != want[i].Path || got[i].Link != want[i].Link {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
