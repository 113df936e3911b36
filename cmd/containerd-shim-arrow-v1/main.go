// Command containerd-shim-arrow-v1 is containerd's runtime v2 shim for
// Arrow (runtime io.containerd.arrow.v1): see package containerdshim.
// containerd finds it by name in its PATH.
package main

import (
	"context"
	"os"

	"github.com/arrowsys/arrow/containerdshim"
	"github.com/arrowsys/arrow/podnet"
)

func main() {
	// A pod sandbox's pause process is this binary again (see package
	// podnet): it must not start a shim.
	if len(os.Args) > 1 && os.Args[1] == podnet.PauseArg {
		os.Exit(podnet.PauseMain(os.Args[2:]))
	}
	os.Exit(containerdshim.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
