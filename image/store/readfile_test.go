package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestReadFile(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	src := build(t, "test/files:1", imageSpec{
		config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		layers: [][]byte{mktar(t,
			dir("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), hardlink("etc/passwd-", "etc/passwd"),
			symlink("etc/group", "../../../etc/real-group"), file("etc/real-group", "root:x:0:\n"),
			symlink("etc/abs", "/etc/passwd"), symlink("etc/loop", "loop"), symlink("lnk", "etc"),
			file("big", strings.Repeat("x", 100)),
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
