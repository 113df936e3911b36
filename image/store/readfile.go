package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/arrowsys/arrow/internal/ctxio"
)

// maxSymlinkHops bounds the symbolic links ReadFile follows, as the
// kernel's MAXSYMLINKS does.
const maxSymlinkHops = 40

// ErrNotRegular is returned by [Store.ReadFile] for a path that names
// something other than a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ReadFile returns the content of the regular file at name (an absolute
// path in img's root file system) without materializing the image.
// Symbolic links are followed inside the image, never out of it: an
// absolute target or ".." at the top resolves from the image's root, as
// if it were chrooted. A file larger than max bytes is an error wrapping
// ErrTooLarge; a missing one wraps fs.ErrNotExist. The content is checked
// against its digest.
func (s *Store) ReadFile(ctx context.Context, img Image, name string, max int64) ([]byte, error) {
	entries, err := s.Tree(ctx, img)
	if err != nil {
		return nil, err
	}
	byPath := make(map[string]int, len(entries))
	for i, e := range entries {
		byPath[e.Path] = i
	}
	e, err := lookupEntry(entries, byPath, name)
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: %w", img.ShortID(), name, err)
	}
	if e.Link != "" {
		// A hard link: the content is the earlier entry's.
		i, ok := byPath[e.Link]
		if !ok || entries[i].Type != TypeFile || entries[i].Link != "" {
			return nil, fmt.Errorf("image %s: %s: %w: dangling hard link", img.ShortID(), name, ErrCorruptStore)
		}
		e = entries[i]
	}
	if e.Size > max {
		return nil, fmt.Errorf("image %s: %s: %w: %d bytes, at most %d", img.ShortID(), name, ErrTooLarge, e.Size, max)
	}
	if err := validDigest(e.Digest); err != nil {
		return nil, fmt.Errorf("image %s: %s: %w: %w", img.ShortID(), name, ErrCorruptStore, err)
	}
	f, err := os.Open(s.filePath(e.Digest))
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: stored file: %w", img.ShortID(), name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(ctxio.NewReader(ctx, f), e.Size+1))
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: %w", img.ShortID(), name, err)
	}
	if int64(len(b)) != e.Size || digest.SHA256.FromBytes(b) != e.Digest {
		return nil, fmt.Errorf("image %s: %s: %w: stored file %s does not match", img.ShortID(), name, ErrCorruptStore, e.Digest)
	}
	return b, nil
}

// lookupEntry resolves name in a tree, following symbolic links inside it.
func lookupEntry(entries []Entry, byPath map[string]int, name string) (Entry, error) {
	hops := 0
	// todo holds the components still to resolve, cur the resolved
	// directory so far.
	todo := splitPath(name)
	cur := "/"
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		p := path.Join(cur, c)
		i, ok := byPath[p]
		if !ok {
			return Entry{}, os.ErrNotExist
		}
		e := entries[i]
		switch {
		case e.Type == TypeSymlink:
			if hops++; hops > maxSymlinkHops {
				return Entry{}, errors.New("too many levels of symbolic links")
			}
			if strings.HasPrefix(e.Target, "/") {
				cur = "/"
			}
			todo = append(splitPath(e.Target), todo...)
		case len(todo) == 0:
			if e.Type != TypeFile {
				return Entry{}, fmt.Errorf("%w (a %s)", ErrNotRegular, e.Type)
			}
			return e, nil
		case e.Type != TypeDir:
			return Entry{}, fmt.Errorf("%s: not a directory", p)
		default:
			cur = p
		}
	}
	return Entry{}, fmt.Errorf("%w (a directory)", ErrNotRegular)
}

// splitPath splits a path into its non-empty components.
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
