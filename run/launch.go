package run

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/template"
	"github.com/arrowsys/arrow/vm"
)

// launched is how a run's VM started.
type launched struct {
	m *vm.Machine
	// agent is the VM's guest client when launch has one already (a
	// spare's, which warmed it); nil for a new VM.
	agent guest.Agent
	// tmplKey is the key of the template the VM was cloned from; empty
	// for a cold boot, whose reason is cold. tmpl is that template.
	tmplKey string
	tmpl    *template.Template
	cold    ColdReason
	// spare: the clone was a spare from a pool (Options.Spare).
	spare bool
	// built: this run built its template.
	built bool
	// phases are the launch's steps, timed (template, spare or clone).
	phases []Phase
}

// launch starts the planned run's VM, trying in this order: the run's
// spare (Options.Spare, a warmed clone of its template from arrowd's
// pool), a clone of its template (built first if there is none), a cold
// boot. Templates never make a run fail: a template that cannot serve is
// a warning on the run's log and a cold boot, with the reason in
// launched.cold. The spare is the run's: it is killed unless taken.
//
// As Firecracker separates booting from restoring a snapshot, the three
// starts are three functions; only the cold boot can fail the run.
func launch(ctx context.Context, p *plan, o *Options, console io.Writer) (launched, error) {
	spare := o.Spare
	defer func() { dropSpare(spare) }()
	l := launched{cold: p.cold}
	if p.app != nil {
		// A snapshot's clone has no cold boot to fall back on: its
		// application is in the snapshot.
		dropSpare(spare)
		spare = nil
		return l, cloneApp(ctx, p, o, console, &l)
	}
	if p.tmpl != nil {
		if t := findTemplate(ctx, p, o, &l); t != nil {
			if m := useSpare(ctx, p, o, spare, t, console, &l); m != nil {
				spare = nil
				return l, nil
			}
			if cloneTemplate(ctx, p, o, t, console, &l) {
				return l, nil
			}
		}
		l.cold = ColdTemplateFailed
	}
	// An unused spare goes before the cold boot: two VMs need not
	// exist at once.
	dropSpare(spare)
	spare = nil
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: cold boot (%s)\n", l.cold)
	}
	m, err := vm.Start(ctx, p.cfg, console)
	if err != nil {
		return l, fail(ExitArrowFailed, err)
	}
	l.m = m
	return l, nil
}

// warn says, on one line, that a template could not serve the run.
func warn(o *Options, format string, args ...any) {
	fmt.Fprintf(o.Log, "arrow: warning: "+format+"; booting cold\n", args...)
}

// findTemplate returns the run's template, building it first if there is
// none; nil when the run must boot cold, having said why on o.Log if
// something was wrong.
func findTemplate(ctx context.Context, p *plan, o *Options, l *launched) *template.Template {
	t0 := time.Now()
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
		l.built = true
	}
	l.phases = append(l.phases, Phase{"template", time.Since(t0)})
	return t
}

// cloneTemplate starts the run's VM as a clone of t; false when it must
// boot cold, having said why on o.Log.
func cloneTemplate(ctx context.Context, p *plan, o *Options, t *template.Template, console io.Writer, l *launched) bool {
	t0 := time.Now()
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
		return false
	}
	l.m, l.tmplKey, l.tmpl, l.cold = cl.Machine, t.Key, t, mayClone
	l.phases = append(l.phases, Phase{"clone", time.Since(t0)})
	if o.Debug {
		how := "cloned"
		if l.built {
			how = "built and cloned"
		}
		fmt.Fprintf(o.Log, "arrow: %s template %s (QEMU start %v, restore %v, resume %v)\n", how, t.Key,
			cl.Start.Round(time.Microsecond), cl.Restore.Round(time.Microsecond), cl.Resume.Round(time.Microsecond))
	}
	return true
}

// useSpare readies sp, when it is a clone of t, and returns its machine;
// nil when the run must start a clone of its own.
func useSpare(ctx context.Context, p *plan, o *Options, sp *template.Spare, t *template.Template, console io.Writer, l *launched) *vm.Machine {
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
	l.m, l.tmplKey, l.tmpl, l.cold, l.spare = sp.Machine, t.Key, t, mayClone, true
	if sp.Guest != nil {
		l.agent = sp.Guest
	}
	l.phases = append(l.phases, Phase{"spare", time.Since(t0)})
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: took a spare of template %s (warmed in %v: %v)\n", t.Key, sp.Warm.Round(time.Microsecond), sp.Warmed.Steps)
	}
	return sp.Machine
}
