// Package netnsdo runs a function on an OS thread that has entered another
// network namespace, without moving the rest of the process.
//
// A network namespace belongs to a thread, not to a process: setns(2)
// moves only the calling thread, and a socket, a tap's file descriptor or
// a child process made by that thread belongs to the namespace the thread
// was in at that moment, for as long as it lives. Go schedules goroutines
// on any thread, so the function runs on a goroutine of its own, locked
// to its thread for the whole call. The thread goes back to the
// scheduler's pool only once it is back in its own namespace: if that
// fails, the goroutine ends still locked, and the runtime then ends the
// thread rather than let another goroutine run in the wrong namespace.
package netnsdo

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on a thread in the network namespace at nsPath (a bind mount
// such as /var/run/netns/NAME, or /proc/PID/ns/net) and returns its error.
// An empty nsPath runs f in the caller's namespace, on a locked thread
// all the same.
func Do(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if nsPath == "" {
			defer runtime.UnlockOSThread()
			errc <- f()
			return
		}
		// The thread's own namespace, to come back to.
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace of this thread: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", nsPath, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			// setns failed: the thread did not move.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the goroutine ends and the thread with it.
			errc <- fmt.Errorf("return from network namespace %s: %w (after: %v)", nsPath, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Same reports whether the two paths name the same network namespace
// (nsfs inodes are compared by device and inode, as the kernel does).
func Same(a, b string) (bool, error) {
	na, err := netns.GetFromPath(a)
	if err != nil {
		return false, fmt.Errorf("network namespace %s: %w", a, err)
	}
	defer na.Close()
	nb, err := netns.GetFromPath(b)
	if err != nil {
		return false, fmt.Errorf("network namespace %s: %w", b, err)
	}
	defer nb.Close()
	return na.Equal(nb), nil
}
