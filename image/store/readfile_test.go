package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestReadFile(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	src := build(t, "test/files:1", imageSpec{
		config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		layers: [][]byte{tartest.Tar(t,
			tartest.Dir("etc"), tartest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), tartest.Hardlink("etc/passwd-", "etc/passwd"),
			tartest.Symlink("etc/group", "../../../etc/real-group"), tartest.File("etc/real-group", "root:x:0:\n"),
			tartest.Symlink("etc/abs", "/etc/passwd"), tartest.Symlink("etc/loop", "loop"), tartest.Symlink("lnk", "etc"),
			tartest.File("big", strings.Repeat("x", 100)),
		)},
	})
	img, err := s.Import(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want string
		err  error // nil: want is the content
		msg  string
	}{
		{"/etc/passwd", "root:x:0:0::/root:/bin/sh\n", nil, ""},
		{"/etc/passwd-", "root:x:0:0::/root:/bin/sh\n", nil, ""},
		// ".." at the top stays at the image's root.
		{"/etc/group", "root:x:0:\n", nil, ""},
		{"/etc/abs", "root:x:0:0::/root:/bin/sh\n", nil, ""},
		{"/lnk/./passwd", "root:x:0:0::/root:/bin/sh\n", nil, ""},
		{"/etc/missing", "", fs.ErrNotExist, ""},
		{"/etc", "", ErrNotRegular, "a dir"},
		{"/etc/loop", "", nil, "too many levels"},
		{"/big/x", "", nil, "not a directory"},
		{"/big", "", ErrTooLarge, ""},
	}
	for _, tt := range tests {
		got, err := s.ReadFile(ctx, img, tt.name, 64)
		switch {
		case tt.err == nil && tt.msg == "":
			if err != nil || string(got) != tt.want {
				t.Errorf("ReadFile(%s) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		case tt.err != nil && !errors.Is(err, tt.err), err == nil, !strings.Contains(err.Error(), tt.msg):
			t.Errorf("ReadFile(%s) = %q, %v; want error %v %q", tt.name, got, err, tt.err, tt.msg)
		}
	}

	// A stored file that was tampered with is not returned.
	entries, err := s.Tree(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Path == "/etc/real-group" {
			if err := os.WriteFile(s.filePath(e.Digest), []byte("evil:x:0:\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.ReadFile(ctx, img, "/etc/group", 64); !errors.Is(err, ErrCorruptStore) {
		t.Errorf("tampered file: %v", err)
	}
}
