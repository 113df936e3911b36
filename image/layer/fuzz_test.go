package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
)

// FuzzApply feeds arbitrary streams to Decompress and Apply, asserting that
// nothing outside the destination changes and that nothing panics.
func FuzzApply(f *testing.F) {
	f.Add(tartest.Tar(f, tartest.File("a", "x"), tartest.Dir("d"), tartest.Symlink("d/s", "../a"), tartest.Hardlink("h", "a")))
	f.Add(gzipped(f, tartest.Tar(f, tartest.File("usr/bin/app", "app"), tartest.Symlink("bin", "usr/bin"), tartest.File("bin/.wh.app", ""))))
	f.Add(zstded(f, tartest.Tar(f, tartest.Dir("etc"), tartest.File("etc/.wh..wh..opq", ""), tartest.File("etc/hosts", "h"))))
	f.Add(tartest.Tar(f, tartest.Symlink("abs", "/"), tartest.File("abs/etc/passwd", "inside"), tartest.Entry{Name: "dev/null", Type: tar.TypeChar}))
	opts := Options{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxEntries: 512}
	// One directory for all the runs of a worker, cheaper than t.TempDir.
	base, err := os.MkdirTemp("", "fuzz-apply-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(base) })
	var runs atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, dst := sandboxIn(t, filepath.Join(base, strconv.FormatInt(runs.Add(1), 10)))
		defer os.RemoveAll(parent)
		lower := tartest.Tar(t, tartest.File("lower/f", "f"), tartest.Dir("lower/d"), tartest.Symlink("lower/up", "../.."), tartest.Symlink("lower/abs", "/lower"))
		if _, err := Apply(context.Background(), dst, bytes.NewReader(lower), Options{}); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, parent, dst)
		rc, err := Decompress(bytes.NewReader(data))
		if err == nil {
			_, _ = Apply(context.Background(), dst, rc, opts)
			rc.Close()
		}
		if after := snapshot(t, parent, dst); !equalMaps(before, after) {
			t.Fatalf("files outside dst changed:\nbefore %v\nafter  %v", before, after)
		}
	})
}
