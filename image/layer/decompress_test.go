package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func newGzip(w io.Writer) *gzip.Writer { return gzip.NewWriter(w) }

func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecompress(t *testing.T) {
	archive := tartest.Tar(t, tartest.File("usr/bin/app", strings.Repeat("app ", 10000)), tartest.Symlink("bin", "usr/bin"))
	gz, zs := gzipped(t, archive), zstded(t, archive)
	corruptGz := bytes.Clone(gz)
	corruptGz[len(corruptGz)/2] ^= 0xff
	corruptZs := bytes.Clone(zs)
	corruptZs[len(corruptZs)/2] ^= 0xff
	tests := []struct {
		name      string
		data      []byte
		want      error // from Decompress or reading
		wantApply bool  // Apply succeeds
	}{
		{"plain", archive, nil, true},
		{"gzip", gz, nil, true},
		{"zstd", zs, nil, true},
		{"empty", nil, nil, true},
		{"gzip truncated", gz[:len(gz)/2], ErrCorrupt, false},
		{"gzip truncated before its trailer", gz[:len(gz)-4], ErrCorrupt, false},
		{"gzip header only", gz[:5], ErrCorrupt, false},
		{"gzip corrupt", corruptGz, ErrCorrupt, false},
		{"gzip trailing garbage", append(bytes.Clone(gz), "garbage"...), ErrCorrupt, false},
		{"zstd truncated", zs[:len(zs)/2], ErrCorrupt, false},
		{"zstd corrupt", corruptZs, ErrCorrupt, false},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0}, ErrUnsupportedCompression, false},
		{"bzip2", []byte("BZh91AY&SY"), ErrUnsupportedCompression, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tc.data))
			if err == nil {
				defer rc.Close()
				_, err = Apply(context.Background(), t.TempDir(), rc, Options{})
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.wantApply != (err == nil) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestDecompressSourceError(t *testing.T) {
	boom := errors.New("network down")
	gz := gzipped(t, tartest.Tar(t, tartest.File("a", strings.Repeat("a", 100000))))
	for _, data := range [][]byte{gz, zstded(t, tartest.Tar(t, tartest.File("a", strings.Repeat("a", 100000))))} {
		rc, err := Decompress(io.MultiReader(bytes.NewReader(data[:len(data)/2]), &errReader{boom}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("got %v, want the source's error, not corruption", err)
		}
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

func TestDetect(t *testing.T) {
	tests := []struct {
		head []byte
		want Compression
		err  error
	}{
		{[]byte{0x1f, 0x8b, 8}, Gzip, nil},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd, nil},
		{[]byte("BZh9"), "", ErrUnsupportedCompression},
		{[]byte("BZhx"), None, nil},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "", ErrUnsupportedCompression},
		{[]byte("usr/"), None, nil},
		{nil, None, nil},
	}
	for _, tc := range tests {
		got, err := Detect(tc.head)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Detect(%q) = %q, %v; want %q, %v", tc.head, got, err, tc.want, tc.err)
		}
	}
}
