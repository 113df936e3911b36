// Package closure computes what a host program needs in a guest that has
// nothing else: the program, its ELF interpreter and shared libraries as
// the dynamic loader finds them, the interpreters of scripts, the files of
// the Debian packages interpreters need for their own libraries (python3's
// standard library, perl's modules), and whatever the user includes.
//
// [Resolver.Program] finds the program as a shell would; [Resolver.Resolve]
// returns its closure as a [Set] of [File] entries, which package initramfs
// writes into the guest's initramfs. Paths are the same in the guest as on
// the host, symlinks included: a library reached through /lib -> usr/lib
// or a chain of soname links is there as the same links and the same file.
//
// Resolution runs on every `arrow run`, so it reads only what it needs:
// program headers and dynamic sections of ELF objects, /etc/ld.so.cache,
// the dpkg status file and the file lists of the packages involved.
package closure
