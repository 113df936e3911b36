//go:build linux

// Command arrow-init is the PID 1 of every Arrow guest. See package
// github.com/arrowsys/arrow/guest/agent.
package main

import "github.com/arrowsys/arrow/guest/agent"

func main() {
	agent.Main()
}
