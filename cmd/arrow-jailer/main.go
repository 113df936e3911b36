// Command arrow-jailer sets up the jail of one VM process (QEMU or
// virtiofsd) and runs it there: see package jail. Arrow starts it; it is
// not meant to be run by hand.
package main

import (
	"os"

	"github.com/arrowsys/arrow/jail"
)

func main() { os.Exit(jail.Main(os.Args[1:])) }
