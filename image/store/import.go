package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/image/layer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// ImageSource is an image to import. Implementations need not verify what
// they return: Import checks every blob against its digest.
type ImageSource interface {
	// Reference says where the image comes from, for messages and the
	// record (such as "docker.io/library/alpine:3.20").
	Reference() string
	// Manifest returns the image manifest (not an index: the source picks
	// the platform).
	Manifest(ctx context.Context) ([]byte, error)
	// Blob opens the blob desc describes: the config or a layer, as the
	// manifest lists them (compressed layers stay compressed).
	Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// Import imports the image src into the store under name (src.Reference()
// when empty), and returns its record. A name belongs to one image: if
// another image had it, that image loses it. Importing an image the store
// has already only adds the name.
func (s *Store) Import(ctx context.Context, src ImageSource, name string) (Image, error) {
	if name == "" {
		name = src.Reference()
	}
	if err := ValidateName(name); err != nil {
		return Image{}, fmt.Errorf("import: %w", err)
	}
	img, err := s.importImage(ctx, src, name)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", src.Reference(), err)
	}
	return img, nil
}

func (s *Store) importImage(ctx context.Context, src ImageSource, name string) (Image, error) {
	if err := s.cleanup(); err != nil {
		return Image{}, err
	}
	rawManifest, err := src.Manifest(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("manifest: %w", err)
	}
	m, err := parseManifest(rawManifest)
	if err != nil {
		return Image{}, err
	}
	rawConfig, err := s.readSmallBlob(ctx, src, m.Config, maxConfigSize)
	if err != nil {
		return Image{}, fmt.Errorf("config: %w", err)
	}
	if err := verifyBlob("config", m.Config, rawConfig); err != nil {
		return Image{}, err
	}
	cfg, err := parseConfig(rawConfig, len(m.Layers))
	if err != nil {
		return Image{}, err
	}
	img := Image{
		Version:           recordVersion,
		ID:                m.Config.Digest.Encoded(),
		Source:            src.Reference(),
		Manifest:          digest.SHA256.FromBytes(rawManifest),
		ManifestMediaType: m.MediaType,
		ConfigDigest:      m.Config.Digest,
		Platform:          cfg.Platform,
		Created:           cfg.Created,
		Config:            cfg.Config,
	}
	if img.ManifestMediaType == "" {
		img.ManifestMediaType = ocispec.MediaTypeImageManifest
	}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, DiffID: cfg.RootFS.DiffIDs[i]})
	}

	// One import of an image at a time; a second one finds it recorded.
	ilock, err := lockRange(ctx, s.path("images.lock"), img.ID)
	if err != nil {
		return Image{}, err
	}
	defer ilock.unlock()
	if _, err := os.Stat(s.recordPath(img.ID)); err == nil {
		return s.commit(ctx, img, name, nil, rawManifest, rawConfig, nil)
	}

	// Stage: apply the layers into a private directory.
	tlock, err := lockFile(ctx, s.path("tmp.lock"), unix.LOCK_SH)
	if err != nil {
		return Image{}, err
	}
	defer tlock.unlock()
	stage, err := os.MkdirTemp(s.path("tmp"), "import-")
	if err != nil {
		return Image{}, fmt.Errorf("staging: %w", err)
	}
	defer removeAll(stage)
	rootfs := filepath.Join(stage, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return Image{}, fmt.Errorf("staging: %w", err)
	}
	attrs := layer.NewAttrs()
	var total int64
	for i, l := range img.Layers {
		n, err := s.applyLayer(ctx, src, m.Layers[i], l.DiffID, rootfs, attrs)
		if err != nil {
			return Image{}, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		if total += n; total > s.opts.MaxImageSize {
			return Image{}, fmt.Errorf("%w: more than %d bytes of files", ErrTooLarge, s.opts.MaxImageSize)
		}
	}
	entries, objects, err := scan(ctx, rootfs, attrs)
	if err != nil {
		return Image{}, err
	}
	img.Entries = len(entries)
	for _, e := range entries {
		if e.Type == TypeFile && e.Link == "" {
			img.Size += e.Size
		}
	}
	tree, err := encodeTree(entries)
	if err != nil {
		return Image{}, err
	}
	img.Tree = digest.SHA256.FromBytes(tree)
	return s.commit(ctx, img, name, objects, rawManifest, rawConfig, tree)
}

// readSmallBlob reads a blob of at most max bytes.
func (s *Store) readSmallBlob(ctx context.Context, src ImageSource, d ocispec.Descriptor, max int64) ([]byte, error) {
	rc, err := src.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// applyLayer applies one layer blob to rootfs, checking it against its
// digest, size and diff ID; it returns the size of the files written.
func (s *Store) applyLayer(ctx context.Context, src ImageSource, desc ocispec.Descriptor, diffID digest.Digest, rootfs string, attrs *layer.Attrs) (int64, error) {
	rc, err := src.Blob(ctx, desc)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	blob := &hashingReader{r: io.LimitReader(rc, desc.Size+1), h: sha256.New()}
	// verifyBlob reads what is left of the blob and checks it.
	verifyBlob := func() error {
		if _, err := io.Copy(io.Discard, blob); err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		switch {
		case blob.n > desc.Size:
			return fmt.Errorf("%w: more than the %d bytes the manifest says", ErrDigestMismatch, desc.Size)
		case blob.n < desc.Size:
			return fmt.Errorf("%w: %d bytes, the manifest says %d", ErrDigestMismatch, blob.n, desc.Size)
		}
		if got := digest.NewDigest(digest.SHA256, blob.h); got != desc.Digest {
			return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
		}
		return nil
	}
	dr, err := layer.Decompress(blob)
	if err != nil {
		if verr := verifyBlob(); verr != nil && ctx.Err() == nil {
			return 0, verr
		}
		return 0, err
	}
	defer dr.Close()
	tar := &hashingReader{r: dr, h: sha256.New()}
	opts := s.opts.Layer
	opts.Attrs = attrs
	st, err := layer.Apply(ctx, rootfs, tar, opts)
	if err != nil {
		// A corrupt blob is best reported as such.
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			if verr := verifyBlob(); verr != nil {
				return 0, verr
			}
		}
		return 0, err
	}
	if err := verifyBlob(); err != nil {
		return 0, err
	}
	if got := digest.NewDigest(digest.SHA256, tar.h); got != diffID {
		return 0, fmt.Errorf("%w: uncompressed layer is %s, the config says %s", ErrDigestMismatch, got, diffID)
	}
	return st.Bytes, nil
}

// hashingReader hashes and counts what it reads.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

// Read implements io.Reader.
func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// scan walks a flattened tree and returns its entries, sorted, and the
// staged path of one copy of each distinct file content. Metadata comes from
// attrs (what the layers state) where it has it, from the file system
// otherwise.
func scan(ctx context.Context, rootfs string, attrs *layer.Attrs) ([]Entry, map[digest.Digest]string, error) {
	type inode struct{ dev, ino uint64 }
	var entries []Entry
	objects := make(map[digest.Digest]string)
	seen := make(map[inode]digest.Digest)
	buf := make([]byte, 256<<10)
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil {
			return err
		}
		if rel == "." {
			rel = ""
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		e := Entry{Path: "/" + filepath.ToSlash(rel), Mode: uint32(st.Mode) & 0o7777, ModTime: time.Unix(0, 0).UTC()}
		if at, ok := attrs.Get(filepath.ToSlash(rel)); ok {
			e.Mode, e.UID, e.GID, e.ModTime, e.Xattrs = at.Mode, at.UID, at.GID, clampTime(at.ModTime), at.Xattrs
		}
		switch {
		case fi.IsDir():
			e.Type = TypeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = TypeSymlink
			e.Mode = 0o777
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.Type = TypeFile
			e.Size = fi.Size()
			key := inode{uint64(st.Dev), st.Ino}
			if dg, ok := seen[key]; ok {
				e.Digest = dg
				break
			}
			if e.Digest, err = hashFile(ctx, p, buf); err != nil {
				return err
			}
			if st.Nlink > 1 {
				seen[key] = e.Digest
			}
			if _, ok := objects[e.Digest]; !ok {
				objects[e.Digest] = p
			}
		default:
			// Apply creates nothing else.
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan tree: %w", err)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	// Hard links: each later path of a file points at its first.
	first := make(map[inode]string)
	for i := range entries {
		e := &entries[i]
		if e.Type != TypeFile {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(rootfs, e.Path), &st); err != nil {
			return nil, nil, fmt.Errorf("scan tree: %w", err)
		}
		if st.Nlink < 2 {
			continue
		}
		key := inode{uint64(st.Dev), st.Ino}
		if p, ok := first[key]; ok {
			e.Link = p
		} else {
			first[key] = e.Path
		}
	}
	if err := checkTree(entries); err != nil {
		return nil, nil, fmt.Errorf("scan tree: %w", err)
	}
	return entries, objects, nil
}

// clampTime brings a time into what JSON can record (years 1 to 9999),
// in UTC.
func clampTime(t time.Time) time.Time {
	t = t.UTC()
	switch {
	case t.Year() < 1:
		return time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	case t.Year() > 9999:
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	}
	return t
}

// hashFile returns the digest of the file at p, not following a symbolic
// link.
func hashFile(ctx context.Context, p string, buf []byte) (digest.Digest, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return digest.NewDigest(digest.SHA256, h), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// commit makes an import visible: under the store's exclusive lock, it
// links new file contents into files/, writes the blobs, then the record.
// objects and tree are nil when the image is recorded already.
func (s *Store) commit(ctx context.Context, img Image, name string, objects map[digest.Digest]string, manifest, config, tree []byte) (Image, error) {
	l, err := s.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer l.unlock()
	if old, err := s.readRecord(img.ID); err == nil {
		// Recorded already (by this or another process): keep its tree,
		// update names and source.
		old.Source = img.Source
		img = old
	} else if !errors.Is(err, ErrNotFound) {
		return Image{}, err
	} else {
		if tree == nil {
			return Image{}, fmt.Errorf("%w: record %s vanished", ErrNotFound, img.ID)
		}
		if err := s.storeFiles(ctx, objects); err != nil {
			return Image{}, err
		}
		for _, b := range [][]byte{manifest, config, tree} {
			if _, err := s.writeBlob(b); err != nil {
				return Image{}, err
			}
		}
		if err := syncFS(s.root); err != nil {
			return Image{}, err
		}
		img.Imported = now()
	}
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	return s.nameLocked(img, name)
}

// Tag gives the image named ref (as Get finds it) the name name too,
// taking it from any other image, as an import under that name would.
func (s *Store) Tag(ctx context.Context, ref, name string) (Image, error) {
	if err := ValidateName(name); err != nil {
		return Image{}, fmt.Errorf("tag: %w", err)
	}
	l, err := s.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer l.unlock()
	img, err := s.find(ref)
	if err != nil {
		return Image{}, fmt.Errorf("tag: %w", err)
	}
	return s.nameLocked(img, name)
}

// nameLocked records name on img, first in its names, and takes it from
// any other image; the caller holds the store's lock.
func (s *Store) nameLocked(img Image, name string) (Image, error) {
	// The name moves here from any other image: recorded here first, so
	// that a crash in between leaves it on both (Get prefers the most
	// recent import) rather than on neither.
	others, err := s.records()
	if err != nil {
		return Image{}, err
	}
	img.Names = append([]string{name}, slices.DeleteFunc(img.Names, func(n string) bool { return n == name })...)
	if err := s.writeRecord(img); err != nil {
		return Image{}, err
	}
	for _, o := range others {
		if o.ID == img.ID || !slices.Contains(o.Names, name) {
			continue
		}
		o.Names = slices.DeleteFunc(o.Names, func(n string) bool { return n == name })
		if err := s.writeRecord(o); err != nil {
			return Image{}, err
		}
	}
	return img, nil
}

// storeFiles links each staged file into files/ under its digest, unless
// that content is there already. File data is synced first, so that a
// stored file is complete whenever it is visible.
func (s *Store) storeFiles(ctx context.Context, objects map[digest.Digest]string) error {
	if err := syncFS(s.root); err != nil {
		return err
	}
	for d, p := range objects {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := os.Link(p, s.filePath(d)); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store file %s: %w", d, err)
		}
	}
	return nil
}

// syncFS flushes the file system holding dir: one call for all the files
// of an import rather than one fsync each.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
