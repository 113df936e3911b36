package containerdshim

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/cgroup"
	"github.com/arrowsys/arrow/run"
)

// CgroupParent is the cgroup under which a task whose spec names no
// cgroup (or only a top-level one) gets a group of its own.
const CgroupParent = "arrow-containerd"

// cgroupLocation is where a task's VM gets its cgroup: the spec's
// linux.cgroupsPath, as runc reads it, so that what manages the
// containers' cgroups sees the VMs there. Under kubelet that is the
// pod's cgroup (kubepods/…/pod<UID>/<ID>), whose limits and accounting
// then cover the pod's VMs; ctr names /<namespace>/<ID>. Both of runc's
// forms are read: a path ("/a/b/ID"), and systemd's "SLICE:PREFIX:NAME"
// (kubelet's systemd driver), which is the scope PREFIX-NAME.scope in
// the slice's directory. Without one, it is CgroupParent/NAMESPACE-ID.
//
// The path comes from the spec: a relative element such as ".." is
// refused (cgroup.New checks every element), so a task cannot put its VM
// outside the hierarchy.
func cgroupLocation(spec *specs.Spec, namespace, id string) (parent, name string, err error) {
	cp := ""
	if spec != nil && spec.Linux != nil {
		cp = spec.Linux.CgroupsPath
	}
	if cp == "" {
		return CgroupParent, namespace + "-" + id, nil
	}
	if len(cp) > 4096 {
		return "", "", fmt.Errorf("spec: linux.cgroupsPath of %d bytes", len(cp))
	}
	if !strings.HasPrefix(cp, "/") && strings.Count(cp, ":") == 2 {
		f := strings.SplitN(cp, ":", 3)
		dir, err := expandSlice(f[0])
		if err != nil {
			return "", "", fmt.Errorf("spec: linux.cgroupsPath %.200q: %w", cp, err)
		}
		name = f[2]
		if f[1] != "" {
			name = f[1] + "-" + f[2]
		}
		if !strings.HasSuffix(name, ".slice") {
			name += ".scope"
		}
		parent = dir
	} else {
		parent, name = path.Split(strings.TrimPrefix(cp, "/"))
		parent = strings.TrimSuffix(parent, "/")
	}
	for _, elem := range strings.Split(parent+"/"+name, "/") {
		if elem == "." || elem == ".." {
			return "", "", fmt.Errorf("spec: linux.cgroupsPath %.200q: %q is not allowed", cp, elem)
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("spec: linux.cgroupsPath %.200q: no group name", cp)
	}
	if parent == "" {
		parent = CgroupParent
	}
	return parent, name, nil
}

// expandSlice is a systemd slice's directory, relative to the cgroup
// root: each dash opens a level, "a-b-c.slice" is
// "a.slice/a-b.slice/a-b-c.slice", and "" or "-.slice" is the root
// slice, which holds no group of ours.
func expandSlice(slice string) (string, error) {
	if slice == "" || slice == "-.slice" {
		return "", errors.New("the root slice")
	}
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" || strings.Contains(base, "/") || strings.HasPrefix(base, "-") ||
		strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", fmt.Errorf("slice %.100q: want NAME.slice, with single dashes inside", slice)
	}
	var dirs []string
	for i := range base {
		if base[i] == '-' {
			dirs = append(dirs, base[:i]+".slice")
		}
	}
	return strings.Join(append(dirs, slice), "/"), nil
}

// makeCgroup makes the task's cgroup with its VM's limits: memory plus
// the VM's overhead, its CPUs, a pids limit, no swap. Fail closed: a
// task whose limits cannot be set is not created.
func (s *service) makeCgroup(c *container, spec *specs.Spec, cfg *api.Config) error {
	parent, name, err := cgroupLocation(spec, s.f.namespace, c.id)
	if err != nil {
		return err
	}
	m, err := cgroup.New(parent)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	mem := cfg.MemoryMiB
	if mem == 0 {
		mem = run.DefaultMemoryMiB
	}
	cpus := cfg.CPUs
	if cpus == 0 {
		cpus = run.DefaultCPUs
	}
	if err := removeCgroup(s.ctx, parent, name); err != nil {
		return fmt.Errorf("cgroup: a dead shim's group for the same task: %w", err)
	}
	l := cgroup.Limits{MemoryBytes: int64(mem+run.DefaultVMOverheadMiB) << 20,
		CPUs: float64(cpus), Pids: run.VMPids, NoSwap: true}
	g, err := m.Create(name, l)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	c.group, c.limits, c.memoryMiB = g, l, mem
	return nil
}

// removeCgroup removes a task's group if it exists, killing what is left
// in it (a VM whose shim died).
func removeCgroup(ctx context.Context, parent, name string) error {
	m, err := cgroup.New(parent)
	if err != nil {
		return err
	}
	g, err := m.Open(name)
	if err != nil {
		return nil // none
	}
	return removeGroup(ctx, g)
}

// removeGroup removes g, killing what is left in it first.
func removeGroup(ctx context.Context, g *cgroup.Group) error {
	err := g.Remove()
	if errors.Is(err, syscall.EBUSY) {
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err = g.Kill(kctx); err == nil {
			err = g.Remove()
		}
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", g.Path(), err)
	}
	return nil
}
