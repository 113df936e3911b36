package store

import (
	"context"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// Untag takes the names names from the images that have them (a name
// belongs to one image at a time, so each from at most one), and returns
// the images that lost one, as they are afterwards. An image left
// without a name is removed too when removeUnnamed is set, under the same
// lock, so that no Tag in between can name an image that then goes: the
// Docker API's `docker rmi NAME`, which untags a name and deletes the
// image with its last. A name no image has is ErrNotFound, and then
// nothing changes.
func (s *Store) Untag(ctx context.Context, names []string, removeUnnamed bool) (changed []Image, removed []Image, err error) {
	l, err := s.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return nil, nil, err
	}
	defer l.unlock()
	imgs, err := s.records()
	if err != nil {
		return nil, nil, err
	}
	found := false
	for _, img := range imgs {
		if !slices.ContainsFunc(img.Names, func(n string) bool { return slices.Contains(names, n) }) {
			continue
		}
		found = true
		img.Names = slices.DeleteFunc(img.Names, func(n string) bool { return slices.Contains(names, n) })
		if len(img.Names) == 0 && removeUnnamed {
			if err := os.Remove(s.recordPath(img.ID)); err != nil {
				return changed, removed, fmt.Errorf("remove image %s: %w", img.ShortID(), err)
			}
			removed = append(removed, img)
			continue
		}
		if err := s.writeRecord(img); err != nil {
			return changed, removed, err
		}
		changed = append(changed, img)
	}
	if !found {
		return nil, nil, fmt.Errorf("untag: %w: %q", ErrNotFound, names)
	}
	if len(removed) > 0 {
		if err := syncDir(s.path("images")); err != nil {
			return changed, removed, err
		}
	}
	return changed, removed, nil
}

// ConfigBlob returns img's config as it was imported (the image config
// JSON whose digest is img.ConfigDigest, checked against it): its history,
// author and the fields the record does not keep.
func (s *Store) ConfigBlob(ctx context.Context, img Image) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.readBlob(img.ConfigDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.ShortID(), err)
	}
	return b, nil
}
