package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/initramfs"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/kernel"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// Runs start from a pre-booted template when they can (package template):
// a clone of a VM that already booted skips the kernel's boot. A run can
// when it boots Arrow's own kernel, with no volumes and no --kernel-args,
// on the user-mode network, a bridge network (arrowd's tap) or none. Its
// files reach the clone on the root disk: an image's or --rootfs's disk,
// or for a host program an erofs image of its closure (cached under the
// initramfs's key). The first run of a machine size builds its template
// (a cold boot and a snapshot, 1 to 2 s under TCG); later runs clone it,
// or take a spare (Options.Spare, arrowd's pool). Templates never make a
// run fail: any problem with one is a warning and a cold boot.

// ColdReason is why a run boots cold rather than from a template. The
// zero value, mayClone, is no reason: the run may be a clone.
type ColdReason int

// The reasons a run boots cold.
const (
	mayClone ColdReason = iota
	// ColdAsked: the run asked for it (--cold).
	ColdAsked
	// ColdVolumes: volumes are shared when QEMU starts, which a
	// template's clone cannot do.
	ColdVolumes
	// ColdKernelArgs: a clone has its template's kernel command line.
	ColdKernelArgs
	// ColdForeignKernel: templates are of Arrow's own kernel only.
	ColdForeignKernel
	// ColdNoClosureDisk: the host program's files could not be put on
	// a disk for a clone.
	ColdNoClosureDisk
	// ColdNoRootDisk: the run has no root disk in the slot a clone
	// takes its root from.
	ColdNoRootDisk
	// ColdTemplateFailed: the template could not be built, found or
	// cloned (the run said why on its log).
	ColdTemplateFailed
)

// String says the reason as --debug prints it.
func (r ColdReason) String() string {
	// Indexed by reason, in the order of the constants.
	names := [...]string{"none", "--cold", "volumes", "--kernel-args", "not Arrow's kernel",
		"no closure disk", "no root disk", "the template failed"}
	if r < 0 || int(r) >= len(names) {
		return fmt.Sprintf("ColdReason(%d)", int(r))
	}
	return names[r]
}

// coldReason says why the run must boot cold, or mayClone when a clone of
// a template may serve it. The root disk is not known yet: see
// planTemplate.
func coldReason(o *Options, k kernel.Kernel) ColdReason {
	if why := optionsColdReason(o); why != mayClone {
		return why
	}
	if !k.Tailored {
		return ColdForeignKernel
	}
	return mayClone
}

// optionsColdReason is why o's options alone make a run boot cold.
func optionsColdReason(o *Options) ColdReason {
	switch {
	case o.Cold:
		return ColdAsked
	case len(o.Volumes) > 0:
		return ColdVolumes
	case o.KernelArgs != "":
		return ColdKernelArgs
	}
	return mayClone
}

// MayUseSpare reports whether a run with o may run in a spare (a warmed
// clone of the template of its machine, see Options.Spare): one that
// would be cloned, on the user-mode network or none, with Arrow's kernel.
// Given a spare it cannot use, a run starts its own VM and kills the
// spare: this spares a pool the waste.
func MayUseSpare(o *Options) bool {
	// A spare's uid was leased without host access when it started.
	return o.Snapshot == "" && optionsColdReason(o) == mayClone && o.Kernel == "" && o.Tap == nil && !o.HostAccess &&
		(o.Network == "" || o.Network == NetworkUser || o.Network == NetworkNone)
}

// closuresDir caches the erofs images of host programs' closures.
func closuresDir(root string) string { return dataroot.Root(root).Closures() }

// closureDisk builds (or reuses) the erofs image of a host program's
// closure, keyed as its initramfs would be, and holds it.
func closureDisk(ctx context.Context, o *Options, set *closure.Set) (*rootfs.Disk, error) {
	b := &initramfs.Builder{Dir: dataroot.Root(o.Root).Initramfs()}
	key, err := b.Key(ctx, set)
	if err != nil {
		return nil, err
	}
	cache := closuresDir(o.Root)
	path := filepath.Join(cache, rootfs.ImageName(key))
	disk, err := rootfs.HoldOrBuild(path, func() error { return buildClosureDisk(ctx, o, set, cache, key) })
	if err != nil {
		return nil, err
	}
	if cachefile.PruneDue(cache, pruneEvery) {
		if _, err := rootfs.Prune(cache, nil, initramfsMaxAge); err != nil && o.Debug {
			fmt.Fprintf(o.Log, "arrow: pruning the closure disk cache: %v\n", err)
		}
	}
	return disk, nil
}

func buildClosureDisk(ctx context.Context, o *Options, set *closure.Set, cache, key string) error {
	// Under the data root, so that files are hard links where they can.
	if err := os.MkdirAll(o.Root, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(o.Root, ".closure-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "root")
	if err := initramfs.WriteTree(ctx, set, tree); err != nil {
		return err
	}
	disk, err := rootfs.Build(ctx, tree, cache, key)
	if err != nil {
		return err
	}
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: built closure disk %s\n", disk)
	}
	return nil
}

// planTemplate settles whether the planned run may be cloned, and from
// the template of which configuration.
func (p *plan) planTemplate(o *Options, initPath string) {
	if p.cold == mayClone && (len(p.cfg.Drives) != 1 || p.cfg.Drives[0].Serial != template.RootSerial) {
		p.cold = ColdNoRootDisk
	}
	if p.cold != mayClone {
		return
	}
	tc := templateConfig(o, p.cfg, initPath)
	p.tmpl = &tc
}

// templateConfig is the template for machine cfg.
func templateConfig(o *Options, cfg vm.Config, initPath string) template.Config {
	tc := template.Config{
		// Memory files live under the data root and go with it: in
		// /dev/shm they would outlive a deleted root (a test's, say) and
		// hold their RAM until reboot. The page cache shares their pages
		// between clones all the same.
		Root: o.Root, MemDir: dataroot.Root(o.Root).TemplateMemory(), QEMU: cfg.QEMU, Kernel: cfg.Kernel, Init: initPath,
		MemoryMiB: cfg.MemoryMiB, CPUs: cfg.CPUs, Accel: cfg.Accel, Jail: cfg.Jail,
		BootTimeout: max(o.bootTimeout(), DefaultBootTimeout), // --boot-timeout is the cold boot's
	}
	if len(cfg.NICs) == 1 {
		if u := cfg.NICs[0].User; u != nil {
			tc.UserNet, tc.Forwards = true, u.Forwards
		} else {
			tc.TapNet, tc.Tap = true, cfg.NICs[0].Tap
		}
	}
	return tc
}

// WarmTemplate builds the template runs with o's machine (memory, vCPUs,
// accelerator, network) are cloned from, unless it exists, and returns it.
// Runs build it themselves on first use; warming spares the first run
// that wait.
func WarmTemplate(ctx context.Context, o Options) (*template.Template, error) {
	tc, err := machineTemplate(&o)
	if err != nil {
		return nil, err
	}
	return template.Ensure(ctx, tc)
}

// StartSpare starts a spare for runs with o's machine: a warmed, paused
// clone of their template (built first if need be) for Options.Spare.
func StartSpare(ctx context.Context, o Options) (*template.Spare, error) {
	tc, err := machineTemplate(&o)
	if err != nil {
		return nil, err
	}
	t, err := template.Ensure(ctx, tc)
	if err != nil {
		return nil, err
	}
	return t.StartSpare(ctx, tc, nil)
}

// machineTemplate is the template configuration of runs with o's machine.
func machineTemplate(o *Options) (template.Config, error) {
	if err := o.setDefaults(); err != nil {
		return template.Config{}, err
	}
	// A template of more memory than the host has would boot, its memory
	// file sparse, and hand every clone an allocation the host cannot
	// keep.
	if err := vm.CheckHostMemory(o.MemoryMiB, DefaultVMOverheadMiB); err != nil {
		return template.Config{}, failf(ExitArrowFailed, "--%w", err)
	}
	p := &plan{id: newID()}
	if err := p.network(&Options{Config: api.Config{Network: o.Network}}); err != nil {
		return template.Config{}, err
	}
	k, initPath, err := p.machine(o)
	if err != nil {
		return template.Config{}, err
	}
	if !k.Tailored {
		return template.Config{}, fmt.Errorf("kernel %s is not Arrow's: runs with it boot cold", k.Path)
	}
	if err := p.jail(o); err != nil {
		return template.Config{}, err
	}
	return templateConfig(o, p.cfg, initPath), nil
}

// hostRoot is the guest root of a host program cloned from a template:
// its closure on a disk, under a writable overlay.
func hostRoot(disk *rootfs.Disk, args []string, cred credentials) *guestRoot {
	gr := diskRoot(disk, false, cred)
	gr.args = args
	return gr
}

// diskRoot is a guest root on disk, in the slot a template's clones get
// their root in (template.RootSerial, which arrow-init finds it by); under
// a writable overlay unless readOnly.
func diskRoot(disk *rootfs.Disk, readOnly bool, cred credentials) *guestRoot {
	return &guestRoot{
		drive: vm.Drive{Path: disk.Path, Serial: template.RootSerial, ReadOnly: true},
		root:  &guest.Root{Device: template.RootSerial, FSType: rootfs.FSType, ReadOnly: readOnly},
		disk:  disk,
		cred:  cred,
	}
}
