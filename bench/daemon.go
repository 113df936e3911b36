//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/network"
	"github.com/arrowsys/arrow/vm"
	"github.com/google/nftables"
)

// The idle application of the daemon benchmark: it says it runs, then
// waits. Every contender runs it with the same guest memory.
const (
	idleProgram = "/bin/busybox"
	idleScript  = "echo ready; exec /bin/busybox sleep 3600"
	idleReady   = "ready"
	idleMemory  = "128M"
	// settleTime is how long idle arrows are left alone before their
	// memory is read, so that boot-time allocations have been given back.
	settleTime = 3 * time.Second
	// readyTimeout bounds every wait for an arrow to come up.
	readyTimeout = 2 * time.Minute
)

// fitBudget is the host memory the "how many fit" table divides.
const fitBudget = 8 << 30

// benchDaemon measures detached arrows (`go run ./bench -daemon`): the
// latency from `arrow run -d` to a running app, against foreground `arrow
// run` and raw QEMU to the app's first output, and the host memory (PSS)
// an idle arrow costs each way, with how many would fit in 8 GiB. It runs
// an arrowd of its own on a temporary data root (sharing the machine's
// kernels and initramfs cache) and socket, and removes everything it
// started when it ends, also on an error or an interrupt.
func benchDaemon(ctx context.Context, arrowBin string, runs, idle int) (err error) {
	if runs < 1 || idle < 1 {
		return fmt.Errorf("-runs %d -idle %d: need at least one of each", runs, idle)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	arrowBin, kernel, accel := su.arrow, su.kernel, su.accel

	b, work, done, err := newDaemonBench(arrowBin, accel.Name, "arrow-bench-daemon-")
	if err != nil {
		return err
	}
	defer done()
	defer func() {
		if cerr := b.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			if log, rerr := os.ReadFile(b.log); rerr == nil && len(log) > 0 {
				err = fmt.Errorf("%w\narrowd log:\n%s", err, tail(log, 4000))
			}
		}
	}()

	r := &closure.Resolver{Root: "/"}
	set, err := r.Resolve(ctx, idleProgram, nil)
	if err != nil {
		return err
	}
	rawInitrd, err := buildRawInitrd(ctx, work, set)
	if err != nil {
		return err
	}
	cpu := "max"
	if accel.Name == vm.AccelKVM {
		cpu = "host"
	}
	// The raw baseline of bench(): the same kernel, machine and closure,
	// a minimal init, the console as the output channel. The kernel
	// strips the quotes and hands init the script as one argument.
	b.rawArgv = []string{"qemu-system-x86_64",
		"-M", "microvm,x-option-roms=off,acpi=off", "-accel", accel.Name, "-cpu", cpu,
		"-m", idleMemory, "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot", "-kernel", kernel, "-initrd", rawInitrd, "-serial", "stdio",
		"-append", "console=ttyS0 reboot=t panic=-1 no_timer_check quiet rdinit=/init -- " +
			idleProgram + ` sh -c "` + idleScript + `"`}
	b.directArgv = append([]string{arrowBin, "run", "--accel", accel.Name, "-m", idleMemory, idleProgram, "sh", "-c"}, idleScript)

	if err := b.startDaemon(ctx); err != nil {
		return err
	}

	// 1. Start-to-running latency, interleaved; round 0 warms up and
	// checks that each way really runs the app.
	ways := []struct {
		name    string
		start   func(ctx context.Context, round int) (time.Duration, error)
		samples []time.Duration
	}{
		{name: "`arrow run -d` through arrowd (the CLI call)", start: b.latencyDaemon},
		{name: "`arrow run` in the foreground (to \"ready\")", start: b.latencyDirect},
		{name: "raw QEMU (to \"ready\" on the console)", start: b.latencyRaw},
	}
	for round := 0; round <= runs; round++ {
		for i := range ways {
			d, err := ways[i].start(ctx, round)
			if err != nil {
				return fmt.Errorf("%s: %w", ways[i].name, err)
			}
			if round > 0 {
				ways[i].samples = append(ways[i].samples, d)
			}
		}
	}

	// 2. Memory of idle arrows, one way at a time.
	dm, err := b.memoryDaemon(ctx, idle)
	if err != nil {
		return fmt.Errorf("idle arrows through arrowd: %w", err)
	}
	fm, err := b.memoryForeground(ctx, idle, b.directArgv)
	if err != nil {
		return fmt.Errorf("idle foreground arrows: %w", err)
	}
	rm, err := b.memoryForeground(ctx, idle, b.rawArgv)
	if err != nil {
		return fmt.Errorf("idle raw QEMUs: %w", err)
	}

	fmt.Printf("%s %s (%s guest memory each way): accelerator %s (%s); arrowd's arrows ran under %s\n\n",
		idleProgram, "sh -c '"+idleScript+"'", idleMemory, accel.Name, accel.Reason, dm.accel)

	fmt.Printf("Start to running, median of %d runs (warm caches; arrowd already running):\n\n", runs)
	rawMed := medianDuration(ways[2].samples)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| way\t| start → running (median)\t| min – max\t| this ÷ raw QEMU\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|")
	for _, way := range ways {
		med := medianDuration(way.samples)
		lo, hi := minMax(way.samples)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", way.name, med.Seconds(), lo.Seconds(), hi.Seconds(),
			float64(med)/float64(rawMed))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println("\n`arrow run -d` returns once arrowd reports the app started in the guest, which may be just before its first line;")
	fmt.Println("the other two are timed to that line on their standard output.")

	fmt.Printf("\nHost memory of %d idle arrows each way (PSS from /proc/PID/smaps_rollup, %v after the last started):\n\n", idle, settleTime)
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| way\t| processes per arrow\t| PSS of all K\t| PSS per arrow\t| of which QEMU\t| of which the rest\t| per arrow ÷ raw QEMU\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	rawPer := rm.perArrow()
	row := func(name, procs string, m idleMemoryUse) {
		fmt.Fprintf(w, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %.2f×\t|\n", name, procs, mibs(m.total()), mibs(m.perArrow()),
			mibs(m.qemu/int64(m.k)), mibs(m.rest/int64(m.k)), float64(m.perArrow())/float64(rawPer))
	}
	row("arrowd", "shim + QEMU", dm)
	withDaemon := dm
	withDaemon.rest += dm.daemon
	row(fmt.Sprintf("arrowd, with arrowd's own %s (its %d spares included) ÷ %d", mibs(dm.daemon), dm.spares, idle), "shim + QEMU + arrowd ÷ K", withDaemon)
	row("`arrow run` in the foreground", "arrow CLI + QEMU", fm)
	row("raw QEMU", "QEMU", rm)
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Printf("\nIdle arrows in %s of host memory: extrapolated as floor(%s ÷ PSS per arrow) from the %d measured, not measured:\n\n",
		gib(fitBudget), gib(fitBudget), idle)
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "| way\t| PSS per arrow\t| idle arrows in 8 GiB (extrapolated)\t| measured: total PSS of the K = %d\t| this ÷ raw QEMU (count)\t|\n", idle)
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|")
	rawFit := fitBudget / rawPer
	fit := func(name string, per int64, note, total string) {
		n := fitBudget / per
		fmt.Fprintf(w, "| %s\t| %s\t| %d%s\t| %s\t| %.2f×\t|\n", name, mibs(per), n, note, total, float64(n)/float64(rawFit))
	}
	// arrowd is a fixed cost, not a per-arrow one: also give the count
	// with it taken off the budget once.
	fit("arrowd (shim + QEMU)", dm.perArrow(),
		fmt.Sprintf(" (%d with arrowd's %s taken off the 8 GiB first)", (fitBudget-dm.daemon)/dm.perArrow(), mibs(dm.daemon)),
		fmt.Sprintf("%s + arrowd %s = %s", mibs(dm.total()), mibs(dm.daemon), mibs(dm.total()+dm.daemon)))
	fit("`arrow run` in the foreground (CLI + QEMU)", fm.perArrow(), "", mibs(fm.total()))
	fit("raw QEMU", rawPer, "", mibs(rm.total()))
	return w.Flush()
}

// daemonBench is the state of one run of benchDaemon, kept so that cleanup
// can undo whatever was started.
// newDaemonBench prepares a benchmark's own arrowd (not started yet): a
// temporary data root sharing the machine's kernel and initramfs cache, a
// short socket directory, and the marker its processes carry. done removes
// the directories.
func newDaemonBench(arrowBin, accel, prefix string) (b *daemonBench, work string, done func(), err error) {
	work, err = os.MkdirTemp("", prefix)
	if err != nil {
		return nil, "", nil, err
	}
	root := filepath.Join(work, "root")
	// Socket addresses are limited to 108 bytes: keep the runtime
	// directory short.
	runDir, err := os.MkdirTemp("", "ab")
	done = func() { os.RemoveAll(work); os.RemoveAll(runDir) }
	if err != nil {
		done()
		return nil, "", nil, err
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		done()
		return nil, "", nil, err
	}
	from, to := dataroot.Root(dataRoot()), dataroot.Root(root)
	for _, shared := range [][2]string{{from.Kernels(), to.Kernels()}, {from.Initramfs(), to.Initramfs()}} {
		if err := os.Symlink(shared[0], shared[1]); err != nil {
			done()
			return nil, "", nil, err
		}
	}
	b = &daemonBench{
		arrow:  arrowBin,
		accel:  accel,
		socket: filepath.Join(runDir, "arrow.sock"),
		log:    filepath.Join(work, "arrowd.log"),
		marker: "ARROW_BENCH_DAEMON=" + filepath.Base(work),
		fg:     map[*fgProcess]bool{},
	}
	// Foreground runs stay in-process (they are what is measured against
	// arrowd's); a way that takes spares through arrowd says so.
	b.env = append(os.Environ(), "ARROW_ROOT="+root, "ARROW_SOCKET="+b.socket, b.marker, "ARROW_NO_DAEMON=1")
	return b, work, done, nil
}

type daemonBench struct {
	arrow, accel string
	socket, log  string
	// marker is an environment entry every process started here carries
	// (and passes on to the shims and QEMUs), for the final sweep.
	marker     string
	env        []string
	rawArgv    []string
	directArgv []string

	daemon *exec.Cmd
	// daemonArgs are arrowd's flags (`arrow daemon ...`).
	daemonArgs []string
	// fg are the foreground processes (arrow run, raw QEMU) running.
	fg map[*fgProcess]bool
}

// startDaemon starts arrowd in a process group of its own (a ^C at the
// terminal is for this program, which then removes the arrows in order)
// and waits until it answers.
func (b *daemonBench) startDaemon(ctx context.Context) error {
	// An arrowd reconciles the host's bridge networks with its own state
	// when it starts: another arrowd's links and rules would go.
	if err := foreignNetworkState(); err != nil {
		return err
	}
	logf, err := os.Create(b.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.arrow, append([]string{"daemon"}, b.daemonArgs...)...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.daemon = cmd
	c := client.New(b.socket)
	deadline := time.Now().Add(15 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("arrowd did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// foreignNetworkState fails when the host has arw* links or the nftables
// table inet arrow: another arrowd manages bridge networks here, and the
// benchmark's arrowd would remove them when it starts.
func foreignNetworkState() error {
	var found []string
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "arw") {
			found = append(found, i.Name)
		}
	}
	if c, err := nftables.New(); err == nil {
		if ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err == nil {
			for _, t := range ts {
				if t.Name == network.TableName {
					found = append(found, "nftables table inet "+t.Name)
				}
			}
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("another arrowd manages bridge networks on this host (%s); "+
			"the benchmark's arrowd would remove them: stop it (or its test) first", strings.Join(found, ", "))
	}
	return nil
}

// cli runs the arrow CLI against the benchmark's arrowd and returns its
// standard output and how long it took.
func (b *daemonBench) cli(ctx context.Context, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.arrow, args...)
	cmd.Env = b.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return out.String(), d, fmt.Errorf("arrow %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), d, nil
}

// runDetached creates and starts the idle arrow name through arrowd.
func (b *daemonBench) runDetached(ctx context.Context, name string) (time.Duration, error) {
	args := append([]string{"run", "-d", "--name", name}, b.directArgv[2:]...)
	out, d, err := b.cli(ctx, args...)
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(out) == "" {
		return 0, fmt.Errorf("arrow run -d --name %s printed no ID", name)
	}
	return d, nil
}

// remove removes the detached arrow name, running or not.
func (b *daemonBench) remove(ctx context.Context, name string) error {
	_, _, err := b.cli(ctx, "rm", "-f", name)
	return err
}

// latencyDaemon times `arrow run -d`. In the warm-up round it also checks
// that the app printed its line to the arrow's log.
func (b *daemonBench) latencyDaemon(ctx context.Context, round int) (time.Duration, error) {
	name := fmt.Sprintf("latency-%d", round)
	d, err := b.runDetached(ctx, name)
	if err != nil {
		return 0, err
	}
	if round == 0 {
		deadline := time.Now().Add(readyTimeout)
		for {
			out, _, err := b.cli(ctx, "logs", name)
			if err != nil {
				return 0, err
			}
			if hasLine(out, idleReady) {
				break
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("arrow %s's log has no %q: %q", name, idleReady, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return d, b.remove(ctx, name)
}

func (b *daemonBench) latencyDirect(ctx context.Context, _ int) (time.Duration, error) {
	return b.latencyForeground(ctx, b.directArgv)
}

func (b *daemonBench) latencyRaw(ctx context.Context, _ int) (time.Duration, error) {
	return b.latencyForeground(ctx, b.rawArgv)
}

// latencyForeground times argv from its start to the app's line on its
// standard output, then ends it.
func (b *daemonBench) latencyForeground(ctx context.Context, argv []string) (time.Duration, error) {
	p, err := b.startForeground(argv)
	if err != nil {
		return 0, err
	}
	d, err := p.waitReady(ctx)
	if serr := b.stopForeground(p); err == nil {
		err = serr
	}
	return d, err
}

// fgProcess is a foreground contender's process: `arrow run` or QEMU.
type fgProcess struct {
	cmd   *exec.Cmd
	start time.Time
	// ready receives the time the app's line appeared; done is closed
	// once the process was reaped.
	ready chan time.Time
	done  chan struct{}
	errb  bytes.Buffer
	// output keeps what came before the app's line, for errors.
	output bytes.Buffer
}

func (b *daemonBench) startForeground(argv []string) (*fgProcess, error) {
	return b.startForegroundLine(argv, func(line string) bool { return strings.TrimSpace(line) == idleReady })
}

// startForegroundLine is startForeground with the app's line as ready
// says.
func (b *daemonBench) startForegroundLine(argv []string, ready func(line string) bool) (*fgProcess, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = b.env
	p := &fgProcess{cmd: cmd, ready: make(chan time.Time, 1), done: make(chan struct{})}
	cmd.Stderr = &p.errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.fg[p] = true
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if ready(sc.Text()) {
				p.ready <- time.Now()
				break
			}
			if p.output.Len() < 4096 {
				p.output.WriteString(sc.Text() + "\n")
			}
		}
		// Keep draining, so that the process never blocks on a full
		// pipe; then reap it.
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady waits for the app's line and returns the time since start.
func (p *fgProcess) waitReady(ctx context.Context) (time.Duration, error) {
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case t := <-p.ready:
		return t.Sub(p.start), nil
	case <-p.done:
		return 0, fmt.Errorf("%s exited before %q: %v\nstdout: %s\nstderr: %s", p.cmd.Args[0], idleReady,
			p.cmd.ProcessState, p.output.String(), tail(p.errb.Bytes(), 2000))
	case <-timer.C:
		return 0, fmt.Errorf("%s: no %q after %v", p.cmd.Args[0], idleReady, readyTimeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// stopForeground ends p with SIGTERM (SIGKILL after 10 s) and kills what
// is left of its process tree.
func (b *daemonBench) stopForeground(p *fgProcess) error {
	tree := descendants(p.cmd.Process.Pid)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("%s did not end on SIGTERM", p.cmd.Args[0])
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	for _, pid := range tree[1:] {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	delete(b.fg, p)
	return err
}

// idleMemoryUse is the PSS of k idle arrows of one way.
type idleMemoryUse struct {
	k int
	// qemu and rest sum the PSS of the arrows' QEMU processes and of
	// their other processes; daemon is arrowd's own, with its pool's
	// spares (spares of them).
	qemu, rest, daemon int64
	spares             int
	accel              string
}

func (m idleMemoryUse) total() int64    { return m.qemu + m.rest }
func (m idleMemoryUse) perArrow() int64 { return m.total() / int64(m.k) }

// add adds the PSS of the processes in pids.
func (m *idleMemoryUse) add(pids []int) {
	for _, pid := range pids {
		if isQEMU(pid) {
			m.qemu += pss(pid)
		} else {
			m.rest += pss(pid)
		}
	}
}

// memoryDaemon starts k idle arrows through arrowd and measures each
// one's shim and QEMU (the shims are arrowd's children), and arrowd.
func (b *daemonBench) memoryDaemon(ctx context.Context, k int) (idleMemoryUse, error) {
	m := idleMemoryUse{k: k}
	var names []string
	defer func() {
		for _, n := range names {
			_ = b.remove(context.WithoutCancel(ctx), n)
		}
	}()
	for i := 0; i < k; i++ {
		name := fmt.Sprintf("idle-%d", i)
		names = append(names, name)
		if _, err := b.runDetached(ctx, name); err != nil {
			return m, err
		}
	}
	if err := sleep(ctx, settleTime); err != nil {
		return m, err
	}
	list, err := client.New(b.socket).List(ctx, false)
	if err != nil {
		return m, err
	}
	accels := map[string]bool{}
	for _, a := range list {
		accels[a.Accel] = true
	}
	for a := range accels {
		m.accel += a
	}
	// Shims no arrow has are spares (arrowd's pool, see daemon/pool.go):
	// arrowd's overhead, not an arrow's.
	arrowShims := make(map[int]bool)
	for _, a := range list {
		arrowShims[a.ShimPid] = true
	}
	var shims, spares []int
	for _, pid := range children(b.daemon.Process.Pid) {
		if arrowShims[pid] {
			shims = append(shims, pid)
		} else {
			spares = append(spares, pid)
		}
	}
	if len(shims) != k || len(list) != k {
		return m, fmt.Errorf("%d arrows running, %d shims under arrowd; want %d", len(list), len(shims), k)
	}
	for _, s := range shims {
		tree := descendants(s)
		if !anyQEMU(tree) {
			return m, fmt.Errorf("shim %d has no QEMU under it", s)
		}
		m.add(tree)
	}
	m.daemon = pss(b.daemon.Process.Pid)
	for _, sp := range spares {
		for _, pid := range descendants(sp) {
			m.daemon += pss(pid)
		}
	}
	m.spares = len(spares)
	return m, nil
}

// memoryForeground starts k of argv (arrow run or raw QEMU), waits until
// each app runs, and measures their process trees.
func (b *daemonBench) memoryForeground(ctx context.Context, k int, argv []string) (idleMemoryUse, error) {
	m := idleMemoryUse{k: k}
	var ps []*fgProcess
	defer func() {
		for _, p := range ps {
			_ = b.stopForeground(p)
		}
	}()
	for i := 0; i < k; i++ {
		p, err := b.startForeground(argv)
		if err != nil {
			return m, err
		}
		ps = append(ps, p)
		if _, err := p.waitReady(ctx); err != nil {
			return m, err
		}
	}
	if err := sleep(ctx, settleTime); err != nil {
		return m, err
	}
	for _, p := range ps {
		tree := descendants(p.cmd.Process.Pid)
		if !anyQEMU(tree) {
			return m, fmt.Errorf("%s (%d) has no QEMU", argv[0], p.cmd.Process.Pid)
		}
		m.add(tree)
	}
	return m, nil
}

// cleanup removes the detached arrows, stops arrowd, ends the foreground
// processes, and kills whatever carrying the marker is left (a shim or
// QEMU that outlived all that). It reports what it had to force.
func (b *daemonBench) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for p := range b.fg {
		if err := b.stopForeground(p); err != nil {
			errs = append(errs, err)
		}
	}
	if b.daemon != nil {
		if list, err := client.New(b.socket).List(ctx, true); err == nil {
			for _, a := range list {
				if err := b.remove(ctx, a.ID); err != nil {
					errs = append(errs, fmt.Errorf("cleanup: %w", err))
				}
			}
		}
		_ = b.daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = b.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = b.daemon.Process.Kill()
			<-done
			errs = append(errs, errors.New("cleanup: arrowd did not end on SIGTERM"))
		}
		b.daemon = nil
	}
	// QEMU exits with its arrow, but give the kernel a moment.
	var stray []int
	for i := 0; i < 30; i++ {
		if stray = b.marked(); len(stray) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range stray {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(stray) > 0 {
		errs = append(errs, fmt.Errorf("cleanup: killed stray processes %v", stray))
	}
	return errors.Join(errs...)
}

// marked lists the processes whose environment holds the marker.
func (b *daemonBench) marked() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), []byte(b.marker+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// children lists pid's child processes.
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	for _, t := range tasks {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "children"))
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// descendants lists pid and all its descendants, pid first.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children(out[i])...)
	}
	return out
}

// pss is a process's proportional set size in bytes: its private memory
// plus its share of what it shares.
func pss(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func isQEMU(pid int) bool {
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.HasPrefix(string(comm), "qemu-system")
}

func anyQEMU(pids []int) bool {
	for _, p := range pids {
		if isQEMU(p) {
			return true
		}
	}
	return false
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minMax(ds []time.Duration) (lo, hi time.Duration) {
	lo, hi = ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return lo, hi
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func gib(n int64) string { return fmt.Sprintf("%d GiB", n>>30) }
