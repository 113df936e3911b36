package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Usage is the store's disk usage: `arrow image du`.
type Usage struct {
	// Images counts the images.
	Images int
	// Files counts the stored file contents (files/).
	Files int
	// FileBytes is their size.
	FileBytes int64
	// Blobs counts the stored manifests, configs and trees (blobs/).
	Blobs int
	// BlobBytes is their size.
	BlobBytes int64
	// StoredBytes is what the store holds: FileBytes + BlobBytes.
	StoredBytes int64
	// UnsharedBytes is what the images would take each on its own: for
	// each image, its files (hard links counted once) and its manifest,
	// config and tree.
	UnsharedBytes int64
	// ReclaimableBytes is what Prune would free: files and blobs no image
	// refers to.
	ReclaimableBytes int64
	// PerImage details each image, in List's order.
	PerImage []ImageUsage
}

// ImageUsage is one image's share of the store.
type ImageUsage struct {
	// ID identifies the image.
	ID string
	// Names are its names.
	Names []string
	// Size is what the image would take on its own (see
	// Usage.UnsharedBytes).
	Size int64
	// UniqueBytes is what only this image refers to: what removing it
	// and pruning would free.
	UniqueBytes int64
}

// refs is what the images refer to.
type refs struct {
	// users counts, for each file and blob digest, the images that refer
	// to it.
	users map[digest.Digest]int
	// per holds each image's distinct digests.
	per map[string]map[digest.Digest]bool
}

// references reads every record and tree.
func (s *Store) references(ctx context.Context, imgs []Image) (refs, error) {
	r := refs{users: make(map[digest.Digest]int), per: make(map[string]map[digest.Digest]bool)}
	for _, img := range imgs {
		entries, err := s.Tree(ctx, img)
		if err != nil {
			return r, err
		}
		mine := map[digest.Digest]bool{img.Manifest: true, img.ConfigDigest: true, img.Tree: true}
		for _, e := range entries {
			if e.Type == TypeFile {
				mine[e.Digest] = true
			}
		}
		for d := range mine {
			r.users[d]++
		}
		r.per[img.ID] = mine
	}
	return r, nil
}

// storedObject is a file in files/ or blobs/.
type storedObject struct {
	dir  string
	name string
	d    digest.Digest
	size int64
}

// objects lists files/ and blobs/.
func (s *Store) objects() ([]storedObject, error) {
	var out []storedObject
	for _, dir := range []string{"files", "blobs"} {
		p := s.path(dir, "sha256")
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, storedObject{dir: dir, name: e.Name(), d: digest.NewDigestFromEncoded(digest.SHA256, e.Name()), size: fi.Size()})
		}
	}
	return out, nil
}

// Usage reports how much the store holds, and how much the images would
// take without sharing.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	l, err := s.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return u, err
	}
	defer l.unlock()
	imgs, err := s.records()
	if err != nil {
		return u, fmt.Errorf("usage: %w", err)
	}
	r, err := s.references(ctx, imgs)
	if err != nil {
		return u, fmt.Errorf("usage: %w", err)
	}
	objs, err := s.objects()
	if err != nil {
		return u, fmt.Errorf("usage: %w", err)
	}
	size := make(map[digest.Digest]int64, len(objs))
	for _, o := range objs {
		size[o.d] = o.size
		if o.dir == "files" {
			u.Files++
			u.FileBytes += o.size
		} else {
			u.Blobs++
			u.BlobBytes += o.size
		}
		if r.users[o.d] == 0 {
			u.ReclaimableBytes += o.size
		}
	}
	u.StoredBytes = u.FileBytes + u.BlobBytes
	u.Images = len(imgs)
	for _, img := range imgs {
		iu := ImageUsage{ID: img.ID, Names: img.Names, Size: img.Size}
		for d := range r.per[img.ID] {
			if d == img.Manifest || d == img.ConfigDigest || d == img.Tree {
				iu.Size += size[d]
			}
			if r.users[d] == 1 {
				iu.UniqueBytes += size[d]
			}
		}
		u.UnsharedBytes += iu.Size
		u.PerImage = append(u.PerImage, iu)
	}
	return u, nil
}

// PruneStats says what Prune removed.
type PruneStats struct {
	// Files and Blobs count the removed file contents and blobs.
	Files, Blobs int
	// Bytes is their size.
	Bytes int64
}

// Prune removes the files and blobs no image refers to, and what
// interrupted imports left.
func (s *Store) Prune(ctx context.Context) (PruneStats, error) {
	var ps PruneStats
	l, err := s.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return ps, err
	}
	imgs, err := s.records()
	if err == nil {
		var r refs
		r, err = s.references(ctx, imgs)
		if err == nil {
			ps, err = s.prune(ctx, r)
		}
	}
	l.unlock()
	if err != nil {
		return ps, fmt.Errorf("prune: %w", err)
	}
	if err := s.cleanup(); err != nil {
		return ps, fmt.Errorf("prune: %w", err)
	}
	return ps, nil
}

func (s *Store) prune(ctx context.Context, r refs) (PruneStats, error) {
	var ps PruneStats
	objs, err := s.objects()
	if err != nil {
		return ps, err
	}
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return ps, err
		}
		if r.users[o.d] > 0 && validDigest(o.d) == nil {
			continue
		}
		if err := os.Remove(s.path(o.dir, "sha256", o.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ps, err
		}
		if o.dir == "files" {
			ps.Files++
		} else {
			ps.Blobs++
		}
		ps.Bytes += o.size
	}
	return ps, nil
}
