//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"
)

// benchTemplates measures issue 6's memory goal: the host memory (PSS) of
// idle arrows that are clones of one template against as many cold-booted
// ones, the same idle application and guest memory for both. Clones share
// the template's booted pages through the page cache; a cold VM has its
// own copy of everything its guest touched.
func benchTemplates(ctx context.Context, arrowBin string, idle int) (err error) {
	if idle < 1 {
		return fmt.Errorf("-idle %d: want at least 1", idle)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	arrowBin, accel := su.arrow, su.accel
	b, _, done, err := newDaemonBench(arrowBin, accel.Name, "arrow-bench-tmpl-")
	if err != nil {
		return err
	}
	defer done()
	defer func() {
		if cerr := b.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	argv := []string{arrowBin, "run", "--accel", accel.Name, "-m", idleMemory, idleProgram, "sh", "-c", idleScript}
	cold := append([]string{arrowBin, "run", "--cold"}, argv[2:]...)

	// The template of this machine size, built before anything is timed.
	warm := exec.CommandContext(ctx, arrowBin, "template", "warm", "--memory", idleMemory)
	warm.Env = b.env
	if out, err := warm.CombinedOutput(); err != nil {
		return fmt.Errorf("arrow template warm: %w\n%s", err, out)
	}
	clones, err := b.memoryForeground(ctx, idle, argv)
	if err != nil {
		return fmt.Errorf("clones: %w", err)
	}
	colds, err := b.memoryForeground(ctx, idle, cold)
	if err != nil {
		return fmt.Errorf("cold: %w", err)
	}

	fmt.Printf("%d idle arrows each way (%s, %s guests; PSS from /proc/PID/smaps_rollup, %v after the last started; accelerator %s)\n\n",
		idle, idleProgram+" sh -c '"+idleScript+"'", idleMemory, settleTime, accel.Name)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "| way\t| PSS of all\t| PSS per arrow\t| of which QEMU\t| ÷ cold\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range []struct {
		name string
		m    idleMemoryUse
	}{{"clones of one template (arrow run)", clones}, {"cold boots (arrow run --cold)", colds}} {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %.2f×\t|\n", r.name, mibs(r.m.total()), mibs(r.m.perArrow()),
			mibs(r.m.qemu/int64(r.m.k)), float64(r.m.total())/float64(colds.total()))
	}
	return tw.Flush()
}
