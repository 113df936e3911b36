package e2e

import (
	"path/filepath"
	"testing"
)

// TestDistributionKernel boots Debian's stock cloud kernel (installed by
// setup.sh), which has no command-line virtio-mmio devices and builds the
// virtio drivers as modules: Arrow must describe the devices through ACPI
// and load the modules in the guest.
func TestDistributionKernel(t *testing.T) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(kernels) == 0 {
		t.Fatal("no Debian cloud kernel in /boot: setup.sh installs linux-image-cloud-amd64")
	}
	k := kernels[len(kernels)-1]
	r := arrow(t, "pear\napple\n", "run", "--kernel", k, "-i", "/usr/bin/sort")
	if r.code != 0 || r.stdout != "apple\npear\n" {
		t.Fatalf("with %s: exit %d, stdout %q, stderr %s", k, r.code, r.stdout, r.stderr)
	}
	r = arrow(t, "", "run", "--kernel", k, "/bin/sh", "-c", "exit 7")
	if r.code != 7 {
		t.Fatalf("exit status %d, want 7; stderr %s", r.code, r.stderr)
	}
}
