// Package initramfs writes the guest's root file system: the closure of
// the application (package closure), arrow-init as /init and the few
// entries every guest needs, as an uncompressed newc cpio archive that the
// kernel unpacks into its initial tmpfs.
//
// [Builder] keeps the archives it writes in a cache directory keyed by
// their inputs, so that running the same program again costs a stat of
// each file and no writing. [Writer] is the newc writer underneath.
package initramfs
