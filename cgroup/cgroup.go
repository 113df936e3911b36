// Package cgroup confines an arrow's QEMU process in a control group with
// CPU, memory and process-count limits, and reads back its usage and OOM
// kills.
//
// Both cgroup versions are supported. Under the unified hierarchy (v2) a
// group is the single directory <mount>/<parent>/<name>; the parent holds
// no processes, which keeps the "no internal processes" rule, and the
// controllers are enabled in every cgroup.subtree_control down to it.
// Under the legacy hierarchies (v1) a group is one directory per
// controller, <mount of controller>/<parent>/<name>, for the memory, cpu,
// cpuacct and pids controllers that are mounted. A machine that mounts
// both (a "hybrid" systemd layout) is treated as v2 only when the v2
// hierarchy has the memory controller.
//
// The package keeps no state outside the file system: a [Manager] is a
// description of where the hierarchies are, and a daemon that restarts
// finds its groups again with [Manager.Open].
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/arrowsys/arrow/internal/mountinfo"
)

// v1Controllers are the legacy hierarchies a group has a directory in. The
// memory controller is required; the others are used when mounted.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids"}

// v2Controllers are the controllers enabled for groups under v2. The
// memory controller is required; the others are used when available.
var v2Controllers = []string{"memory", "cpu", "pids"}

// Manager creates and opens the groups under one parent group.
type Manager struct {
	version int
	parent  string // slash-separated, relative to each mount
	// unified is the v2 mount point; empty under v1.
	unified string
	// mounts maps each v1 controller to its mount point; nil under v2.
	mounts map[string]string

	// mkdir and rmdir create and remove a group directory; tests replace
	// them to imitate the kernel, which populates a new directory with
	// interface files.
	mkdir func(path string) error
	rmdir func(path string) error
}

// New returns a Manager for the groups under parent (a relative path such
// as "arrow"), finding the cgroup hierarchies in /proc/self/mountinfo. The
// error wraps [errors.ErrUnsupported] when no hierarchy has a usable memory
// controller. New creates nothing; [Manager.Create] does.
func New(parent string) (*Manager, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	return newFromMountinfo(f, parent)
}

// newFromMountinfo is New reading the mount table from r.
func newFromMountinfo(r io.Reader, parent string) (*Manager, error) {
	if err := validParent(parent); err != nil {
		return nil, err
	}
	mounts, err := parseMountinfo(r)
	if err != nil {
		return nil, fmt.Errorf("cgroup: read mountinfo: %w", err)
	}
	m := &Manager{
		parent: parent,
		mkdir:  func(p string) error { return os.Mkdir(p, 0o755) },
		rmdir:  func(p string) error { return os.Remove(p) },
	}
	// A v2 hierarchy counts only if the memory controller is bound to it:
	// a hybrid layout mounts an empty one next to the v1 hierarchies.
	for _, mt := range mounts {
		if mt.fstype != "cgroup2" {
			continue
		}
		ctrls, err := readControllers(filepath.Join(mt.point, "cgroup.controllers"))
		if err == nil && slices.Contains(ctrls, "memory") {
			m.version, m.unified = 2, mt.point
			return m, nil
		}
	}
	m.mounts = map[string]string{}
	for _, mt := range mounts {
		if mt.fstype != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(mt.options, ",") {
			if slices.Contains(v1Controllers, opt) && m.mounts[opt] == "" {
				m.mounts[opt] = mt.point
			}
		}
	}
	if m.mounts["memory"] == "" {
		return nil, fmt.Errorf("cgroup: no hierarchy has the memory controller: %w", errors.ErrUnsupported)
	}
	m.version = 1
	return m, nil
}

// Version returns the cgroup version in use, 1 or 2.
func (m *Manager) Version() int { return m.version }

// Create creates the group name, or finds it if it exists, and sets its
// limits to l (so that creating an existing group resets its limits). Any
// missing parent directories are created too.
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	g := m.newGroup(name)
	if m.version == 2 {
		if err := m.prepareV2Parent(); err != nil {
			return nil, err
		}
		dir := filepath.Join(m.unified, m.parent, name)
		if err := m.ensureDir(dir); err != nil {
			return nil, err
		}
		g.version, g.path = 2, dir
	} else {
		for _, c := range v1Controllers {
			root := m.mounts[c]
			if root == "" {
				continue
			}
			if err := m.ensureDirs(root, m.parent); err != nil {
				return nil, err
			}
			dir := filepath.Join(root, m.parent, name)
			if err := m.ensureDir(dir); err != nil {
				return nil, err
			}
			g.dirs[c] = dir
		}
		g.version, g.path = 1, g.dirs["memory"]
	}
	if err := g.SetLimits(l); err != nil {
		return nil, err
	}
	return g, nil
}

// Open returns the existing group name, for a daemon that restarted while
// arrows ran. The error wraps [fs.ErrNotExist] if there is no such group.
func (m *Manager) Open(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	g := m.newGroup(name)
	if m.version == 2 {
		g.version, g.path = 2, filepath.Join(m.unified, m.parent, name)
		if err := isDir(g.path); err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", name, err)
		}
		return g, nil
	}
	for _, c := range v1Controllers {
		root := m.mounts[c]
		if root == "" {
			continue
		}
		dir := filepath.Join(root, m.parent, name)
		err := isDir(dir)
		if c == "memory" && err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", name, err)
		}
		if err == nil {
			g.dirs[c] = dir
		}
	}
	g.version, g.path = 1, g.dirs["memory"]
	return g, nil
}

// newGroup returns a Group with no directories yet.
func (m *Manager) newGroup(name string) *Group {
	return &Group{name: name, dirs: map[string]string{}, rmdir: m.rmdir}
}

// prepareV2Parent creates the parent group and enables the controllers in
// the subtree_control of the root and of every group down to the parent.
func (m *Manager) prepareV2Parent() error {
	dir := m.unified
	if err := m.enableControllers(dir); err != nil {
		return err
	}
	for _, elem := range strings.Split(m.parent, "/") {
		dir = filepath.Join(dir, elem)
		if err := m.ensureDir(dir); err != nil {
			return err
		}
		if err := m.enableControllers(dir); err != nil {
			return err
		}
	}
	return nil
}

// enableControllers enables, for the children of the v2 group dir, those
// of v2Controllers that dir has and has not enabled yet. The memory
// controller must be among them.
func (m *Manager) enableControllers(dir string) error {
	have, err := readControllers(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	if !slices.Contains(have, "memory") {
		return fmt.Errorf("cgroup: %s has no memory controller: %w", dir, errors.ErrUnsupported)
	}
	on, err := readControllers(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	var add []string
	for _, c := range v2Controllers {
		if slices.Contains(have, c) && !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(add, " "))
}

// ensureDirs creates each directory of the relative path rel under root.
func (m *Manager) ensureDirs(root, rel string) error {
	dir := root
	for _, elem := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, elem)
		if err := m.ensureDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// ensureDir creates the group directory dir unless it exists.
func (m *Manager) ensureDir(dir string) error {
	err := m.mkdir(dir)
	if errors.Is(err, fs.ErrExist) {
		err = isDir(dir)
	}
	if err != nil {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return nil
}

// isDir returns nil if path is a directory, an error wrapping
// fs.ErrNotExist if nothing is there.
func isDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}

// validName checks that name can be a group: one path element.
func validName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("cgroup: invalid name %q", name)
	case len(name) > 255:
		return fmt.Errorf("cgroup: name %.20q... longer than 255 bytes", name)
	case strings.ContainsAny(name, "/\x00\n"):
		return fmt.Errorf("cgroup: invalid name %q: contains '/', newline or NUL", name)
	}
	return nil
}

// validParent checks that parent is a relative path of valid names.
func validParent(parent string) error {
	for _, elem := range strings.Split(parent, "/") {
		if err := validName(elem); err != nil {
			return fmt.Errorf("cgroup: invalid parent %q: %w", parent, err)
		}
	}
	return nil
}

// readControllers returns the space-separated controller names in a
// cgroup.controllers or cgroup.subtree_control file, without any '+'.
func readControllers(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range strings.Fields(string(b)) {
		out = append(out, strings.TrimPrefix(f, "+"))
	}
	return out, nil
}

// mount is a cgroup file system in the mount table.
type mount struct {
	point   string // mount point
	fstype  string // "cgroup" or "cgroup2"
	options string // super options; for v1 they name the controllers
}

// parseMountinfo returns the cgroup mounts in a /proc/<pid>/mountinfo
// table, in order.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source super
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 {
			continue
		}
		fstype := f[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		out = append(out, mount{point: mountinfo.Unescape(f[4]), fstype: fstype, options: f[sep+3]})
	}
	return out, sc.Err()
}
