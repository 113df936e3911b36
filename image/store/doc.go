// Package store keeps container images in a content-addressed store that
// holds every distinct file once, whatever image or layer order it came in.
//
// Importing an image applies its layers in order (image/layer) into a
// staging directory, walks the result, moves each regular file's content
// into files/ under its SHA-256 digest (dropping it when the digest is
// already there), and records the flattened tree. Two images that carry the
// same runtime, in any layers, store its files once. Materialize recreates
// an image's tree from the store, hard linking the stored files when it
// can; the guest root file system is built from that.
//
// # Layout
//
// Under the store's root (Arrow's <data root>/images), all private (0700):
//
//	lock                  flock: exclusive to change the store, shared to read it
//	images.lock           byte-range locks, one per image ID: one import of an image at a time
//	tmp.lock              flock: shared while importing, exclusive to clean tmp/
//	blobs/sha256/<hex>    manifests, image configs and trees (JSON), by digest
//	files/sha256/<hex>    every regular file's content, once, by digest
//	images/<id>.json      one record per image: names, source, digests, config, tree digest
//	tmp/import-*          staging directories of imports under way
//
// An image's ID is the hex SHA-256 digest of its config, as Docker's image
// IDs: the config lists the digests of the uncompressed layers, so the same
// ID means the same tree. Compressed layer blobs are not kept: once applied
// and verified they are redundant with files/ and the tree, and keeping them
// would double the space an image takes. Manifests and configs are kept,
// small, so that an image's provenance can be checked.
//
// The tree (see Entry) is a blob of its own rather than part of the record,
// so that listing images does not read every file list; the record names it
// by digest, and reading it checks that digest.
//
// # Verification
//
// Import checks, whatever the source: the config's size and digest against
// the manifest, every compressed layer's size and digest against the
// manifest, and every uncompressed layer's digest against the config's
// diff_ids. A mismatch is an error wrapping ErrDigestMismatch and the image
// is not recorded. Materialize checks the tree's digest and, when it copies
// a file, the file's digest.
//
// # Crash safety
//
// Records are written last: a file is written to a temporary file in the
// same directory, synced and renamed into place, and the directory synced.
// File contents are synced (one syncfs for the whole import) before they are
// linked into files/, and the links synced before the record is written, so
// an image is visible only when everything it refers to is durable. A crash
// or kill leaves at worst unreferenced files (removed by Prune) and staging
// directories and temporary files (removed by the next Open or Import that
// finds no import under way).
//
// # Concurrency
//
// Several processes may use one store. Changes (committing an import,
// Remove, Prune) hold the exclusive flock on the lock file; reads (List,
// Get, Usage, Materialize) hold it shared. Imports stage without it, so two
// imports of different images proceed in parallel; two imports of the same
// image are serialized by its byte-range lock, and the second finds the
// image recorded and only adds its name.
package store
