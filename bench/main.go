//go:build linux

// Command bench measures `arrow run` (a clone of a pre-booted template,
// the default, and a cold boot with --cold) against baselines measured in
// the same run: raw QEMU booting the same kernel with an initramfs holding the same
// program, runc running the same program in a container, and native exec.
//
// For each, it reports the median wall time from start to exit and the
// median peak resident memory of the whole process tree, and the ratios of
// Arrow to each baseline. Runs are interleaved so that drift in the
// machine's load affects every contender alike.
//
//	go run ./bench -runs 10
//
// With -images it measures images instead (see benchImages): importing a
// Debian image with python3, and running python3 from it with its root
// disk built on the run or cached, against python3 as a host program.
//
//	go run ./bench -images -runs 10
//
// With -daemon it measures detached arrows instead (see benchDaemon): the
// latency from `arrow run -d` to a running idle app and the host memory
// (PSS) of -idle idle arrows, against foreground `arrow run` and raw QEMU.
//
//	go run ./bench -daemon -runs 5 -idle 5
//
// With -network it measures HTTP through published ports (see
// benchNetwork): requests per second and transfer rate with wrk on
// loopback, natively, in an arrow on the user-mode network and in one on a
// bridge network.
//
//	go run ./bench -network -duration 10s
//
// With -spares it measures the latency to the first output and to the
// exit of echo and python3 started in a cold boot, a template clone and a
// spare from a pool (see benchSpares).
//
//	go run ./bench -spares -runs 10
//
// With -apps it measures services a distribution ships (see benchApps):
// Debian's nginx (wrk), redis (redis-benchmark) and PostgreSQL (pgbench)
// started with `arrow run -d --service`, against the same servers run
// natively, and the time to ready of a cold boot, a clone and a spare.
//
//	go run ./bench -apps -runs 5 -duration 10s
//
// With -templates it measures the host memory (PSS) of -idle idle arrows
// cloned from one template against as many cold-booted ones (see
// benchTemplates).
//
//	go run ./bench -templates -idle 20
//
// With -docker it measures the Docker Engine API (see benchDocker): `docker
// run --rm IMAGE true` through arrowd's docker.sock against `arrow run -d`,
// `arrow wait` and `arrow rm` through the same arrowd, and against a
// foreground `arrow run IMAGE true`.
//
//	go run ./bench -docker -runs 10
//
// With -containerd it measures Arrow as containerd's runtime (see
// benchContainerd): `ctr run --rm IMAGE true` with io.containerd.arrow.v1
// against runc and against `arrow run IMAGE true`, and a CRI pod with its
// container started by crictl with the handlers arrow and runc.
//
//	go run ./bench -containerd -runs 10
//
// With -functions it measures function invocations under wrk:
//
//	go run ./bench -functions -runs 5 -duration 10s
//
// With -snapshots it measures the first HTTP response of python3's
// http.server started cold, as a clone, from a spare and from an
// application snapshot:
//
//	go run ./bench -snapshots -runs 10
//
// With -gvisor it measures gVisor's `runsc do`, the peer to beat, against
// `arrow run` through its own arrowd (a spare), `arrow run --no-daemon`
// and `arrow run --cold` of echo and python3 as host programs (see
// benchGVisor).
//
//	go run ./bench -gvisor -runs 10
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/initramfs"
	"github.com/arrowsys/arrow/vm"
)

func main() {
	runs := flag.Int("runs", 10, "measured runs per contender")
	arrowBin := flag.String("arrow", "bin/arrow", "the arrow binary")
	program := flag.String("program", "/bin/echo", "the program to run")
	arg := flag.String("arg", "hello", "its argument, which it must print")
	images := flag.Bool("images", false, "measure image import and runs of a Debian python3 image instead")
	daemon := flag.Bool("daemon", false, "measure detached arrows under arrowd (start latency, memory per idle arrow) instead")
	idle := flag.Int("idle", 5, "with -daemon: idle arrows started each way to measure memory")
	templates := flag.Bool("templates", false, "measure the memory (PSS) of -idle idle clones of one template against as many cold-booted arrows instead")
	spares := flag.Bool("spares", false, "measure first-output latency of a cold boot, a template clone and a pooled spare, for echo and python3, instead")
	apps := flag.Bool("apps", false, "measure Debian's nginx, redis and PostgreSQL run with --service against the same servers run natively, and the time to ready cold, cloned and from a spare, instead")
	network := flag.Bool("network", false, "measure HTTP through published ports (user mode and bridge) against native instead")
	dockerAPI := flag.Bool("docker", false, "measure `docker run --rm IMAGE true` through the Docker Engine API against the same run through arrowd's own API and in the foreground instead")
	containerd := flag.Bool("containerd", false, "measure `ctr run --rm` with Arrow's runtime against runc and `arrow run`, and a CRI pod's start with the handlers arrow and runc, instead")
	gvisor := flag.Bool("gvisor", false, "measure `runsc do` (gVisor) against `arrow run` through arrowd (a spare), in-process and --cold of echo and python3 instead")
	functions := flag.Bool("functions", false, "measure function invocations under wrk (from zero and warm, 1, 8 and 32 connections) against a cold `arrow run` of the handler, and a kept-warm instance's memory, instead")
	snapshots := flag.Bool("snapshots", false, "measure the first HTTP response of python3's http.server cold, cloned, from a spare and from an application snapshot instead")
	duration := flag.Duration("duration", 10*time.Second, "with -network, -apps and -functions: how long each load runs")
	flag.Parse()
	var err error
	switch {
	case *functions:
		err = benchFunctions(context.Background(), *arrowBin, *duration, *runs)
	case *snapshots:
		err = benchSnapshots(context.Background(), *arrowBin, *runs)
	case *gvisor:
		err = benchGVisor(context.Background(), *arrowBin, *runs)
	case *containerd:
		err = benchContainerd(context.Background(), *arrowBin, *runs)
	case *dockerAPI:
		err = benchDocker(context.Background(), *arrowBin, *runs)
	case *apps:
		err = benchApps(context.Background(), *arrowBin, *duration, *runs)
	case *spares:
		err = benchSpares(context.Background(), *arrowBin, *runs)
	case *templates:
		err = benchTemplates(context.Background(), *arrowBin, *idle)
	case *network:
		err = benchNetwork(context.Background(), *arrowBin, *duration)
	case *daemon:
		err = benchDaemon(context.Background(), *arrowBin, *runs, *idle)
	case *images:
		err = benchImages(context.Background(), *arrowBin, *runs)
	default:
		err = bench(context.Background(), *arrowBin, *program, *arg, *runs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// dataRoot is the data root of the user's Arrow ($ARROW_ROOT or the
// default), whose kernel and caches benchmarks share.
func dataRoot() string {
	if r := os.Getenv("ARROW_ROOT"); r != "" {
		return r
	}
	return "/var/lib/arrow"
}

// setup is what every benchmark starts from: the arrow binary by absolute
// path (it runs in other working directories), Arrow's kernel, and the
// accelerator the host gives VMs.
type setup struct {
	arrow  string
	kernel string
	accel  vm.Accel
}

func newSetup(arrowBin string) (setup, error) {
	abs, err := filepath.Abs(arrowBin)
	if err != nil {
		return setup{}, err
	}
	kernelPath, err := exec.Command(abs, "kernel", "path").Output()
	if err != nil {
		return setup{}, fmt.Errorf("%s kernel path: %w (run `make kernel`)", abs, err)
	}
	accel, err := vm.DetectAccel("auto", vm.LocalHost())
	if err != nil {
		return setup{}, err
	}
	return setup{arrow: abs, kernel: strings.TrimSpace(string(kernelPath)), accel: accel}, nil
}

type contender struct {
	name    string
	argv    []string
	samples []sample
}

func bench(ctx context.Context, arrowBin, program, arg string, runs int) error {
	work, err := os.MkdirTemp("", "arrow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	arrowBin, k, accel := su.arrow, su.kernel, su.accel
	r := &closure.Resolver{Root: "/"}
	set, err := r.Resolve(ctx, program, nil)
	if err != nil {
		return err
	}
	rawInitrd, err := buildRawInitrd(ctx, work, set)
	if err != nil {
		return err
	}
	bundle, err := buildBundle(work, set, program, arg)
	if err != nil {
		return err
	}

	cpu := "max"
	if accel.Name == vm.AccelKVM {
		cpu = "host"
	}
	contenders := []*contender{
		// The default: a clone of the pre-booted template (built by the
		// warm-up run when there is none).
		{name: "arrow run (template clone)", argv: []string{arrowBin, "run", "--accel", accel.Name, program, arg}},
		{name: "arrow run --cold", argv: []string{arrowBin, "run", "--cold", "--accel", accel.Name, program, arg}},
		// The same kernel, machine and initramfs content; a minimal init
		// instead of arrow-init; the console as the output channel.
		{name: "raw QEMU", argv: []string{"qemu-system-x86_64",
			"-M", "microvm,x-option-roms=off,acpi=off", "-accel", accel.Name, "-cpu", cpu,
			"-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
			"-no-reboot", "-kernel", k, "-initrd", rawInitrd, "-serial", "stdio",
			"-append", "console=ttyS0 reboot=t panic=-1 no_timer_check quiet rdinit=/init -- " + program + " " + arg}},
		{name: "runc run", argv: []string{"runc", "run", "--bundle", bundle, "arrow-bench"}},
		{name: "native exec", argv: []string{program, arg}},
	}
	// One warm-up each: caches (initramfs, page cache) are what a user's
	// second run sees.
	for _, c := range contenders {
		if _, err := measure(ctx, c.argv, arg); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	for i := 0; i < runs; i++ {
		for _, c := range contenders {
			s, err := measure(ctx, c.argv, arg)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.samples = append(c.samples, s)
		}
	}

	fmt.Printf("%s %s: median of %d runs, accelerator %s (%s)\n\n", program, arg, runs, accel.Name, accel.Reason)
	aw, am := median(contenders[0].samples)
	qw, _ := median(contenders[2].samples)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| contender\t| wall time\t| peak RSS (process tree)\t| this ÷ raw QEMU (time)\t| arrow ÷ this (time)\t| arrow ÷ this (memory)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, c := range contenders {
		wt, mem := median(c.samples)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %.1f MiB\t| %.2f×\t| %.2f×\t| %.2f×\t|\n", c.name, wt.Seconds(), float64(mem)/(1<<20),
			float64(wt)/float64(qw), float64(aw)/float64(wt), float64(am)/float64(mem))
	}
	fmt.Fprintln(w, "\n(arrow: the default `arrow run`, a template clone)")
	return w.Flush()
}

// buildRawInitrd writes an initramfs with the program's closure and the
// benchmark's minimal init.
func buildRawInitrd(ctx context.Context, work string, set *closure.Set) (string, error) {
	init := filepath.Join(work, "rawinit")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", init, "./bench/rawinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build rawinit: %w\n%s", err, out)
	}
	b := &initramfs.Builder{Dir: filepath.Join(work, "initramfs")}
	return b.Build(ctx, set, initramfs.Entry{Path: "/init", Source: init, Mode: 0o755})
}

// buildBundle writes an OCI bundle whose root file system holds the same
// closure, for runc.
func buildBundle(work string, set *closure.Set, program, arg string) (string, error) {
	bundle := filepath.Join(work, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, f := range set.Files() {
		dst := filepath.Join(rootfs, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		var err error
		switch {
		case f.IsDir():
			err = os.MkdirAll(dst, 0o755)
		case f.IsSymlink():
			err = os.Symlink(f.Target, dst)
		case f.Mode.IsRegular():
			err = copyFile(f.Source, dst, f.Mode.Perm())
		}
		if err != nil {
			return "", err
		}
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("runc", "spec")
	cmd.Dir = bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("runc spec: %w\n%s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", err
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{program, arg}
	b, err = json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", err
	}
	return bundle, os.WriteFile(cfgPath, b, 0o644)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
