package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/kernel"
	"github.com/arrowsys/arrow/vm"
)

func newVersionCmd(g *globals) *cobra.Command {
	var accel string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show versions of Arrow, QEMU and the guest kernel, and the accelerator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Printf("arrow:        %s (%s, guest protocol %d)\n", version, runtime.Version(), guest.ProtocolVersion)
			fmt.Printf("qemu:         %s\n", qemuVersion(cmd.Context()))
			if k, err := kernel.Find(g.dataRoot()); err == nil {
				fmt.Printf("kernel:       %s (linux-source %s, config %.12s)\n", k.Path, k.Version, k.ConfigHash)
			} else {
				fmt.Printf("kernel:       %v\n", err)
			}
			a, err := vm.DetectAccel(accel, vm.LocalHost())
			if err != nil {
				return err
			}
			fmt.Printf("accelerator:  %s (%s)\n", a.Name, a.Reason)
			return nil
		},
	}
	cmd.Flags().StringVar(&accel, "accel", "auto", "accelerator to check: auto, kvm or tcg")
	return cmd
}

func qemuVersion(ctx context.Context) string {
	q, err := vm.FindQEMU()
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, q, "--version").Output()
	if err != nil {
		return fmt.Sprintf("%s: %v", q, err)
	}
	first, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(first)) + " (" + q + ")"
}
