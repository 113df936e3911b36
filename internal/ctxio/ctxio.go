// Package ctxio makes long copies give up when their context ends. A
// read from a file or a pipe does not watch a context, so a copy of
// gigabytes (an image's files into the store, an apt build's tar) would
// otherwise outlive a Ctrl-C or a cancelled API request by minutes.
package ctxio

import (
	"context"
	"io"
)

// Reader is r that fails with ctx's error, before reading, once ctx is
// done. A read already under way finishes: checking before each read
// needs no goroutine per copy to interrupt one.
type Reader struct {
	ctx context.Context
	r   io.Reader
}

// NewReader returns r reading until ctx is done.
func NewReader(ctx context.Context, r io.Reader) *Reader { return &Reader{ctx: ctx, r: r} }

// Read implements io.Reader.
func (c *Reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
