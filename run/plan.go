package run

import (
	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/jail"

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/initramfs"
	"github.com/arrowsys/arrow/kernel"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/unit"
	"github.com/arrowsys/arrow/vm"
)

// DefaultVMOverheadMiB is what a VM's QEMU (and virtiofsd) may use on top
// of guest memory in its cgroup: the translation cache under TCG, QEMU's
// own heap and the devices' buffers.
const DefaultVMOverheadMiB = 192

// VMPids bounds the tasks of one VM's cgroup: QEMU's threads (vCPUs, I/O,
// a worker pool of up to 64), its jail helper, and virtiofsd's pools.
const VMPids = 1024

// RunCgroupParent is the cgroup under which foreground runs get theirs.
const RunCgroupParent = "arrow-run"

// runCgroup makes the cgroup of a jailed foreground run: its limits are
// the VM's size, and failing to set any of them fails the run.
func runCgroup(id string, o *Options) (*cgroup.Group, error) {
	m, err := cgroup.New(RunCgroupParent)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	g, err := m.Create(id, cgroup.Limits{
		MemoryBytes: int64(o.MemoryMiB+DefaultVMOverheadMiB) << 20,
		CPUs:        float64(o.CPUs),
		Pids:        VMPids,
		NoSwap:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return g, nil
}

// plan is a run settled before any process exists: the VM config, the
// guest spec, the template config and the resources held. makePlan builds
// it; nothing changes it after, so that launch can read it from the
// spare, the clone or the cold boot alike.
type plan struct {
	// id is the run's ID.
	id   string
	cfg  vm.Config
	spec *guest.Spec
	// net is the guest's network configuration (nil: loopback only) and
	// netInfo what --debug says of it.
	net     *guest.Network
	netInfo string
	nics    []vm.NIC // the VM's network cards, until cfg exists
	// phases are the planning steps, timed.
	phases []Phase
	// held are what the run keeps open until it ends (its root disk, its
	// cgroup).
	held []io.Closer
	// tmpl is the template the run may be cloned from; nil when it must
	// boot cold, for the reason cold.
	tmpl *template.Config
	cold ColdReason
	// users is the guest root's user database, for exec's users; nil for
	// a host program's guest, which has none.
	users *userDB
	// fresh are the named volumes the image populates.
	fresh []freshVolume
	// app is the application snapshot the run is a clone of (then spec
	// is nil: the application runs already).
	app *template.App
}

// makePlan settles the run o describes; o's defaults are filled in. On
// error nothing is held.
func makePlan(ctx context.Context, o *Options) (*plan, error) {
	p := &plan{id: newID()}
	if o.Hostname == "" {
		o.Hostname = p.id
	}
	prepare := p.prepare
	if o.app != nil {
		prepare = p.prepareApp
	}
	if err := prepare(ctx, o); err != nil {
		p.release()
		return nil, err
	}
	if p.cfg.Jail != nil && p.cfg.Jail.Cgroup == nil {
		g, err := runCgroup(p.id, o)
		if err != nil {
			p.release()
			return nil, fail(ExitArrowFailed, err)
		}
		p.cfg.Jail.Cgroup = g
		p.held = append(p.held, runGroup{g})
	}
	return p, nil
}

// runGroup is a foreground run's own cgroup, held until the run ends.
type runGroup struct{ g *cgroup.Group }

// Close kills what is left in the group and removes it. Bounded: a task
// stuck in the kernel must not hold the run's exit.
func (r runGroup) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.g.Kill(ctx)
	return r.g.Remove()
}

// release closes what the run held.
func (p *plan) release() {
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
}

func (p *plan) timed(name string, t0 time.Time) {
	p.phases = append(p.phases, Phase{name, time.Since(t0)})
}

// prepare resolves the program, the kernel, the accelerator and the guest
// payload. Every failure here happens before any process or file exists.
func (p *plan) prepare(ctx context.Context, o *Options) error {
	t0 := time.Now()
	// Size errors are the user's typos: report them before any work.
	if o.MemoryMiB < vm.MinMemoryMiB || o.MemoryMiB > vm.MaxMemoryMiB {
		return failf(ExitArrowFailed, "--memory %dM: want %dM to %dM", o.MemoryMiB, vm.MinMemoryMiB, vm.MaxMemoryMiB)
	}
	if o.CPUs < 1 || o.CPUs > vm.MaxCPUs {
		return failf(ExitArrowFailed, "--cpus %d: want 1 to %d", o.CPUs, vm.MaxCPUs)
	}
	// What the host cannot back fails now, not when QEMU touches it,
	// seconds (or, overcommitted, much longer) into a boot.
	if err := vm.CheckHostMemory(o.MemoryMiB, DefaultVMOverheadMiB); err != nil {
		return failf(ExitArrowFailed, "--%w", err)
	}
	// Before anything is built: a published port that is taken is the
	// user's to fix, and cheap to check.
	if err := p.network(o); err != nil {
		return err
	}
	k, initPath, err := p.machine(o)
	if err != nil {
		return err
	}
	accel := p.cfg.Accel
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: accelerator %s: %s\n", accel.Name, accel.Reason)
	}
	p.cfg.Verbose = o.Console
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: network %s\n", p.netInfo)
	}
	p.cfg.Cmdline = o.KernelArgs
	if o.Debug {
		p.cfg.Cmdline = strings.TrimSpace(guest.CmdlineDebug + " " + p.cfg.Cmdline)
	}
	p.timed("setup", t0)

	var mounts []guest.Mount
	if p.cfg.Shares, mounts, p.fresh, err = p.volumes(ctx, o); err != nil {
		return err
	}
	p.cold = coldReason(o, k)

	t0 = time.Now()
	var (
		set  *closure.Set
		args []string
		gr   *guestRoot
		cred credentials
		svc  *unit.Service
		gids []uint32 // the service's SupplementaryGroups=
		// svcRoot is the root the unit comes from; tmpDirs the
		// tmpfiles.d directories of its packages.
		svcRoot unit.FS
		tmpDirs []guest.ServiceDir
	)
	if o.Service != "" {
		// The unit first: it says who runs what, and a refused
		// directive fails before anything is built.
		if svc, gids, svcRoot, err = loadService(ctx, o); err != nil {
			return err
		}
		o.User = serviceUser(o, svc)
		p.timed("unit", t0)
	}
	switch {
	case o.Image != "" || o.RootFS != "":
		if len(o.Includes) > 0 {
			return failf(ExitArrowFailed, "--include puts host files next to a host program; with an image or --rootfs, use -v")
		}
		if o.Image != "" {
			gr, err = p.prepareImage(ctx, o)
		} else {
			gr, err = p.prepareRootFS(ctx, o)
		}
		if err != nil {
			return err
		}
		p.held = append(p.held, gr.disk)
		set, args = emptySet(), gr.args
		if svc != nil {
			if tmpDirs, err = serviceTmpfiles(o, svc, svcRoot, nil); err != nil {
				return err
			}
		}
		p.cfg.Drives = []vm.Drive{gr.drive}
		p.timed("rootfs", t0)
	default:
		// A host program runs as a user of the host: its names are the
		// host's, and so are the few accounts its guest gets.
		hostPasswd, err := readInRoot("/", "etc/passwd")
		if err != nil {
			return fail(ExitArrowFailed, fmt.Errorf("the host's accounts: %w", err))
		}
		hostGroup, err := readInRoot("/", "etc/group")
		if err != nil {
			return fail(ExitArrowFailed, fmt.Errorf("the host's accounts: %w", err))
		}
		hostDB := newUserDB(hostPasswd, hostGroup)
		hostDB.host = true
		if cred, err = userCredentials(o, "", "", hostDB); err != nil {
			return err
		}
		r := &closure.Resolver{Root: "/"}
		if svc != nil {
			var program string
			if set, program, err = serviceClosure(ctx, r, svc, o.Includes); err != nil {
				return programError(err)
			}
			if tmpDirs, err = serviceTmpfiles(o, svc, svcRoot, set); err != nil {
				return err
			}
			args = append([]string{program}, svc.Start[0].Args[1:]...)
		} else {
			program, err := r.Program(ctx, o.Program)
			if err != nil {
				return programError(err)
			}
			if set, err = r.Resolve(ctx, program, o.Includes); err != nil {
				return programError(err)
			}
			args = append([]string{program}, o.Args...)
		}
		passwd, group := guestAccounts(hostPasswd, hostGroup, set, cred, tmpDirs...)
		if err := addAccounts(dataroot.Root(o.Root).Accounts(), set, passwd, group); err != nil {
			return fail(ExitArrowFailed, err)
		}
		p.timed("closure", t0)
		if big := closureTooBig(set, o.MemoryMiB); p.cold == mayClone || big {
			// A clone's initramfs is its template's: the program's
			// files come on a disk. So do a large closure's on a cold
			// boot: an initramfs is unpacked into guest memory, and
			// QEMU refuses one that does not fit below it.
			t0 = time.Now()
			disk, err := closureDisk(ctx, o, set)
			if err != nil {
				if ctx.Err() != nil {
					return fail(ExitArrowFailed, ctx.Err())
				}
				if big {
					return fail(ExitArrowFailed, fmt.Errorf("the program's closure (%d MiB) needs a root disk: %w", set.Bytes()>>20, err))
				}
				fmt.Fprintf(o.Log, "arrow: warning: the program's disk for a template clone: %v; booting cold\n", err)
				p.cold = ColdNoClosureDisk
				break
			}
			gr = hostRoot(disk, args, cred)
			p.held = append(p.held, disk)
			set = emptySet()
			p.cfg.Drives = []vm.Drive{gr.drive}
			p.timed("rootdisk", t0)
		}
	}

	t0 = time.Now()
	extra := []initramfs.Entry{{Path: "/init", Source: initPath, Mode: 0o755}}
	if !k.Tailored {
		// A distribution kernel: devices come through ACPI, and its
		// virtio drivers are modules the guest must load. Under TCG it
		// may fail to calibrate the TSC and hang: tell it the rate.
		p.cfg.ACPI = true
		if khz := vm.LocalHost().TSCkHz(); khz > 0 && accel.Name == vm.AccelTCG {
			p.cfg.Cmdline = strings.TrimSpace(p.cfg.Cmdline + " tsc_early_khz=" + strconv.Itoa(khz))
		}
		feats := kernel.Features{Network: len(p.cfg.NICs) > 0}
		if gr != nil {
			feats.RootFS, feats.Overlay = gr.root.FSType, !gr.root.ReadOnly
		}
		for _, sh := range p.cfg.Shares {
			feats.Shares = append(feats.Shares, sh.FS)
		}
		mods, err := guestModules(k, feats)
		if err != nil {
			return fail(ExitArrowFailed, fmt.Errorf("--kernel %s: %w", k.Path, err))
		}
		var names []string
		for _, m := range mods {
			extra = append(extra, initramfs.Entry{Path: path.Join(guest.ModulesDir, path.Base(m.Path)), Source: filepath.Join(kernel.ModulesDir(k.Release), m.Path), Mode: 0o644})
			names = append(names, m.Name)
		}
		if len(names) > 0 {
			p.cfg.Cmdline = strings.TrimSpace(p.cfg.Cmdline + " arrow.modules=" + strings.Join(names, ","))
		}
	}
	b := &initramfs.Builder{Dir: dataroot.Root(o.Root).Initramfs()}
	cpio, err := b.Build(ctx, set, extra...)
	if err != nil {
		return fail(ExitArrowFailed, fmt.Errorf("build the guest initramfs: %w", err))
	}
	p.cfg.Initrd = cpio
	// Archives of programs not run for a month go; a later run rebuilds
	// its own in tens of milliseconds.
	if cachefile.PruneDue(b.Dir, pruneEvery) {
		if _, _, err := b.Prune(initramfsMaxAge); err != nil && o.Debug {
			fmt.Fprintf(o.Log, "arrow: pruning the initramfs cache: %v\n", err)
		}
	}
	if err := p.jail(o); err != nil {
		return fail(ExitArrowFailed, err)
	}
	// Said in the run's terms rather than the machine's (vm's Validate).
	if need, have := p.cfg.DeviceSlots(); need > have && need-len(p.cfg.NICs) <= have {
		return failf(ExitArrowFailed, "the root disk and volumes (%d) and the network card need %d device slots, and the VM has %d: use fewer volumes, or --network none", need-len(p.cfg.NICs), need, have)
	}
	if err := p.cfg.Validate(); err != nil {
		return fail(ExitArrowFailed, err)
	}
	p.timed("initramfs", t0)
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: kernel %s\narrow: initramfs %s (%d files)\n", k.Path, cpio, set.Len())
	}

	if svc != nil && (o.Image != "" || o.RootFS != "") {
		args = svc.Start[0].Args
	}
	var baseEnv []string
	baseDir := ""
	if gr != nil {
		baseEnv, baseDir, cred = gr.env, gr.dir, gr.cred
	}
	if svc != nil {
		baseEnv = append(append([]string{}, baseEnv...), serviceEnv(svc, o.User)...)
	}
	if p.spec, err = o.spec(args, baseEnv, baseDir, cred); err != nil {
		return err
	}
	if svc != nil {
		if err := applyService(p.spec, svc, gids, tmpDirs, o, cred); err != nil {
			return err
		}
	}
	if gr != nil {
		p.spec.Root = gr.root
		p.users = gr.users
	}
	p.spec.Mounts = mounts
	p.spec.Network = p.net
	if err := p.spec.Validate(); err != nil {
		return err
	}
	p.planTemplate(o, initPath)
	return nil
}

// jail confines the VM's processes (package jail): always as root unless
// the run opted out, never silently skipped. A caller who is not root
// cannot lease a uid, change namespaces or mount the jail's root, so its
// runs fail unless they opt out too.
func (p *plan) jail(o *Options) error {
	if o.NoJail {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("the VM jail needs root (a uid of its own per VM, namespaces, a root file system of its own): run as root, through arrowd, or with --no-jail (debugging only: QEMU then runs unconfined, as you)")
	}
	helper, err := jail.FindHelper(o.JailHelper)
	if err != nil {
		return fmt.Errorf("the VM jail: %w", err)
	}
	r, err := jail.RangeFromEnv()
	if err != nil {
		return fmt.Errorf("the VM jail: $%s: %w", jail.RangeEnv, err)
	}
	p.cfg.Jail = &vm.Jail{Helper: helper, Dir: vm.DefaultJailDir, UIDs: r, Cgroup: o.Cgroup, HostAccess: o.HostAccess,
		LogDenied: os.Getenv(jail.LogDeniedEnv) == "1"}
	return nil
}

// machine finds what o's VM is made of (QEMU, the accelerator, the kernel
// and arrow-init) and starts p.cfg with them and the network cards: the
// same for a run and for the template its clones come from, so that both
// compute one template key.
func (p *plan) machine(o *Options) (kernel.Kernel, string, error) {
	qemu, err := vm.FindQEMU()
	if err != nil {
		return kernel.Kernel{}, "", fail(ExitArrowFailed, err)
	}
	accel, err := vm.DetectAccel(o.Accel, vm.LocalHost())
	if err != nil {
		return kernel.Kernel{}, "", fail(ExitArrowFailed, err)
	}
	k, err := findKernel(o)
	if err != nil {
		return kernel.Kernel{}, "", err
	}
	initPath, err := FindInit(o.Init)
	if err != nil {
		return kernel.Kernel{}, "", fail(ExitArrowFailed, err)
	}
	p.cfg = vm.Config{QEMU: qemu, Kernel: k.Path, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Accel: accel, NICs: p.nics}
	return k, initPath, nil
}

// closureTooBig reports whether a closure is too large for an initramfs in
// a guest of memMiB: more than a quarter of guest memory. An initramfs
// stays in the guest's memory for the whole run, next to what the
// application itself needs (a 297 MiB PostgreSQL closure in a 512 MiB
// guest is QEMU's "initrd is too large").
func closureTooBig(set *closure.Set, memMiB int) bool {
	return set.Bytes() > int64(memMiB)<<20/4
}

// initramfsMaxAge is how long an unused cached initramfs is kept.
const initramfsMaxAge = 30 * 24 * time.Hour

// pruneEvery is how often a run prunes a cache it uses: pruning lists the
// whole cache, milliseconds a run need not spend every time.
const pruneEvery = 24 * time.Hour

// guestModules returns the modules kernel k needs for Arrow's devices and
// for what the run uses (f). A kernel whose modules are not installed on
// the host gets none: it works when it has the drivers built in, and
// otherwise its guest reports that the control port is missing.
func guestModules(k kernel.Kernel, f kernel.Features) ([]kernel.Module, error) {
	if k.Release == "" {
		return nil, nil
	}
	dir := kernel.ModulesDir(k.Release)
	if _, err := os.Stat(dir); err != nil {
		return nil, nil
	}
	return kernel.ResolveModules(dir, kernel.RunModules(f))
}

// findKernel returns the user's --kernel, checked, or Arrow's own.
func findKernel(o *Options) (kernel.Kernel, error) {
	if o.Kernel != "" {
		k, err := kernel.Inspect(o.Kernel)
		if err != nil {
			return k, fail(ExitArrowFailed, fmt.Errorf("--kernel: %w", err))
		}
		// Arrow's own kernel named by path is still Arrow's kernel.
		if own, err := kernel.Cached(filepath.Dir(k.Path)); err == nil && sameFile(own.Path, k.Path) {
			return own, nil
		}
		return k, nil
	}
	k, err := kernel.Find(o.Root)
	if err != nil {
		return k, fail(ExitArrowFailed, err)
	}
	return k, nil
}

// programError maps a closure failure to docker's exit statuses.
func programError(err error) error {
	switch {
	case errors.Is(err, closure.ErrNotFound), errors.Is(err, closure.ErrLibraryNotFound):
		return fail(ExitNotFound, err)
	case errors.Is(err, closure.ErrNotExecutable), errors.Is(err, closure.ErrNotProgram):
		return fail(ExitCannotExecute, err)
	}
	return fail(ExitArrowFailed, err)
}

// FindInit returns the arrow-init binary: explicit, $ARROW_INIT, next to the
// running executable, or in ../libexec/arrow beside it.
func FindInit(explicit string) (string, error) {
	var candidates []string
	if explicit != "" {
		candidates = []string{explicit}
	} else {
		if e := os.Getenv("ARROW_INIT"); e != "" {
			candidates = append(candidates, e)
		}
		if exe, err := os.Executable(); err == nil {
			dir := filepath.Dir(exe)
			candidates = append(candidates,
				filepath.Join(dir, "arrow-init"),
				filepath.Join(dir, "..", "libexec", "arrow", "arrow-init"))
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("arrow-init not found (looked at %v): install Arrow with `make install`, or set ARROW_INIT", candidates)
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
