//go:build linux

package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TemplateFlag on the kernel command line says the guest is booted to
// become a VM template (package template): it is snapshotted while it
// waits for its application, and its clones run with other disks.
const TemplateFlag = "arrow.template"

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
// cache all come from the clone's image.
func (a *agent) prepareTemplate() {
	if !hasCmdlineFlag(TemplateFlag) {
		return
	}
	t0 := time.Now()
	n, err := bindDisks("unbind", true)
	if err != nil {
		a.log.Printf("template: %v", err)
	}
	a.debugf("template: released %d disks in %v", n, time.Since(t0))
}

// attachDisks binds the block driver to virtio disks that have none: the
// disks of a clone of a template. In a cold boot every disk is bound
// already and this only reads sysfs.
func (a *agent) attachDisks() error {
	t0 := time.Now()
	n, err := bindDisks("bind", false)
	if err != nil {
		return fmt.Errorf("attach disks: %w", err)
	}
	if n > 0 {
		a.debugf("attached %d disks in %v", n, time.Since(t0))
	}
	return nil
}

// bindDisks writes every virtio block device whose driver state is bound
// to virtio_blk's bind or unbind file, and returns how many it wrote.
func bindDisks(op string, bound bool) (int, error) {
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
