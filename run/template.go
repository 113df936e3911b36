package run

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/arrowsys/arrow/api"
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

// coldReason says why the run must boot cold, or "" when a clone of a
// template may serve it. The root disk is not known yet: see planTemplate.
func (p *prepared) coldReason(o *Options, k kernel.Kernel) string {
	if why := optionsColdReason(o); why != "" {
		return why
	}
	if !k.Tailored {
		return "not Arrow's kernel"
	}
	return ""
}

// optionsColdReason is why o's options alone make a run boot cold.
func optionsColdReason(o *Options) string {
	switch {
	case o.Cold:
		return "--cold"
	case len(o.Volumes) > 0:
		return "volumes"
	case o.KernelArgs != "":
		return "--kernel-args"
	}
	return ""
}

// MayUseSpare reports whether a run with o may run in a spare (a warmed
// clone of the template of its machine, see Options.Spare): one that
// would be cloned, on the user-mode network or none, with Arrow's kernel.
// Given a spare it cannot use, a run starts its own VM and kills the
// spare: this spares a pool the waste.
func MayUseSpare(o *Options) bool {
	// A spare's uid was leased without host access when it started.
	return optionsColdReason(o) == "" && o.Kernel == "" && o.Tap == nil && !o.HostAccess &&
		(o.Network == "" || o.Network == NetworkUser || o.Network == NetworkNone)
}

// closuresDir caches the erofs images of host programs' closures.
func closuresDir(root string) string { return filepath.Join(RootDisksDir(root), "closures") }

// closureDisk builds (or reuses) the erofs image of a host program's
// closure, keyed as its initramfs would be, and holds it.
func closureDisk(ctx context.Context, o *Options, set *closure.Set) (*rootfs.Disk, error) {
	b := &initramfs.Builder{Dir: filepath.Join(o.Root, "initramfs")}
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

// planTemplate settles whether the prepared run is cloned, and from the
// template of which configuration.
func (p *prepared) planTemplate(o *Options, initPath string) {
	if p.coldWhy == "" && (len(p.cfg.Drives) != 1 || p.cfg.Drives[0].Serial != template.RootSerial) {
		p.coldWhy = "no root disk"
	}
	if p.coldWhy != "" {
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
		Root: o.Root, MemDir: filepath.Join(template.Dir(o.Root), ".mem"), QEMU: cfg.QEMU, Kernel: cfg.Kernel, Init: initPath,
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

// warn says, on one line, that a template could not serve the run.
func warn(o *Options, format string, args ...any) {
	fmt.Fprintf(o.Log, "arrow: warning: "+format+"; booting cold\n", args...)
}

// clone starts the run's VM as a clone of its template, building the
// template first if there is none. It returns nil when the run must boot
// cold, having said why on o.Log if something was wrong.
func (p *prepared) clone(ctx context.Context, o *Options, console io.Writer) *vm.Machine {
	if p.tmpl == nil {
		return nil
	}
	t0 := time.Now()
	built := false // this run built the template
	in, err := p.tmpl.Inputs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			warn(o, "%v", err)
		}
		return nil
	}
	key := in.Key()
	t, err := template.Lookup(o.Root, key)
	switch {
	case err == nil:
	case template.Exists(o.Root, key):
		// A damaged template is not rebuilt in the user's way: this
		// run boots cold, the next one builds it afresh.
		warn(o, "%v (removed)", err)
		_ = template.Remove(o.Root, key)
		return nil
	default:
		if o.Debug {
			fmt.Fprintf(o.Log, "arrow: building template %s (%d MiB, %d vCPUs)\n", key, p.tmpl.MemoryMiB, p.tmpl.CPUs)
		}
		if t, err = template.Ensure(ctx, *p.tmpl); err != nil {
			if ctx.Err() == nil {
				warn(o, "%v", err)
			}
			return nil
		}
		built = true
	}
	p.phases = append(p.phases, Phase{"template", time.Since(t0)})
	if m := p.useSpare(ctx, o, t, console); m != nil {
		return m
	}
	t1 := time.Now()
	cl, err := t.Clone(ctx, *p.tmpl, template.CloneOptions{RootDisk: p.cfg.Drives[0].Path, Console: console})
	if err != nil {
		if ctx.Err() == nil {
			if template.IsUnusable(err) {
				_ = template.Remove(o.Root, t.Key)
				warn(o, "%v (removed)", err)
			} else {
				warn(o, "template %s: %v", t.Key, err)
			}
		}
		return nil
	}
	p.tmplKey = t.Key
	p.phases = append(p.phases, Phase{"clone", time.Since(t1)})
	if o.Debug {
		how := "cloned"
		if built {
			how = "built and cloned"
		}
		fmt.Fprintf(o.Log, "arrow: %s template %s (QEMU start %v, restore %v, resume %v)\n", how, t.Key,
			cl.Start.Round(time.Microsecond), cl.Restore.Round(time.Microsecond), cl.Resume.Round(time.Microsecond))
	}
	return cl.Machine
}

// useSpare readies the run's spare, when it has one cloned from t, and
// returns its machine; nil when the run must start a clone of its own.
func (p *prepared) useSpare(ctx context.Context, o *Options, t *template.Template, console io.Writer) *vm.Machine {
	sp := p.spare
	if sp == nil || p.tmpl.Tap != nil {
		// A spare's card is on the user-mode network; a bridge
		// network's tap is plugged in when QEMU starts.
		return nil
	}
	if sp.Template.Key != t.Key || sp.Template.MemFile != t.MemFile {
		if o.Debug {
			fmt.Fprintf(o.Log, "arrow: the spare is of template %s, this run's is %s: not used\n", sp.Template.Key, t.Key)
		}
		return nil
	}
	t0 := time.Now()
	if err := sp.Use(ctx, p.cfg.Drives[0].Path, p.tmpl.Forwards, console); err != nil {
		if ctx.Err() == nil {
			fmt.Fprintf(o.Log, "arrow: warning: the spare VM failed (%v); starting a clone\n", err)
		}
		return nil
	}
	p.spare, p.fromSpare, p.tmplKey = nil, true, t.Key
	p.phases = append(p.phases, Phase{"spare", time.Since(t0)})
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: took a spare of template %s (warmed in %v: %v)\n", t.Key, sp.Warm.Round(time.Microsecond), sp.Warmed.Steps)
	}
	return sp.Machine
}

// dropSpare kills the run's spare unless the run took it.
func (p *prepared) dropSpare() {
	if p.spare != nil {
		_ = p.spare.Machine.Kill()
		<-p.spare.Machine.Done()
		p.spare = nil
	}
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
	p := &prepared{id: newID()}
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
