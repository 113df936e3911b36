package e2e

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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

// TestDistributionKernelImage runs an image with a volume under Debian's
// cloud kernel: the run needs virtio_blk, erofs and overlay for the root
// disk and virtiofs (or 9p) for the volume, all modules there.
func TestDistributionKernelImage(t *testing.T) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(kernels) == 0 {
		t.Fatal("no Debian cloud kernel in /boot: setup.sh installs linux-image-cloud-amd64")
	}
	k := kernels[len(kernels)-1]
	root := t.TempDir()
	dir := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}}, busyboxLayer(t))
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "bbox", dir); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := arrow(t, "", "--root", root, "run", "--kernel", k, "-v", data+":/data", "bbox",
		"/bin/sh", "-c", "cat /data/in; cat /etc/os-release; echo written > /data/out; echo overlay > /etc/new && cat /etc/new; sync")
	if r.code != 0 || r.stdout != "from the host\nNAME=arrow-test\noverlay\n" {
		t.Fatalf("with %s: exit %d, stdout %q, stderr %s", k, r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(data, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("volume file: %q, %v", b, err)
	}
	// Read-only: no overlay module needed, writes refused.
	r = arrow(t, "", "--root", root, "run", "--kernel", k, "--read-only", "bbox", "/bin/sh", "-c", "touch /etc/x 2>/dev/null || echo refused")
	if r.code != 0 || r.stdout != "refused\n" {
		t.Fatalf("read-only: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
}
