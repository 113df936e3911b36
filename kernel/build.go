package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Builder builds Arrow's tailored guest kernel from a kernel source tarball
// and caches it under Root/kernels/<key>/, or installs it into
// System/<key>/ for every user of the machine.
type Builder struct {
	// Root is Arrow's data root; kernels are cached under Root/kernels/,
	// private to its owner. Builds run in a temporary directory there, and
	// their logs stay there.
	Root string
	// System is the system kernels directory (see [DefaultSystemDir]); ""
	// for none. A kernel already there is used rather than built again.
	System string
	// InstallSystem installs the kernel into System, world-readable,
	// rather than under Root: for root, so that every user boots it. A
	// kernel Root already holds is copied there without a build.
	InstallSystem bool
	// Source is the kernel source tarball; empty means DefaultSource.
	Source string
	// Jobs is the number of parallel make jobs; 0 means the number of CPUs.
	Jobs int
	// Progress receives short progress lines; nil discards them. The full
	// build output goes to a log file instead.
	Progress io.Writer
	// SourceVersion reports the version of Source. Nil means dpkg-query's
	// version of SourcePackage for DefaultSource, and FileVersion for any
	// other tarball.
	SourceVersion VersionFunc

	// checkDeps replaces the check for build tools (tests only).
	checkDeps func() error
	// tick is the interval of compile progress lines; 0 means 10s.
	tick time.Duration
	// minFree is the free space a build needs; 0 means defaultMinFree.
	minFree uint64
}

// defaultMinFree is the free space a kernel build needs under Root: the
// extracted 6.1 source and its objects take about 1.5 GB.
const defaultMinFree = 2 << 30

// checkSpace fails when the filesystem holding dir has less than need
// bytes available (defaultMinFree when need is 0).
func checkSpace(dir string, need uint64) error {
	if need == 0 {
		need = defaultMinFree
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check free space in %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < need {
		return fmt.Errorf("not enough free space in %s for a kernel build: %.1f GB free, %.1f GB needed",
			dir, float64(free)/1e9, float64(need)/1e9)
	}
	return nil
}

// buildDeps lists what the kernel build needs: the Debian package, the
// commands it provides and the headers it installs.
var buildDeps = []struct {
	pkg     string
	tools   []string
	headers []string
}{
	{pkg: "build-essential", tools: []string{"make", "gcc", "ld"}},
	{pkg: "bison", tools: []string{"bison"}},
	{pkg: "flex", tools: []string{"flex"}},
	{pkg: "bc", tools: []string{"bc"}},
	{pkg: "xz-utils", tools: []string{"xz"}},
	{pkg: "tar", tools: []string{"tar"}},
	// objtool links against libelf. OpenSSL is only needed for module
	// signing and trusted keys, both off in the fragment.
	{pkg: "libelf-dev", headers: []string{"libelf.h", "gelf.h"}},
}

// includeDirs are searched for the headers of buildDeps.
var includeDirs = []string{"/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/local/include"}

// missingPackages returns the packages of buildDeps whose tools or headers
// are missing.
func missingPackages(lookPath func(string) (string, error), haveFile func(string) bool) []string {
	var missing []string
	for _, d := range buildDeps {
		ok := true
		for _, t := range d.tools {
			if _, err := lookPath(t); err != nil {
				ok = false
			}
		}
		for _, h := range d.headers {
			found := false
			for _, dir := range includeDirs {
				if haveFile(filepath.Join(dir, h)) {
					found = true
					break
				}
			}
			ok = ok && found
		}
		if !ok {
			missing = append(missing, d.pkg)
		}
	}
	return missing
}

// checkBuildDeps fails with an apt-get hint when build tools are missing.
func checkBuildDeps() error {
	missing := missingPackages(exec.LookPath, func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	})
	if len(missing) == 0 {
		return nil
	}
	var all []string
	for _, d := range buildDeps {
		all = append(all, d.pkg)
	}
	return fmt.Errorf("missing kernel build dependencies %s: install them with `apt-get install %s` (the build needs %s)",
		strings.Join(missing, ", "), strings.Join(missing, " "), strings.Join(all, " "))
}

// Build returns the cached kernel for the source and the embedded fragment,
// building it first if needed. A build extracts the source into a temporary
// directory under Root (removed afterwards, also on error or cancellation),
// runs `make tinyconfig`, merges the fragment with merge_config.sh -m, runs
// `make olddefconfig`, verifies that every option of the fragment survived,
// runs `make vmlinux`, and atomically installs vmlinux, the final .config
// and a metadata file into Root/kernels/<key>/. The full build output is
// written to a log file whose path appears in build errors. Cancelling ctx
// kills the build's processes.
func (b *Builder) Build(ctx context.Context) (Kernel, error) {
	start := time.Now()
	if b.Root == "" {
		return Kernel{}, errors.New("build kernel: no data root given")
	}
	if b.InstallSystem && b.System == "" {
		return Kernel{}, errors.New("build kernel: no system kernels directory to install into")
	}
	src := b.Source
	if src == "" {
		src = DefaultSource
	}
	frag := Fragment()
	if _, err := ParseFragment(frag); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: embedded fragment: %w", err)
	}
	ver, err := b.version(ctx, src)
	if err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", err)
	}
	current := src == DefaultSource && b.SourceVersion == nil
	key := Key(ver, frag)
	kdir := KernelsDir(b.Root)
	// dest is where the kernel goes; kdir where it is built and logged.
	dest, dirMode, fileMode := kdir, privateDirMode, privateFileMode
	lookIn := searchDirs(b.Root, b.System)
	if b.InstallSystem {
		dest, dirMode, fileMode = b.System, systemDirMode, systemFileMode
		lookIn = []string{dest}
	}
	for _, dir := range lookIn {
		if k, err := loadCached(filepath.Join(dir, key)); err == nil {
			k.Current = current
			b.progress("already built: %s", k.Path)
			return k, nil
		}
	}
	final := filepath.Join(dest, key)

	if err := mkdirMode(kdir, privateDirMode); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", err)
	}
	if err := mkdirMode(dest, dirMode); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", err)
	}
	// The lock is taken where the kernel goes: two builds for the same
	// system directory from different data roots wait for each other.
	unlock, err := lockFile(ctx, filepath.Join(dest, ".lock-"+key), func() {
		b.progress("another build of kernel %s is running; waiting for it", key)
	})
	if err != nil {
		return Kernel{}, fmt.Errorf("build kernel %s: %w", key, err)
	}
	defer unlock()
	// Another process may have finished the same build while we waited.
	if k, err := loadCached(final); err == nil {
		k.Current = current
		return k, nil
	}
	removeStale(kdir, key)
	removeStale(dest, key)

	if b.InstallSystem {
		// Built under the data root before kernels went system-wide:
		// install that one rather than build it again.
		if k, err := loadCached(filepath.Join(kdir, key)); err == nil {
			meta, err := readMetadata(filepath.Dir(k.Path))
			if err == nil {
				err = install(dest, final, k.Path, k.Config, meta, dirMode, fileMode)
			}
			if err != nil {
				return Kernel{}, fmt.Errorf("build kernel %s: install %s: %w", key, filepath.Dir(k.Path), err)
			}
			k, err = loadCached(final)
			if err != nil {
				return Kernel{}, fmt.Errorf("build kernel %s: load installed kernel: %w", key, err)
			}
			k.Current = current
			b.progress("installed %s", k.Path)
			return k, nil
		}
	}

	check := b.checkDeps
	if check == nil {
		check = checkBuildDeps
	}
	if err := check(); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", err)
	}
	if _, err := os.Stat(src); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", errMissingSource(src, err))
	}
	if err := checkSpace(kdir, b.minFree); err != nil {
		return Kernel{}, fmt.Errorf("build kernel: %w", err)
	}

	k, err := b.build(ctx, src, ver, key, kdir, dest, frag, start)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return Kernel{}, fmt.Errorf("build kernel %s: %w", key, err)
	}
	k.Current = current
	b.progress("built %s (%.1f MB) in %s", k.Path, float64(k.Size)/1e6, time.Since(start).Round(time.Second))
	return k, nil
}

// build does the work of Build while the key's lock is held.
func (b *Builder) build(ctx context.Context, src, ver, key, kdir, dest string, frag []byte, start time.Time) (Kernel, error) {
	logPath := filepath.Join(kdir, key+".build.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, privateFileMode)
	if err == nil {
		err = logf.Chmod(privateFileMode)
	}
	if err != nil {
		return Kernel{}, fmt.Errorf("create build log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "arrow kernel build %s from %s (version %s) at %s\n", key, src, ver, start.Format(time.RFC3339))

	work, err := os.MkdirTemp(kdir, ".build-"+key+"-")
	if err != nil {
		return Kernel{}, fmt.Errorf("create build directory: %w", err)
	}
	defer func() {
		b.progress("removing build directory")
		os.RemoveAll(work)
	}()
	tree := filepath.Join(work, "linux")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("create build directory: %w", err)
	}
	failed := func(step string, err error) error {
		return fmt.Errorf("%s: %w (build log: %s)", step, err, logPath)
	}

	b.progress("extracting %s", filepath.Base(src))
	if err := b.run(ctx, logf, work, nil, "tar", "-xf", src, "-C", tree, "--strip-components=1", "--no-same-owner"); err != nil {
		return Kernel{}, failed("extract kernel source", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err != nil {
		return Kernel{}, failed("extract kernel source", fmt.Errorf("%s does not look like a kernel source tarball: %w", src, err))
	}

	b.progress("configuring: tinyconfig + arrow.config")
	fragPath := filepath.Join(work, "arrow.config")
	if err := os.WriteFile(fragPath, frag, 0o644); err != nil {
		return Kernel{}, fmt.Errorf("write fragment: %w", err)
	}
	if err := b.run(ctx, logf, tree, nil, "make", "ARCH=x86_64", "tinyconfig"); err != nil {
		return Kernel{}, failed("make tinyconfig", err)
	}
	if err := b.run(ctx, logf, tree, nil, "./scripts/kconfig/merge_config.sh", "-m", ".config", fragPath); err != nil {
		return Kernel{}, failed("merge arrow.config", err)
	}
	if err := b.run(ctx, logf, tree, nil, "make", "ARCH=x86_64", "olddefconfig"); err != nil {
		return Kernel{}, failed("make olddefconfig", err)
	}
	dotConfig, err := os.ReadFile(filepath.Join(tree, ".config"))
	if err != nil {
		return Kernel{}, failed("read .config", err)
	}
	if err := Verify(frag, dotConfig); err != nil {
		fmt.Fprintf(logf, "verify: %v\n", err)
		return Kernel{}, failed("verify .config", err)
	}

	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	b.progress("compiling vmlinux with %d jobs (log: %s)", jobs, logPath)
	if err := b.compile(ctx, logf, tree, jobs); err != nil {
		return Kernel{}, failed("make vmlinux", err)
	}
	img, err := Inspect(filepath.Join(tree, imageName))
	if err != nil {
		return Kernel{}, failed("check vmlinux", err)
	}
	if !img.PVH {
		return Kernel{}, failed("check vmlinux", errors.New("vmlinux has no PVH entry note; is CONFIG_PVH set?"))
	}
	release := img.Release
	if raw, err := os.ReadFile(filepath.Join(tree, "include", "config", "kernel.release")); err == nil {
		release = strings.TrimSpace(string(raw))
	}

	b.progress("installing")
	meta := metadata{
		Key:           key,
		SourceVersion: ver,
		Source:        src,
		Release:       release,
		ConfigHash:    FragmentHash(frag),
		PVH:           img.PVH,
		BuiltAt:       time.Now().UTC().Truncate(time.Second),
		BuildSeconds:  time.Since(start).Round(time.Second).Seconds(),
	}
	final := filepath.Join(dest, key)
	dirMode, fileMode := privateDirMode, privateFileMode
	if b.InstallSystem {
		dirMode, fileMode = systemDirMode, systemFileMode
	}
	if err := install(dest, final, filepath.Join(tree, imageName), filepath.Join(tree, ".config"), meta, dirMode, fileMode); err != nil {
		return Kernel{}, failed("install kernel", err)
	}
	fmt.Fprintf(logf, "installed %s\n", final)
	// Keep the log with a kernel of the data root; a failure here only
	// loses the log. A system kernel's log stays in the data root: it is
	// the builder's, not every user's.
	if !b.InstallSystem {
		if err := os.Rename(logPath, filepath.Join(final, logName)); err != nil {
			fmt.Fprintf(logf, "keep build log: %v\n", err)
		}
	}
	k, err := loadCached(final)
	if err != nil {
		return Kernel{}, fmt.Errorf("load installed kernel: %w", err)
	}
	return k, nil
}

// install copies the image and config into a staging directory in dest
// with the metadata, gives them their modes, and renames it to final. It
// copies rather than renames: the build tree is under the data root, and
// dest may be on another file system.
func install(dest, final, image, config string, meta metadata, dirMode, fileMode os.FileMode) error {
	stage, err := os.MkdirTemp(dest, ".install-"+meta.Key+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, dirMode); err != nil {
		return err
	}
	if err := copyFile(image, filepath.Join(stage, imageName), fileMode); err != nil {
		return err
	}
	if err := copyFile(config, filepath.Join(stage, configName), fileMode); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(stage, metadataName), append(raw, '\n'), fileMode); err != nil {
		return err
	}
	if err := os.Rename(stage, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(final, metadataName)); statErr == nil {
			return nil // installed concurrently; keep that one
		}
		return err
	}
	return syncFile(dest)
}

// readMetadata reads the metadata of the kernel in dir.
func readMetadata(dir string) (metadata, error) {
	var m metadata
	raw, err := os.ReadFile(filepath.Join(dir, metadataName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("parse %s: %w", filepath.Join(dir, metadataName), err)
	}
	return m, nil
}

// copyFile copies src to a new file dst with mode, synced.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return closeSynced(out, mode)
}

// writeFileSync writes data to a new file at path with mode, synced.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return closeSynced(f, mode)
}

// closeSynced gives f mode (the umask took bits from the mode it was
// created with, or left some a private file must not have), syncs and
// closes it.
func closeSynced(f *os.File, mode os.FileMode) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mkdirMode creates dir and its missing parents with mode, whatever the
// umask, and gives dir itself mode if it exists with another: a system
// directory must be enterable by everyone, a private one by its owner
// alone. Existing parents are left alone.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := createDirs(dir, mode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm() != mode {
		return os.Chmod(dir, mode)
	}
	return nil
}

// createDirs creates dir and its missing parents with mode, set with chmod.
func createDirs(dir string, mode os.FileMode) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err // there already, or a real error
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := createDirs(parent, mode); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // made concurrently
		}
		return err
	}
	return os.Chmod(dir, mode)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeStale removes temporary directories left for key by builds that
// were killed. The caller holds the key's lock.
func removeStale(kdir, key string) {
	for _, pat := range []string{".build-" + key + "-*", ".install-" + key + "-*"} {
		matches, _ := filepath.Glob(filepath.Join(kdir, pat))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
}

// version returns the source version for src.
func (b *Builder) version(ctx context.Context, src string) (string, error) {
	if b.SourceVersion != nil {
		v, err := b.SourceVersion(ctx)
		if err != nil {
			return "", fmt.Errorf("kernel source version: %w", err)
		}
		return v, nil
	}
	if src == DefaultSource {
		v, err := SourceVersion(ctx)
		if err == nil {
			return v, nil
		}
		if _, statErr := os.Stat(src); statErr != nil {
			return "", errMissingSource(src, statErr)
		}
		// The tarball is there but dpkg does not know it (copied by hand):
		// name the build after its contents instead.
	}
	if _, err := os.Stat(src); err != nil {
		return "", errMissingSource(src, err)
	}
	return FileVersion(ctx, src)
}

// compile runs make vmlinux, printing a progress line periodically.
func (b *Builder) compile(ctx context.Context, logf io.Writer, tree string, jobs int) error {
	start := time.Now()
	counter := &lineCounter{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := b.tick
		if tick <= 0 {
			tick = 10 * time.Second
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.progress("compiling… %d files, %s", counter.count(), time.Since(start).Round(time.Second))
			}
		}
	}()
	err := b.run(ctx, logf, tree, counter, "make", "ARCH=x86_64", fmt.Sprintf("-j%d", jobs), imageName)
	close(done)
	wg.Wait()
	if err == nil {
		b.progress("compiled %d files in %s", counter.count(), time.Since(start).Round(time.Second))
	}
	return err
}

// lineCounter counts kbuild's "  CC      file.o" and "  AS      file.o" lines.
type lineCounter struct {
	mu      sync.Mutex
	partial []byte
	n       int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data := append(c.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := data[:i]
		if bytes.HasPrefix(line, []byte("  CC ")) || bytes.HasPrefix(line, []byte("  AS ")) {
			c.n++
		}
		data = data[i+1:]
	}
	c.partial = append(c.partial[:0:0], data...)
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// run runs a command in its own process group with output appended to
// logf (and to extra, if not nil). Cancelling ctx kills the whole group.
func (b *Builder) run(ctx context.Context, logf io.Writer, dir string, extra io.Writer, name string, args ...string) error {
	fmt.Fprintf(logf, "+ (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = buildEnv(os.Environ())
	out := logf
	if extra != nil {
		out = io.MultiWriter(logf, extra)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w", name, ctxErr)
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// buildEnv removes variables that would change what make or Kconfig do.
func buildEnv(env []string) []string {
	drop := map[string]bool{
		"MAKEFLAGS": true, "MFLAGS": true, "GNUMAKEFLAGS": true, "MAKELEVEL": true, "MAKEFILES": true,
		"ARCH": true, "CROSS_COMPILE": true, "O": true, "KBUILD_OUTPUT": true, "KCONFIG_CONFIG": true,
		"KCONFIG_ALLCONFIG": true, "LC_ALL": true, "KBUILD_BUILD_USER": true, "KBUILD_BUILD_HOST": true,
	}
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	return append(out, "LC_ALL=C", "KBUILD_BUILD_USER=arrow", "KBUILD_BUILD_HOST=arrow")
}

// progress prints one progress line.
func (b *Builder) progress(format string, args ...any) {
	if b.Progress == nil {
		return
	}
	fmt.Fprintf(b.Progress, "kernel: "+format+"\n", args...)
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait; waiting is called once if the lock is busy.
func lockFile(ctx context.Context, path string, waiting func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, privateFileMode)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
