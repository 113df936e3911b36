//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// modulesParam is the kernel command line parameter through which the host
// names the modules to load, in order: arrow.modules=virtio,virtio_ring,...
// The module files are in the initramfs in guest.ModulesDir.
const modulesParam = "arrow.modules="

// portWait bounds how long arrow-init waits for the control port to appear
// once modules are loaded: the port is announced asynchronously over the
// virtio-serial control queue.
const portWait = 5 * time.Second

// loadModules loads the modules the host asked for, for guest kernels that
// build Arrow's drivers as modules. It reports whether it loaded any.
func loadModules(cmdline string) (bool, error) {
	var names []string
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, modulesParam); ok {
			names = strings.Split(v, ",")
		}
	}
	if len(names) == 0 {
		return false, nil
	}
	dir := guest.ModulesDir
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
			files[strings.ReplaceAll(name, "-", "_")] = p
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("kernel modules: %w", err)
	}
	for _, name := range names {
		p, ok := files[name]
		if !ok {
			return false, fmt.Errorf("kernel module %s: not in %s", name, dir)
		}
		f, err := os.Open(p)
		if err != nil {
			return false, fmt.Errorf("kernel module %s: %w", name, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("load kernel module %s: %w", name, err)
		}
	}
	return true, nil
}

// waitPort opens the port named name, waiting up to portWait for it to
// appear.
func waitPort(name string, wait bool) (*os.File, error) {
	deadline := time.Now().Add(portWait)
	for {
		f, err := openPort(name)
		if err == nil || !wait || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
