// Command containerd-shim-arrow-v1 is containerd's runtime v2 shim for
// Arrow (runtime io.containerd.arrow.v1): see package containerdshim.
// containerd finds it by name in its PATH.
package main

import (
	"context"
	"os"

	"github.com/arrowsys/arrow/containerdshim"
)

func main() {
	os.Exit(containerdshim.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
