package layer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names a layer stream's compression.
type Compression string

// The compressions Decompress recognizes.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// maxZstdWindow bounds the memory a zstd stream may ask for. Layers are
// compressed with the default window sizes (a few MiB); this leaves room
// for long-distance matching without letting a stream claim gigabytes.
const maxZstdWindow = 256 << 20

// The streams' magic numbers.
const (
	gzipMagic  = "\x1f\x8b"
	zstdMagic  = "\x28\xb5\x2f\xfd"
	bzip2Magic = "BZh"
	xzMagic    = "\xfd7zXZ\x00"
)

// Detect returns the compression of a stream that starts with head (at
// least its first 6 bytes, fewer if the stream is shorter), or
// ErrUnsupportedCompression for bzip2 and xz.
func Detect(head []byte) (Compression, error) {
	switch s := string(head); {
	case strings.HasPrefix(s, gzipMagic):
		return Gzip, nil
	case strings.HasPrefix(s, zstdMagic):
		return Zstd, nil
	case strings.HasPrefix(s, xzMagic):
		return "", fmt.Errorf("%w: xz", ErrUnsupportedCompression)
	case strings.HasPrefix(s, bzip2Magic) && len(s) > 3 && s[3] >= '1' && s[3] <= '9':
		return "", fmt.Errorf("%w: bzip2", ErrUnsupportedCompression)
	}
	return None, nil
}

// Decompress returns the layer archive r holds, detecting gzip, zstd or no
// compression by the stream's first bytes. Reading a malformed or truncated
// compressed stream fails with an error wrapping ErrCorrupt; errors of r
// itself are returned as they are. Close releases the decompressor, not r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	head, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		if src.err != nil {
			return nil, fmt.Errorf("decompress layer: %w", err)
		}
		return nil, fmt.Errorf("decompress layer: %w: %w", ErrCorrupt, err)
	}
	c, err := Detect(head)
	if err != nil {
		return nil, fmt.Errorf("decompress layer: %w", err)
	}
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, src.wrap("gzip", err)
		}
		return &decompressor{r: zr, src: src, kind: "gzip", close: zr.Close}, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, src.wrap("zstd", err)
		}
		return &decompressor{r: zr, src: src, kind: "zstd", close: func() error { zr.Close(); return nil }}, nil
	}
	return io.NopCloser(br), nil
}

// sourceReader remembers the errors of the compressed stream's reader, so
// that they are not taken for corruption.
type sourceReader struct {
	r   io.Reader
	err error
}

// Read implements io.Reader.
func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// wrap describes an error of a decompressor.
func (s *sourceReader) wrap(kind string, err error) error {
	if s.err != nil && errors.Is(err, s.err) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: truncated %s stream", ErrCorrupt, kind)
	}
	return fmt.Errorf("%w: %s stream: %w", ErrCorrupt, kind, err)
}

type decompressor struct {
	r     io.Reader
	src   *sourceReader
	kind  string
	close func() error
}

// Read implements io.Reader, describing the decompressor's errors.
func (d *decompressor) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = d.src.wrap(d.kind, err)
	}
	return n, err
}

// Close releases the decompressor.
func (d *decompressor) Close() error { return d.close() }
