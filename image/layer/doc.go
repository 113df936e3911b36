// Package layer applies OCI image layers to a directory tree, safely.
//
// A layer is a tar archive (uncompressed: see Decompress) of the changes it
// makes to the layers below it, with the OCI image specification's
// conventions: a ".wh.NAME" entry removes NAME as the lower layers left it,
// a ".wh..wh..opq" entry in a directory hides everything the lower layers
// put in that directory, and every other entry adds or replaces the file at
// its path. Apply writes those changes into a directory that holds the
// layers below.
//
// Layers are untrusted input. Apply resolves every path one component at a
// time with file descriptors (openat with O_NOFOLLOW), so that no path is
// handed to the kernel as a string that could lead out of the directory:
//
//   - names are cleaned relative to the root; a name whose ".." components
//     would climb above the root is rejected (ErrTraversal);
//   - a symbolic link is stored verbatim and never followed for the entry
//     that names it. When a later entry's parent path goes through one, it
//     is followed as the guest would follow it, with the root as "/": an
//     absolute target starts again at the root, and a target that climbs
//     above the root with ".." is rejected (ErrSymlinkEscape);
//   - hard links must name a file that is already in the tree, and are
//     resolved in the same way;
//   - sizes, entry counts and name lengths are bounded (Options);
//   - a malformed or truncated archive is an error (ErrCorrupt).
//
// File modes, modification times, user.* and security.capability extended
// attributes are kept; owners are kept when the process runs as root.
// Device nodes and FIFOs are not created (a guest gets its devices from
// devtmpfs): they are counted in Stats and noted. Because an unprivileged
// process cannot keep everything a layer says (owners, some modes and
// attributes), Apply can also record each entry's metadata as the archive
// states it in an Attrs, which follows whiteouts and replacements; the image
// store builds its records from that.
package layer
