package kernel

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/syncbuf"
)

// fakeMakefile stands in for the kernel's build system: tinyconfig writes a
// base .config, olddefconfig runs $(OLDDEFCONFIG) and vmlinux "compiles"
// the prebuilt image. Recipes get extra shell from the arguments.
func fakeMakefile(olddefconfig, vmlinux string) string {
	return strings.Join([]string{
		"ifneq ($(ARCH),x86_64)",
		"$(error ARCH must be x86_64)",
		"endif",
		"tinyconfig:",
		"\tprintf 'CONFIG_64BIT=y\\n# CONFIG_SMP is not set\\n' > .config",
		"olddefconfig:",
		"\ttrue " + olddefconfig,
		"vmlinux:",
		"\t@echo '  CC      init/main.o'",
		"\t@echo '  CC      kernel/fork.o'",
		"\t@echo '  AS      arch/x86/entry.o'",
		"\t" + vmlinux,
		"\tcp prebuilt-vmlinux vmlinux",
		"\tmkdir -p include/config && echo 6.1.192-fake > include/config/kernel.release",
		"",
	}, "\n")
}

// fakeMerge mimics merge_config.sh -m: it appends the fragment to .config.
const fakeMerge = "#!/bin/sh\n[ \"$1\" = -m ] || exit 2\ncat \"$3\" >> \"$2\"\n"

// makeSourceTarball writes a gzip tarball laid out like a kernel source
// tarball (one top-level directory) and returns its path.
func makeSourceTarball(t *testing.T, makefile string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "linux-source-fake.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"linux-source-fake/Makefile", 0o644, []byte(makefile)},
		{"linux-source-fake/scripts/kconfig/merge_config.sh", 0o755, []byte(fakeMerge)},
		{"linux-source-fake/prebuilt-vmlinux", 0o644, fakeVmlinux()},
	}
	for _, file := range files {
		hdr := &tar.Header{Name: file.name, Mode: file.mode, Size: int64(len(file.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(file.data); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// needTools skips the test when the commands Build runs are missing.
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"make", "tar", "gzip", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

func testBuilder(root, src string, progress *syncbuf.Buffer) *Builder {
	return &Builder{
		Root:          root,
		Source:        src,
		Jobs:          2,
		Progress:      progress,
		SourceVersion: func(context.Context) (string, error) { return "9.9.9-test", nil },
		checkDeps:     func() error { return nil },
		tick:          20 * time.Millisecond,
	}
}

// leftovers lists temporary build directories left under root.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{".build-*", ".install-*"} {
		m, err := filepath.Glob(filepath.Join(KernelsDir(root), pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

func TestBuildFakeSource(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	src := makeSourceTarball(t, fakeMakefile("", "sleep 0.2"))
	var progress syncbuf.Buffer
	b := testBuilder(root, src, &progress)

	k, err := b.Build(context.Background())
	if err != nil {
		t.Fatalf("Build: %v\nprogress:\n%s", err, progress.String())
	}
	key := Key("9.9.9-test", Fragment())
	dir := filepath.Join(KernelsDir(root), key)
	if k.Path != filepath.Join(dir, imageName) || k.Key != key || k.Version != "9.9.9-test" || !k.Tailored ||
		!k.PVH || k.Release != "6.1.192-fake" || k.ConfigHash != FragmentHash(Fragment()) || k.Current {
		t.Errorf("Build = %+v", k)
	}
	for _, name := range []string{imageName, configName, metadataName, logName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("installed kernel lacks %s: %v", name, err)
		}
	}
	if cfg, err := os.ReadFile(k.Config); err != nil || Verify(Fragment(), cfg) != nil {
		t.Errorf("installed config does not satisfy the fragment: %v", err)
	}
	if log, err := os.ReadFile(filepath.Join(dir, logName)); err != nil || !strings.Contains(string(log), "init/main.o") {
		t.Errorf("build log lacks make output: %v", err)
	}
	if l := leftovers(t, root); len(l) != 0 {
		t.Errorf("temporary directories left behind: %v", l)
	}
	out := progress.String()
	for _, phase := range []string{"extracting", "configuring", "compiling vmlinux with 2 jobs", "compiled 3 files", "built "} {
		if !strings.Contains(out, phase) {
			t.Errorf("progress lacks %q:\n%s", phase, out)
		}
	}

	// Idempotent: with the source gone, the cached kernel comes back at once.
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k2, err := b.Build(context.Background())
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if k2.Path != k.Path || !k2.BuiltAt.Equal(k.BuiltAt) {
		t.Errorf("second Build = %+v, want %+v", k2, k)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("cached Build took %s", time.Since(start))
	}
	if !strings.Contains(progress.String(), "already built") {
		t.Errorf("cached Build did not say so:\n%s", progress.String())
	}

	// The cache is visible to list.
	ks, err := list([]string{KernelsDir(root)}, "9.9.9-test", Fragment())
	if err != nil || len(ks) != 1 || !ks[0].Current || ks[0].Path != k.Path {
		t.Errorf("list = %+v, %v", ks, err)
	}
}

func TestBuildConcurrentSameKey(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	src := makeSourceTarball(t, fakeMakefile("", "sleep 0.5"))
	var wg sync.WaitGroup
	results := make([]Kernel, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = testBuilder(root, src, &syncbuf.Buffer{}).Build(context.Background())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
	}
	if results[0].Path != results[1].Path || !results[0].BuiltAt.Equal(results[1].BuiltAt) {
		t.Errorf("concurrent builds disagree: %+v vs %+v", results[0], results[1])
	}
}

func TestBuildVerifyFailure(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	// Kconfig "drops" two options, as it does when dependencies are unmet.
	src := makeSourceTarball(t, fakeMakefile("&& sed -i -e '/^CONFIG_EROFS_FS=y/d' -e 's/^CONFIG_9P_FS=y/CONFIG_9P_FS=m/' .config", "true"))
	_, err := testBuilder(root, src, &syncbuf.Buffer{}).Build(context.Background())
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Build error = %v, want *VerifyError", err)
	}
	for _, want := range []string{"CONFIG_EROFS_FS (want y, got not set)", "CONFIG_9P_FS (want y, got m)", ".build.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(ve.Mismatches) != 2 {
		t.Errorf("mismatches = %+v", ve.Mismatches)
	}
	if l := leftovers(t, root); len(l) != 0 {
		t.Errorf("temporary directories left behind: %v", l)
	}
	if _, err := find([]string{KernelsDir(root)}, "9.9.9-test", nil, Fragment()); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("failed build left a kernel behind: %v", err)
	}
}

func TestBuildMakeFailure(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	src := makeSourceTarball(t, fakeMakefile("", "@echo 'error: compiler exploded' && false"))
	_, err := testBuilder(root, src, &syncbuf.Buffer{}).Build(context.Background())
	if err == nil || !strings.Contains(err.Error(), "make vmlinux") {
		t.Fatalf("Build error = %v, want make vmlinux failure", err)
	}
	logPath := filepath.Join(KernelsDir(root), Key("9.9.9-test", Fragment())+".build.log")
	if !strings.Contains(err.Error(), logPath) {
		t.Errorf("error %q does not reference the log %s", err, logPath)
	}
	if log, rerr := os.ReadFile(logPath); rerr != nil || !strings.Contains(string(log), "compiler exploded") {
		t.Errorf("log lacks make output: %v", rerr)
	}
	if l := leftovers(t, root); len(l) != 0 {
		t.Errorf("temporary directories left behind: %v", l)
	}
}

func TestBuildCancel(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	src := makeSourceTarball(t, fakeMakefile("", "echo $$$$ > "+pidFile+"; exec sleep 60"))
	var progress syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := testBuilder(root, src, &progress).Build(ctx)
		errc <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	var pid int
	for pid == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("build never reached make vmlinux; progress:\n%s", progress.String())
		}
		if raw, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(raw), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Build error = %v, want context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Build did not return after cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %s", d)
	}
	// The sleep that make started must be dead (gone or a zombie).
	time.Sleep(100 * time.Millisecond)
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		fields := strings.Fields(string(stat))
		if len(fields) > 2 && fields[2] != "Z" && strings.Contains(fields[1], "sleep") {
			t.Errorf("make's child %d still running: %s", pid, stat)
		}
	}
	if l := leftovers(t, root); len(l) != 0 {
		t.Errorf("temporary directories left behind: %v", l)
	}
}

func TestBuildMissingSource(t *testing.T) {
	root := t.TempDir()
	b := testBuilder(root, filepath.Join(root, "nope.tar.xz"), &syncbuf.Buffer{})
	_, err := b.Build(context.Background())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.tar.xz") {
		t.Fatalf("Build error = %v, want not-exist naming the tarball", err)
	}
	// Without a version function, a missing custom tarball fails the same way.
	b.SourceVersion = nil
	if _, err := b.Build(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Build error = %v, want not-exist", err)
	}
}

func TestBuildMissingDeps(t *testing.T) {
	root := t.TempDir()
	b := testBuilder(root, filepath.Join(root, "src.tar.xz"), &syncbuf.Buffer{})
	b.checkDeps = func() error {
		return errors.New("missing kernel build dependencies bison: install them with `apt-get install bison`")
	}
	_, err := b.Build(context.Background())
	if err == nil || !strings.Contains(err.Error(), "apt-get install bison") {
		t.Fatalf("Build error = %v", err)
	}
}

func TestBuildNoSpace(t *testing.T) {
	root := t.TempDir()
	src := writeFile(t, filepath.Join(root, "src.tar.gz"), []byte("x"))
	b := testBuilder(root, src, &syncbuf.Buffer{})
	b.minFree = 1 << 62
	_, err := b.Build(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not enough free space") {
		t.Fatalf("Build error = %v, want not enough free space", err)
	}
}

func TestBuildNoRoot(t *testing.T) {
	if _, err := (&Builder{}).Build(context.Background()); err == nil {
		t.Fatal("Build without Root succeeded")
	}
}

func TestFileVersion(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, filepath.Join(dir, "linux-6.6.8.tar.xz"), []byte("a"))
	b := writeFile(t, filepath.Join(dir, "other", "linux-6.6.8.tar.xz"), []byte("b"))
	va, err := FileVersion(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := FileVersion(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(va, "linux-6.6.8-") || va == vb {
		t.Errorf("FileVersion = %q, %q", va, vb)
	}
}
