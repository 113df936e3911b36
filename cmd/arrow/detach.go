package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/spec"
)

// detachFlags are `arrow run`'s flags for detached arrows.
type detachFlags struct {
	detach  bool
	name    string
	restart string
	labels  []string
	ready   int
	aliases []string
}

func (d *detachFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVarP(&d.detach, "detach", "d", false, "run in the background under arrowd and print the arrow's ID")
	f.StringVar(&d.name, "name", "", "name the arrow (with -d)")
	f.StringVar(&d.restart, "restart", "no", "restart policy (with -d): no, on-failure[:N], always, unless-stopped")
	f.StringArrayVarP(&d.labels, "label", "l", nil, "set a label KEY=value (with -d; repeatable)")
	f.StringArrayVar(&d.aliases, "network-alias", nil, "another name of the arrow on its bridge network's DNS (with -d; repeatable; arrows may share one)")
	f.IntVar(&d.ready, "ready-port", 0, "with -d: return once the app accepts TCP connections on this guest port (published with -p in user mode)")
}

// apply puts the detached-only flags into c: the restart policy, labels
// (over a spec file's) and the ready port.
func (d *detachFlags) apply(cmd *cobra.Command, c *api.Config) error {
	if cmd.Flags().Changed("restart") {
		pol, err := spec.ParseRestart(d.restart)
		if err != nil {
			return fmt.Errorf("--restart: %w", err)
		}
		c.Restart = pol
	}
	for _, l := range d.labels {
		k, v, _ := strings.Cut(l, "=")
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[k] = v
	}
	c.ReadyPort = d.ready
	c.NetworkAliases = append(c.NetworkAliases, d.aliases...)
	return nil
}

// check refuses detached-only flags without -d.
func (d *detachFlags) check(cmd *cobra.Command) error {
	if d.detach {
		return nil
	}
	// (A spec file's name, restart and labels are fine without -d: they
	// only mean something to a detached arrow.)
	for _, f := range []string{"name", "restart", "label", "ready-port", "network-alias"} {
		if cmd.Flags().Changed(f) {
			return fmt.Errorf("--%s applies to detached arrows: add -d", f)
		}
	}
	return nil
}

// runDetached hands the run o to arrowd and prints the new arrow's ID.
func runDetached(cmd *cobra.Command, g *globals, o *run.Options, d *detachFlags) error {
	if o.TTY {
		return &run.Error{Code: run.ExitArrowFailed, Err: errors.New("-t with -d: a detached arrow has no terminal (use -i, then arrow attach)")}
	}
	req, err := detachedRequest(o, d.name)
	if err != nil {
		var re *run.Error
		if errors.As(err, &re) {
			return err
		}
		return &run.Error{Code: run.ExitArrowFailed, Err: err}
	}
	c, err := g.connect(cmd.Context())
	if err != nil {
		return &run.Error{Code: run.ExitArrowFailed, Err: err}
	}
	a, err := c.Create(cmd.Context(), req)
	if err != nil {
		return &run.Error{Code: run.ExitArrowFailed, Err: err}
	}
	// The ID is printed whatever came of the start, as docker does: the
	// arrow exists, and its logs and inspect say more.
	fmt.Println(a.ID)
	return detachedExit(a, func() []string { return logTail(cmd.Context(), c, a.ID, readyLogLines) })
}

// detachedRequest turns a run's config into a request: paths made
// absolute and programs looked up here, since the daemon has neither this
// working directory nor this PATH.
func detachedRequest(o *run.Options, name string) (*api.CreateRequest, error) {
	c := o.Config
	abs := func(p *string) error {
		if *p == "" {
			return nil
		}
		a, err := filepath.Abs(*p)
		*p = a
		return err
	}
	if err := abs(&c.RootFS); err != nil {
		return nil, err
	}
	if err := abs(&c.Kernel); err != nil {
		return nil, err
	}
	if c.Image == "" && c.RootFS == "" && c.Service == "" && c.Snapshot == "" {
		p, err := exec.LookPath(c.Program)
		if err != nil {
			return nil, &run.Error{Code: run.ExitNotFound, Err: fmt.Errorf("%s: %w", c.Program, err)}
		}
		if c.Program, err = filepath.Abs(p); err != nil {
			return nil, err
		}
		if c.Dir == "" {
			if c.Dir, err = os.Getwd(); err != nil {
				return nil, err
			}
		}
	}
	if c.Image != "" {
		c.Program = ""
	}
	c.Includes = slices.Clone(c.Includes)
	for i := range c.Includes {
		if err := abs(&c.Includes[i]); err != nil {
			return nil, err
		}
	}
	c.Volumes = slices.Clone(c.Volumes)
	for i := range c.Volumes {
		if c.Volumes[i].Named() {
			continue // a volume's name, not a path
		}
		if err := abs(&c.Volumes[i].Source); err != nil {
			return nil, err
		}
	}
	c.Env = nil
	for _, e := range o.Env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e) // -e KEY passes this shell's value
			if !ok {
				continue
			}
			e += "=" + v
		}
		c.Env = append(c.Env, e)
	}
	req := &api.CreateRequest{Name: name, Config: c}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}
