package kernel

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// GuestModules returns the drivers a guest kernel needs for Arrow's
// devices, by module name: the virtio-mmio transport, the virtio-serial
// port that carries the host↔guest protocol, and the virtio RNG. Arrow's
// own kernel has them built in; a distribution kernel (Debian's cloud
// kernel, say) builds them as modules.
func GuestModules() []string {
	return []string{"virtio_mmio", "virtio_console", "virtio_rng"}
}

// Features are what a run asks of the guest kernel besides Arrow's
// control devices: the drivers it needs for them depend on it.
type Features struct {
	// RootFS is the file system of a root disk on virtio-blk ("erofs",
	// "squashfs" or "ext4"); empty when the application runs from the
	// initramfs.
	RootFS string
	// Overlay says that a writable overlay goes over the root disk.
	Overlay bool
	// Shares are the transports of the run's volumes: "virtiofs" or
	// "9p" (see vm.ShareFS).
	Shares []string
	// Network says that the guest has a network card (virtio-net).
	Network bool
}

// RunModules returns the modules, by name, a guest kernel needs for a run
// with f: [GuestModules]; for a root disk virtio_blk, its file system and,
// with an overlay, overlay; for volumes virtiofs, or 9p and 9pnet_virtio;
// for a network card virtio_net.
// Each comes once, in that order; [ResolveModules] adds what they depend
// on and leaves out what the kernel has built in.
func RunModules(f Features) []string {
	names := GuestModules()
	add := func(more ...string) {
		for _, m := range more {
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	if f.RootFS != "" {
		add("virtio_blk", f.RootFS)
		if f.Overlay {
			add("overlay")
		}
	}
	for _, fs := range f.Shares {
		switch fs {
		case "virtiofs":
			add("virtiofs")
		case "9p":
			add("9p", "9pnet_virtio")
		}
	}
	if f.Network {
		add("virtio_net")
	}
	return names
}

// ModulesDir is where a kernel release's modules live on the host.
func ModulesDir(release string) string {
	return filepath.Join("/lib/modules", release)
}

// Module is a loadable kernel module file.
type Module struct {
	// Name is the module's name, with '_' for '-'.
	Name string
	// Path is the file, relative to the modules directory.
	Path string
}

// ErrNoModule is returned by [ResolveModules] for a module that is neither
// built into the kernel nor found among its modules.
var ErrNoModule = errors.New("kernel module not found")

// ResolveModules returns the modules of modDir (a /lib/modules/<release>)
// that provide names, each after the modules it depends on, the order in
// which they must be loaded. Modules built into the kernel (listed in
// modules.builtin) are left out. Dependencies are read from each module's
// own .modinfo section, so depmod's output is not needed.
func ResolveModules(modDir string, names []string) ([]Module, error) {
	files, err := moduleFiles(modDir)
	if err != nil {
		return nil, err
	}
	builtin := readModuleList(filepath.Join(modDir, "modules.builtin"))
	var (
		order []Module
		state = map[string]int{} // 1: visiting, 2: done
	)
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		name = normalizeModule(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("kernel modules: dependency cycle through %s", name)
		case 2:
			return nil
		}
		if builtin[name] {
			state[name] = 2
			return nil
		}
		rel, ok := files[name]
		if !ok {
			what := name
			if neededBy != "" {
				what += " (needed by " + neededBy + ")"
			}
			return fmt.Errorf("%w: %s in %s", ErrNoModule, what, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: rel})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleFiles maps module names to their paths relative to modDir, from
// modules.order when present, else by walking the tree.
func moduleFiles(modDir string) (map[string]string, error) {
	files := map[string]string{}
	if _, err := os.Stat(modDir); err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	add := func(rel string) {
		base := filepath.Base(rel)
		if name, ok := strings.CutSuffix(base, ".ko"); ok {
			files[normalizeModule(name)] = rel
		}
	}
	for rel := range readModuleList(filepath.Join(modDir, "modules.order")) {
		add(rel)
	}
	if len(files) > 0 {
		return files, nil
	}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(modDir, p)
			add(rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	return files, nil
}

// readModuleList reads a file of module paths, one per line, as a set of
// the paths and of the module names they stand for.
func readModuleList(path string) map[string]bool {
	set := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return set
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		set[line] = true
		if name, ok := strings.CutSuffix(filepath.Base(line), ".ko"); ok {
			set[normalizeModule(name)] = true
		}
	}
	return set
}

// moduleDepends reads the "depends=" entry of a module's .modinfo.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: %w (compressed modules are not supported)", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, d)
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

func normalizeModule(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}
