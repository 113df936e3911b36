//go:build linux

package agent

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reseedCRNG makes the kernel's random number generator take a new key
// from its input pool now (RNDRESEEDCRNG), right after the host's seed was
// mixed in.
//
// Crediting entropy alone is not enough in a clone of a VM template: once
// the generator is initialized, Linux 6.1 reseeds it only on a timer
// (every second early after boot, then every minute), so clones resumed
// from one snapshot would hand out the same /dev/urandom and getrandom
// bytes until then. Measured: two clones of one template printed the same
// 32 bytes of /dev/urandom without this. The per-CPU generators derive
// from the base key's generation, so they follow.
//
// ENODATA means the generator is not initialized yet: then crediting the
// seed initializes it, from the pool the seed is in.
func reseedCRNG(f *os.File) error {
	err := unix.IoctlSetInt(int(f.Fd()), unix.RNDRESEEDCRNG, 0)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	return err
}
