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
)

// FuzzApply feeds arbitrary streams to Decompress and Apply, asserting that
// nothing outside the destination changes and that nothing panics.
func FuzzApply(f *testing.F) {
	f.Add(mktar(f, file("a", "x"), dir("d"), symlink("d/s", "../a"), hardlink("h", "a")))
	f.Add(gzipped(f, mktar(f, file("usr/bin/app", "app"), symlink("bin", "usr/bin"), file("bin/.wh.app", ""))))
	f.Add(zstded(f, mktar(f, dir("etc"), file("etc/.wh..wh..opq", ""), file("etc/hosts", "h"))))
	f.Add(mktar(f, symlink("abs", "/"), file("abs/etc/passwd", "inside"), ent{name: "dev/null", typ: tar.TypeChar}))
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
		lower := mktar(t, file("lower/f", "f"), dir("lower/d"), symlink("lower/up", "../.."), symlink("lower/abs", "/lower"))
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
