package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
}

func (d *detachFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVarP(&d.detach, "detach", "d", false, "run in the background under arrowd and print the arrow's ID")
	f.StringVar(&d.name, "name", "", "name the arrow (with -d)")
	f.StringVar(&d.restart, "restart", "no", "restart policy (with -d): no, on-failure[:N], always, unless-stopped")
	f.StringArrayVarP(&d.labels, "label", "l", nil, "set a label KEY=value (with -d; repeatable)")
	f.IntVar(&d.ready, "ready-port", 0, "with -d: return once the app accepts TCP connections on this guest port (published with -p in user mode)")
}

// check refuses detached-only flags without -d.
func (d *detachFlags) check(cmd *cobra.Command) error {
	if d.detach {
		return nil
	}
	// (A spec file's name, restart and labels are fine without -d: they
	// only mean something to a detached arrow.)
	for _, f := range []string{"name", "restart", "label", "ready-port"} {
		if cmd.Flags().Changed(f) {
			return fmt.Errorf("--%s applies to detached arrows: add -d", f)
		}
	}
	return nil
}

// runDetached hands the run o to arrowd and prints the new arrow's ID.
func runDetached(cmd *cobra.Command, g *globals, o *run.Options, d *detachFlags) error {
	req, err := detachedRequest(o, d)
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
	fmt.Println(a.ID)
	return detachedExit(a)
}

// detachedRequest turns run options into a request: paths made absolute
// and programs looked up here, since the daemon has neither this working
// directory nor this PATH.
func detachedRequest(o *run.Options, d *detachFlags) (*api.CreateRequest, error) {
	if o.TTY {
		return nil, errors.New("-t with -d: a detached arrow has no terminal (use -i, then arrow attach)")
	}
	pol, err := spec.ParseRestart(d.restart)
	if err != nil {
		return nil, fmt.Errorf("--restart: %w", err)
	}
	req := &api.CreateRequest{Name: d.name, Restart: api.RestartPolicy{Name: pol.Name, MaxRetries: pol.MaxRetries}}
	for _, l := range d.labels {
		k, v, _ := strings.Cut(l, "=")
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	c := api.Config{
		Image: o.Image, Args: o.Args, Entrypoint: o.Entrypoint, User: o.User, Hostname: o.Hostname,
		ReadOnly: o.ReadOnly, Stdin: o.Stdin, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, KernelArgs: o.KernelArgs,
		Accel: o.Accel, BootTimeout: o.BootTimeout.Seconds(), StopTimeout: o.StopTimeout.Seconds(),
		HostAccess: o.HostAccess, HostAliases: o.HostAliases, NoJail: o.NoJail,
	}
	if c.RootFS, err = abs(o.RootFS); err != nil {
		return nil, err
	}
	if c.Kernel, err = abs(o.Kernel); err != nil {
		return nil, err
	}
	c.Dir = o.Dir
	if o.Image == "" {
		c.Program = o.Program
		if o.RootFS == "" {
			if c.Program, err = exec.LookPath(o.Program); err != nil {
				return nil, &run.Error{Code: run.ExitNotFound, Err: fmt.Errorf("%s: %w", o.Program, err)}
			}
			if c.Program, err = filepath.Abs(c.Program); err != nil {
				return nil, err
			}
			if c.Dir == "" {
				if c.Dir, err = os.Getwd(); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, p := range o.Includes {
		a, err := abs(p)
		if err != nil {
			return nil, err
		}
		c.Includes = append(c.Includes, a)
	}
	for _, v := range o.Volumes {
		src, err := abs(v.Source)
		if err != nil {
			return nil, err
		}
		c.Volumes = append(c.Volumes, api.Volume{Source: src, Target: v.Target, ReadOnly: v.ReadOnly})
	}
	c.Network = o.Network
	for _, p := range o.Ports {
		c.Ports = append(c.Ports, api.Port{HostIP: p.HostIP, HostPort: int(p.HostPort), GuestPort: int(p.GuestPort), Proto: p.Protocol})
	}
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
	c.ReadyPort, c.Cold = d.ready, o.Cold
	req.Config = c
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}
