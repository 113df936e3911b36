package kernel

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeModule compiles an object file whose .modinfo says depends=deps, as
// a real module's does.
func fakeModule(t *testing.T, dir, rel, deps string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "m.c")
	code := `__attribute__((section(".modinfo"), used)) static const char info[] = "license=GPL\0depends=` + deps + `\0vermagic=6.1";` + "\n"
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("cc", "-c", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	fakeModule(t, dir, "kernel/drivers/virtio/virtio.ko", "")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio_ring.ko", "")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring")
	fakeModule(t, dir, "kernel/drivers/char/virtio_console.ko", "virtio,virtio_ring")
	fakeModule(t, dir, "kernel/drivers/char/hw_random/virtio-rng.ko", "virtio_ring,virtio,rng_core")
	fakeModule(t, dir, "kernel/drivers/char/loop_a.ko", "loop_b")
	fakeModule(t, dir, "kernel/drivers/char/loop_b.ko", "loop_a")
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/char/hw_random/rng-core.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := ResolveModules(dir, GuestModules())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, m.Name)
	}
	// Dependencies first, each once; rng_core is built in.
	if want := "virtio virtio_ring virtio_mmio virtio_console virtio_rng"; strings.Join(names, " ") != want {
		t.Fatalf("load order %q, want %q", names, want)
	}
	if got[4].Path != "kernel/drivers/char/hw_random/virtio-rng.ko" {
		t.Errorf("virtio_rng at %s", got[4].Path)
	}

	if _, err := ResolveModules(dir, []string{"virtio_net"}); !errors.Is(err, ErrNoModule) {
		t.Errorf("missing module: %v", err)
	}
	if _, err := ResolveModules(dir, []string{"loop_a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := ResolveModules(filepath.Join(dir, "nope"), GuestModules()); err == nil {
		t.Error("missing modules directory accepted")
	}
	// With modules.order, only the modules it lists are known.
	if err := os.WriteFile(filepath.Join(dir, "modules.order"), []byte("kernel/drivers/virtio/virtio.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveModules(dir, []string{"virtio_mmio"}); !errors.Is(err, ErrNoModule) {
		t.Errorf("modules.order ignored: %v", err)
	}
}

func TestRunModules(t *testing.T) {
	base := strings.Join(GuestModules(), " ")
	tests := []struct {
		name string
		f    Features
		want string
	}{
		{"initramfs", Features{}, base},
		{"read-only disk", Features{RootFS: "erofs"}, base + " virtio_blk erofs"},
		{"disk with overlay", Features{RootFS: "erofs", Overlay: true}, base + " virtio_blk erofs overlay"},
		{"virtiofs", Features{Shares: []string{"virtiofs", "virtiofs"}}, base + " virtiofs"},
		{"9p", Features{Shares: []string{"9p"}}, base + " 9p 9pnet_virtio"},
		{"everything", Features{RootFS: "ext4", Overlay: true, Shares: []string{"9p", "virtiofs"}},
			base + " virtio_blk ext4 overlay 9p 9pnet_virtio virtiofs"},
		{"unknown share", Features{Shares: []string{"nfs"}}, base},
	}
	for _, tt := range tests {
		if got := strings.Join(RunModules(tt.f), " "); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}

	// Resolved as a distribution kernel builds them: erofs needs
	// libcrc32c, virtiofs fuse; virtio and virtio_ring come once.
	dir := t.TempDir()
	fakeModule(t, dir, "kernel/drivers/virtio/virtio.ko", "")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio_ring.ko", "")
	fakeModule(t, dir, "kernel/drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring")
	fakeModule(t, dir, "kernel/drivers/char/virtio_console.ko", "virtio,virtio_ring")
	fakeModule(t, dir, "kernel/drivers/char/hw_random/virtio-rng.ko", "virtio_ring,virtio")
	fakeModule(t, dir, "kernel/drivers/block/virtio_blk.ko", "virtio,virtio_ring")
	fakeModule(t, dir, "kernel/lib/libcrc32c.ko", "")
	fakeModule(t, dir, "kernel/fs/erofs/erofs.ko", "libcrc32c")
	fakeModule(t, dir, "kernel/fs/overlayfs/overlay.ko", "")
	fakeModule(t, dir, "kernel/fs/fuse/fuse.ko", "")
	fakeModule(t, dir, "kernel/fs/fuse/virtiofs.ko", "fuse,virtio,virtio_ring")
	got, err := ResolveModules(dir, RunModules(Features{RootFS: "erofs", Overlay: true, Shares: []string{"virtiofs"}}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, m.Name)
	}
	want := "virtio virtio_ring virtio_mmio virtio_console virtio_rng virtio_blk libcrc32c erofs overlay fuse virtiofs"
	if strings.Join(names, " ") != want {
		t.Errorf("load order %q, want %q", names, want)
	}
	// 9p is not among them: a clear error, not a guest that cannot mount.
	if _, err := ResolveModules(dir, RunModules(Features{Shares: []string{"9p"}})); !errors.Is(err, ErrNoModule) || !strings.Contains(err.Error(), "9p") {
		t.Errorf("missing 9p: %v", err)
	}
}
