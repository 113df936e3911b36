package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteTree: the tree holds the archive's files, links and mount
// points, and Key is the name Build gives the archive.
func TestWriteTree(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	set, files := testSet(t, src)
	dst := filepath.Join(t.TempDir(), "root")
	if err := WriteTree(context.Background(), set, dst); err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		b, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil || string(b) != content {
			t.Errorf("%s: %q, %v; want %q", p, b, err, content)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "bin")); err != nil || target != "usr/bin" {
		t.Errorf("/bin -> %q, %v", target, err)
	}
	fi, err := os.Stat(filepath.Join(dst, "tmp"))
	if err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v, %v: want a sticky 0777 directory", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "dev", "console")); err == nil {
		t.Error("/dev/console: device nodes are left out")
	}
	if err := WriteTree(context.Background(), set, dst); err == nil {
		t.Error("WriteTree into an existing directory succeeded")
	}
	b := &Builder{Dir: cache}
	key, err := b.Key(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.Build(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSuffix(filepath.Base(p), ".cpio"); got != key {
		t.Errorf("Key %s, archive %s", key, got)
	}
}
