//go:build linux

// Command rawinit is the benchmark baseline's PID 1: it runs the program
// given after "--" on the kernel command line with the console as its
// standard streams, then resets the machine. It does only what the
// application needs to run at all, so that a raw QEMU boot with it measures
// the hypervisor and kernel without any of Arrow's plumbing.
package main

import (
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 {
		cmd := exec.Command(os.Args[1], os.Args[2:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			os.Stderr.WriteString("rawinit: " + err.Error() + "\n")
		}
	}
	for {
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
}
