package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// DefaultMaxImageSize bounds the flattened size of an image when
// Options.MaxImageSize is zero.
const DefaultMaxImageSize = 64 << 30

// tmpPrefix starts the names of temporary files in the store's directories.
const tmpPrefix = ".tmp-"

// Options tune a Store. The zero value is fine.
type Options struct {
	// Layer bounds each layer (see layer.Options; Attrs is ignored).
	Layer layer.Options
	// MaxImageSize bounds the total size of an image's layers' files
	// (DefaultMaxImageSize).
	MaxImageSize int64
}

// Store is a content-addressed image store rooted at a directory. It is
// safe for concurrent use by goroutines and processes.
type Store struct {
	root string
	opts Options
}

// Open opens the store at root, creating it if needed, and removes what
// interrupted imports left when no import is under way.
func Open(root string) (*Store, error) { return OpenWithOptions(root, Options{}) }

// OpenWithOptions is Open with options.
func OpenWithOptions(root string, opts Options) (*Store, error) {
	if opts.MaxImageSize <= 0 {
		opts.MaxImageSize = DefaultMaxImageSize
	}
	opts.Layer.Attrs = nil
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Store{root: abs, opts: opts}
	for _, d := range []string{"", "blobs/sha256", "files/sha256", "images", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := s.cleanup(); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) blobPath(d digest.Digest) string {
	return s.path("blobs", "sha256", d.Encoded())
}

func (s *Store) filePath(d digest.Digest) string {
	return s.path("files", "sha256", d.Encoded())
}

func (s *Store) recordPath(id string) string {
	return s.path("images", id+".json")
}

// lock takes the store's lock, shared or exclusive.
func (s *Store) lock(ctx context.Context, how int) (*flock, error) {
	return lockFile(ctx, s.path("lock"), how)
}

// cleanup removes staging directories when no import is under way, and
// temporary files when nothing changes the store. Both are skipped, not
// waited for, when busy.
func (s *Store) cleanup() error {
	if l, ok, err := tryLockFile(s.path("tmp.lock"), unix.LOCK_EX); err != nil {
		return err
	} else if ok {
		defer l.unlock()
		entries, err := os.ReadDir(s.path("tmp"))
		if err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
		for _, e := range entries {
			if err := removeAll(s.path("tmp", e.Name())); err != nil {
				return fmt.Errorf("clean up: %w", err)
			}
		}
	}
	l, ok, err := tryLockFile(s.path("lock"), unix.LOCK_EX)
	if err != nil || !ok {
		return err
	}
	defer l.unlock()
	for _, d := range []string{"blobs/sha256", "files/sha256", "images"} {
		entries, err := os.ReadDir(s.path(d))
		if err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				if err := os.Remove(s.path(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("clean up: %w", err)
				}
			}
		}
	}
	return nil
}

// removeAll removes a staging tree, making directories writable first
// (an unprivileged import may have left read-only ones).
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || os.Geteuid() == 0 {
		return err
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// writeAtomic writes data to dir/name: a temporary file in dir, synced,
// renamed into place, and dir synced.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeBlob stores a blob unless it is there already.
func (s *Store) writeBlob(b []byte) (digest.Digest, error) {
	d := digest.SHA256.FromBytes(b)
	if _, err := os.Stat(s.blobPath(d)); err == nil {
		return d, nil
	}
	if err := writeAtomic(s.path("blobs", "sha256"), d.Encoded(), b); err != nil {
		return "", fmt.Errorf("write blob %s: %w", d, err)
	}
	return d, nil
}

// readBlob reads a blob and checks its digest.
func (s *Store) readBlob(d digest.Digest) ([]byte, error) {
	if err := validDigest(d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptStore, err)
	}
	b, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("read blob: %w", err)
	}
	if got := digest.SHA256.FromBytes(b); got != d {
		return nil, fmt.Errorf("%w: blob %s holds %s", ErrCorruptStore, d, got)
	}
	return b, nil
}

// writeRecord writes an image's record, atomically.
func (s *Store) writeRecord(img Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	if err := writeAtomic(s.path("images"), img.ID+".json", append(b, '\n')); err != nil {
		return fmt.Errorf("write record %s: %w", img.ID, err)
	}
	return nil
}

// readRecord reads the record of image id.
func (s *Store) readRecord(id string) (Image, error) {
	var img Image
	b, err := os.ReadFile(s.recordPath(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return img, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return img, fmt.Errorf("read record: %w", err)
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return img, fmt.Errorf("%w: record %s: %w", ErrCorruptStore, id, err)
	}
	if err := img.check(); err != nil || img.ID != id {
		return img, fmt.Errorf("%w: record %s: %v", ErrCorruptStore, id, err)
	}
	return img, nil
}

// records reads every record.
func (s *Store) records() ([]Image, error) {
	entries, err := os.ReadDir(s.path("images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var imgs []Image
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validID(id) {
			continue
		}
		img, err := s.readRecord(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	slices.SortFunc(imgs, func(a, b Image) int {
		if c := b.Imported.Compare(a.Imported); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return imgs, nil
}

// List returns the images in the store, most recently imported first.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	l, err := s.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	return s.records()
}

// Get returns the image named ref: an image name, an ID, a "sha256:" ID,
// or a unique prefix of an ID of at least 4 characters.
func (s *Store) Get(ctx context.Context, ref string) (Image, error) {
	l, err := s.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return Image{}, err
	}
	defer l.unlock()
	return s.find(ref)
}

func (s *Store) find(ref string) (Image, error) {
	imgs, err := s.records()
	if err != nil {
		return Image{}, err
	}
	for _, img := range imgs {
		if slices.Contains(img.Names, ref) {
			return img, nil
		}
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) >= 4 && strings.Trim(prefix, "0123456789abcdef") == "" {
		var found []Image
		for _, img := range imgs {
			if strings.HasPrefix(img.ID, prefix) {
				found = append(found, img)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
		default:
			return Image{}, fmt.Errorf("%w: %q matches %d images", ErrAmbiguous, ref, len(found))
		}
	}
	return Image{}, fmt.Errorf("%w: %q", ErrNotFound, ref)
}

// Remove removes the image named ref (as Get finds it) from the store, with
// all its names. Its files and blobs stay until Prune.
func (s *Store) Remove(ctx context.Context, ref string) (Image, error) {
	l, err := s.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer l.unlock()
	img, err := s.find(ref)
	if err != nil {
		return Image{}, fmt.Errorf("remove image: %w", err)
	}
	if err := os.Remove(s.recordPath(img.ID)); err != nil {
		return Image{}, fmt.Errorf("remove image %s: %w", img.ShortID(), err)
	}
	if err := syncDir(s.path("images")); err != nil {
		return Image{}, fmt.Errorf("remove image %s: %w", img.ShortID(), err)
	}
	return img, nil
}

// Tree returns the flattened tree of img, checked against its digest.
func (s *Store) Tree(ctx context.Context, img Image) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.readBlob(img.Tree)
	if err != nil {
		return nil, fmt.Errorf("image %s: tree: %w", img.ShortID(), err)
	}
	entries, err := decodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.ShortID(), err)
	}
	return entries, nil
}

// now is when an import is recorded.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
