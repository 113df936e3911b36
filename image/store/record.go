package store

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// recordVersion is the version of the record and tree formats.
const recordVersion = 1

// TreeMediaType is the media type of the tree blobs.
const TreeMediaType = "application/vnd.arrow.image.tree.v1+json"

// maxNameLen bounds image names.
const maxNameLen = 512

// Image is an image's record.
type Image struct {
	// Version is the record format's version.
	Version int `json:"version"`
	// ID is the hex SHA-256 digest of the image's config.
	ID string `json:"id"`
	// Names are the names the image was imported under, most recent
	// first. A name belongs to one image at a time.
	Names []string `json:"names,omitempty"`
	// Source is where the image was last imported from.
	Source string `json:"source,omitempty"`
	// Manifest is the digest of the image manifest.
	Manifest digest.Digest `json:"manifest"`
	// ManifestMediaType is the manifest's media type.
	ManifestMediaType string `json:"manifestMediaType,omitempty"`
	// ConfigDigest is the digest of the image config blob.
	ConfigDigest digest.Digest `json:"configDigest"`
	// Platform is the image's OS and architecture.
	Platform ocispec.Platform `json:"platform"`
	// Created is when the image was built, as its config says.
	Created *time.Time `json:"created,omitempty"`
	// Config is how to run the image: entrypoint, command, environment,
	// working directory, user, exposed ports, labels...
	Config ocispec.ImageConfig `json:"config"`
	// Layers are the image's layers, bottom first.
	Layers []Layer `json:"layers"`
	// Tree is the digest of the blob holding the flattened tree (a JSON
	// array of Entry).
	Tree digest.Digest `json:"tree"`
	// Entries is the number of entries in the tree.
	Entries int `json:"entries"`
	// Size is the size of the tree's regular files, hard links counted
	// once.
	Size int64 `json:"size"`
	// Imported is when the image was first imported.
	Imported time.Time `json:"imported"`
}

// Layer describes one layer of an image.
type Layer struct {
	// Digest is the layer blob's digest, as the manifest lists it.
	Digest digest.Digest `json:"digest"`
	// Size is the blob's size.
	Size int64 `json:"size"`
	// MediaType is the blob's media type.
	MediaType string `json:"mediaType,omitempty"`
	// DiffID is the digest of the uncompressed layer.
	DiffID digest.Digest `json:"diffID"`
}

// EntryType is the type of a tree entry.
type EntryType string

// The types of tree entries. Device nodes and FIFOs are not kept (see
// image/layer).
const (
	TypeDir     EntryType = "dir"
	TypeFile    EntryType = "file"
	TypeSymlink EntryType = "symlink"
)

// Entry is one file of an image's flattened root file system.
type Entry struct {
	// Path is absolute and clean; "/" is the root.
	Path string `json:"path"`
	// Type is the entry's type.
	Type EntryType `json:"type"`
	// Mode holds the permission bits with setuid, setgid and sticky.
	Mode uint32 `json:"mode"`
	// UID is the owner.
	UID int `json:"uid"`
	// GID is the group.
	GID int `json:"gid"`
	// ModTime is the modification time.
	ModTime time.Time `json:"mtime"`
	// Size is a regular file's size.
	Size int64 `json:"size,omitempty"`
	// Digest is a regular file's content digest: its content is
	// files/sha256/<hex>.
	Digest digest.Digest `json:"digest,omitempty"`
	// Link, for a regular file, is the path of an earlier entry that is the
	// same file (a hard link).
	Link string `json:"link,omitempty"`
	// Target is a symbolic link's target, verbatim.
	Target string `json:"target,omitempty"`
	// Xattrs are the extended attributes (user.* and security.capability).
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
}

// entryAlias is Entry without its JSON methods.
type entryAlias Entry

// entryJSON is how an Entry is encoded: JSON strings hold UTF-8 only, so a
// path, link or target that is not valid UTF-8 (Linux allows any bytes) is
// also kept as raw bytes, which decoding prefers.
type entryJSON struct {
	entryAlias
	PathRaw   []byte `json:"pathRaw,omitempty"`   // Path's bytes
	LinkRaw   []byte `json:"linkRaw,omitempty"`   // Link's bytes
	TargetRaw []byte `json:"targetRaw,omitempty"` // Target's bytes
}

// MarshalJSON implements json.Marshaler.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON{entryAlias: entryAlias(e)}
	for _, f := range []struct {
		s   *string
		raw *[]byte
	}{{&j.Path, &j.PathRaw}, {&j.Link, &j.LinkRaw}, {&j.Target, &j.TargetRaw}} {
		if !utf8.ValidString(*f.s) {
			*f.raw = []byte(*f.s)
			*f.s = strings.ToValidUTF8(*f.s, "\uFFFD")
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	for _, f := range []struct {
		s   *string
		raw []byte
	}{{&j.Path, j.PathRaw}, {&j.Link, j.LinkRaw}, {&j.Target, j.TargetRaw}} {
		if f.raw != nil {
			*f.s = string(f.raw)
		}
	}
	*e = Entry(j.entryAlias)
	return nil
}

// Name returns the image's first name, or its short ID when it has none.
func (img Image) Name() string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return img.ShortID()
}

// ShortID returns the first 12 characters of the image's ID.
func (img Image) ShortID() string {
	if len(img.ID) > 12 {
		return img.ID[:12]
	}
	return img.ID
}

// ValidateName checks an image name: 1 to 512 bytes of printable characters
// other than spaces.
func ValidateName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w: %q: must be 1 to %d bytes", ErrInvalidName, name, maxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%w: %q: control characters or spaces", ErrInvalidName, name)
		}
	}
	return nil
}

// validDigest reports whether d is a well-formed SHA-256 digest.
func validDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %q: only sha256 is supported", d)
	}
	return nil
}

// validID reports whether id is a hex SHA-256 digest.
func validID(id string) bool {
	return validDigest(digest.NewDigestFromEncoded(digest.SHA256, id)) == nil
}

// check validates a record read from the store.
func (img *Image) check() error {
	if img.Version != recordVersion {
		return fmt.Errorf("record version %d, want %d", img.Version, recordVersion)
	}
	if !validID(img.ID) || img.ConfigDigest.Encoded() != img.ID {
		return fmt.Errorf("bad ID %q", img.ID)
	}
	for _, d := range []digest.Digest{img.Manifest, img.ConfigDigest, img.Tree} {
		if err := validDigest(d); err != nil {
			return err
		}
	}
	for _, n := range img.Names {
		if err := ValidateName(n); err != nil {
			return err
		}
	}
	return nil
}

// encodeTree returns the tree blob of entries.
func encodeTree(entries []Entry) ([]byte, error) {
	b, err := json.Marshal(entries)
	if err != nil {
		return nil, fmt.Errorf("encode tree: %w", err)
	}
	return b, nil
}

// decodeTree parses and validates a tree blob: paths absolute, clean,
// unique and sorted, "/" first and a directory, every parent a directory
// listed before its children, regular files with digests, hard links to
// earlier regular files, symbolic links with targets.
func decodeTree(b []byte) ([]Entry, error) {
	var entries []Entry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("%w: tree: %w", ErrCorruptStore, err)
	}
	if err := checkTree(entries); err != nil {
		return nil, fmt.Errorf("%w: tree: %w", ErrCorruptStore, err)
	}
	return entries, nil
}

func checkTree(entries []Entry) error {
	if len(entries) == 0 || entries[0].Path != "/" || entries[0].Type != TypeDir {
		return fmt.Errorf("does not start with the root directory")
	}
	types := make(map[string]EntryType, len(entries))
	prev := ""
	for i, e := range entries {
		if i > 0 {
			if e.Path != path.Clean(e.Path) || !strings.HasPrefix(e.Path, "/") || e.Path == "/" ||
				strings.ContainsRune(e.Path, 0) || len(e.Path) > 4096 {
				return fmt.Errorf("bad path %q", e.Path)
			}
			if e.Path <= prev {
				return fmt.Errorf("%q: paths not sorted or not unique", e.Path)
			}
			if types[path.Dir(e.Path)] != TypeDir {
				return fmt.Errorf("%q: parent is not a directory listed before it", e.Path)
			}
		}
		prev = e.Path
		if e.Mode&^0o7777 != 0 || e.UID < 0 || e.GID < 0 {
			return fmt.Errorf("%q: bad mode or owner", e.Path)
		}
		switch e.Type {
		case TypeDir:
		case TypeFile:
			if err := validDigest(e.Digest); err != nil {
				return fmt.Errorf("%q: %w", e.Path, err)
			}
			if e.Size < 0 {
				return fmt.Errorf("%q: negative size", e.Path)
			}
			if e.Link != "" && types[e.Link] != TypeFile {
				return fmt.Errorf("%q: hard link to %q, not an earlier file", e.Path, e.Link)
			}
		case TypeSymlink:
			if e.Target == "" || len(e.Target) > 4095 || strings.ContainsRune(e.Target, 0) {
				return fmt.Errorf("%q: bad symbolic link target", e.Path)
			}
		default:
			return fmt.Errorf("%q: unknown type %q", e.Path, e.Type)
		}
		types[e.Path] = e.Type
	}
	return nil
}
