package store

import "errors"

// Errors the store returns, wrapped with context; test for them with
// errors.Is.
var (
	// ErrNotFound: no image has that name or ID.
	ErrNotFound = errors.New("image not found")
	// ErrAmbiguous: an ID prefix matches more than one image.
	ErrAmbiguous = errors.New("ambiguous image ID prefix")
	// ErrDigestMismatch: a blob or layer is not what its digest says.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrInvalidImage: a manifest or config is malformed.
	ErrInvalidImage = errors.New("invalid image")
	// ErrUnsupported: the image is valid but not one the store can hold
	// (an index, a non-Linux image, an unknown layer type).
	ErrUnsupported = errors.New("unsupported image")
	// ErrInvalidName: an image name is empty, too long or has control
	// characters or spaces.
	ErrInvalidName = errors.New("invalid image name")
	// ErrCorruptStore: a record or tree in the store is malformed.
	ErrCorruptStore = errors.New("corrupt image store")
	// ErrTooLarge: the image exceeds the store's limits.
	ErrTooLarge = errors.New("image too large")
)
