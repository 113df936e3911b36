//go:build linux

package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Where the guest kernel lists virtio devices and its block driver.
const (
	virtioDevices   = "/sys/bus/virtio/devices"
	virtioBlkDriver = "/sys/bus/virtio/drivers/virtio_blk"
	virtioIDBlock   = "0x0002"
)

// prepareTemplate detaches the block driver from every virtio disk when
// the guest boots to become a template.
//
// A clone's disks are not the template's: the clone's QEMU points the same
// device at another image (the application's root file system). A disk the
// guest driver had probed would keep the template's capacity and page
// cache, and QEMU cannot announce a new size for a read-only image
// (block_resize needs write access). A disk no driver holds is probed
// afresh when the clone attaches it (attachDisks): capacity, serial and
// cache all come from the clone's image. A template that could not
// release a disk must not be saved: its boot fails.
func (a *agent) prepareTemplate() error {
	if !a.template {
		return nil
	}
	t0 := time.Now()
	n, err := releaseDisks()
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	a.debugf("template: released %d disks in %v", n, time.Since(t0))
	return nil
}

// attachDisks binds the block driver to virtio disks that have none: the
// disks of a clone of a template. A cold boot's disks were all probed
// when the kernel started: it has nothing to do.
func (a *agent) attachDisks() error {
	if !a.template {
		return nil
	}
	t0 := time.Now()
	n, err := bindDisks("bind")
	if err != nil {
		return fmt.Errorf("attach disks: %w", err)
	}
	if n > 0 {
		a.debugf("attached %d disks in %v", n, time.Since(t0))
	}
	return nil
}

// releaseDisks unbinds the block driver from every virtio disk that has it.
func releaseDisks() (int, error) { return bindDisks("unbind") }

// bindDisks writes each virtio block device to virtio_blk's op file
// ("bind" or "unbind"): those without a driver to bind, those with one to
// unbind. It returns how many it wrote.
func bindDisks(op string) (int, error) {
	bound := op == "unbind" // the state a device must be in for op
	ents, err := os.ReadDir(virtioDevices)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		dir := filepath.Join(virtioDevices, e.Name())
		id, err := os.ReadFile(filepath.Join(dir, "device"))
		if err != nil || strings.TrimSpace(string(id)) != virtioIDBlock {
			continue
		}
		_, err = os.Lstat(filepath.Join(dir, "driver"))
		if (err == nil) != bound {
			continue
		}
		if err := os.WriteFile(filepath.Join(virtioBlkDriver, op), []byte(e.Name()), 0); err != nil {
			return n, fmt.Errorf("%s %s: %w", op, e.Name(), err)
		}
		n++
	}
	return n, nil
}
