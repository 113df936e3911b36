package apt

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/ctxio"
	"github.com/arrowsys/arrow/internal/mountinfo"
)

// DefaultPath is the image's PATH: Debian's for root.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Labels the image carries: what it was built of.
const (
	LabelPackages = "org.arrowsys.apt.packages"
	LabelSuite    = "org.arrowsys.apt.suite"
)

// stopGrace is how long mmdebstrap has to clean up after SIGTERM.
const stopGrace = 30 * time.Second

// build runs mmdebstrap into a directory of its own and imports its tar.
func (b *Builder) build(ctx context.Context, req Request, pkgs []string, sources []sourceFile) (store.Image, error) {
	tool := b.Mmdebstrap
	if tool == "" {
		tool = "mmdebstrap"
	}
	tool, err := exec.LookPath(tool)
	if err != nil {
		return store.Image{}, ErrNoTool
	}
	if err := os.MkdirAll(b.TmpDir, 0o700); err != nil {
		return store.Image{}, err
	}
	removeStale(b.TmpDir, staleAge, time.Now())
	dir, err := os.MkdirTemp(b.TmpDir, buildPrefix)
	if err != nil {
		return store.Image{}, err
	}
	defer removeBuildDir(dir)
	args := []string{"--variant=essential", "--include=" + strings.Join(pkgs, ","),
		"--format=tar"}
	if os.Geteuid() == 0 {
		args = append(args, "--mode=root")
	} else {
		args = append(args, "--mode=unshare")
	}
	args = append(args, req.Suite, filepath.Join(dir, "rootfs.tar"))
	for i, f := range sources {
		// One file per host file, its extension kept: mmdebstrap
		// tells one-line from deb822 sources by it.
		p := filepath.Join(dir, fmt.Sprintf("%02d-%s", i, f.name))
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return store.Image{}, err
		}
		args = append(args, p)
	}
	fmt.Fprintf(b.progress(), "arrow: building %s: mmdebstrap %s %s\n", req.Name, req.Suite, strings.Join(pkgs, ","))
	cmd := exec.CommandContext(ctx, tool, args...)
	// mmdebstrap's own temporary directories go into dir too, so that
	// nothing of the build outlives it.
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, "LC_ALL=C.UTF-8")
	// A process group of its own: mmdebstrap signals its group when it
	// is interrupted, which must not reach this process; Ctrl-C reaches
	// this process alone, which passes it on as a terminal would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = stopGrace
	defer func() {
		if cmd.Process != nil {
			awaitGroup(cmd.Process.Pid)
		}
	}()
	tail := &tailBuffer{max: 64 << 10}
	cmd.Stdout = b.progress()
	cmd.Stderr = io.MultiWriter(b.progress(), tail)
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return store.Image{}, ctx.Err()
		}
		if missing := missingPackages(tail.String()); len(missing) > 0 {
			return store.Image{}, fmt.Errorf("%w in %s: %s", ErrNoPackage, req.Suite, strings.Join(missing, ", "))
		}
		return store.Image{}, fmt.Errorf("mmdebstrap: %w", err)
	}
	fmt.Fprintf(b.progress(), "arrow: installed in %v; importing\n", time.Since(t0).Round(time.Second))
	src, err := newTarSource(ctx, filepath.Join(dir, "rootfs.tar"), req, pkgs)
	if err != nil {
		return store.Image{}, err
	}
	return b.Store.Import(ctx, src, req.Name)
}

// buildPrefix starts the names of build directories.
const buildPrefix = ".apt-build-"

// staleAge is when a build directory is surely left by a build that was
// killed (SIGKILL, a crash): no build takes a day.
const staleAge = 24 * time.Hour

// removeStale removes the build directories in dir not changed for age,
// with what is mounted in them.
func removeStale(dir string, age time.Duration, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), buildPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > age {
			removeBuildDir(filepath.Join(dir, e.Name()))
		}
	}
}

// awaitGroup waits for the processes left in the process group pgid
// (mmdebstrap's helpers cleaning up its chroot) to end, for at most
// stopGrace, then kills them: the build's directory goes only when
// nothing works in it.
func awaitGroup(pgid int) {
	deadline := time.Now().Add(stopGrace)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// missingPackages finds the packages apt said it does not know in its
// output.
func missingPackages(out string) []string {
	var missing []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		var p string
		if _, rest, ok := strings.Cut(line, "Unable to locate package "); ok {
			p = strings.TrimSpace(rest)
		} else if _, rest, ok := strings.Cut(line, "Package '"); ok && strings.Contains(rest, "' has no installation candidate") {
			p, _, _ = strings.Cut(rest, "'")
		}
		if p != "" && !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	return missing
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// removeBuildDir removes a build's directory, first detaching whatever
// is still mounted under it (an mmdebstrap killed in root mode leaves
// /proc, /sys and /dev mounted in its chroot): removing through such a
// mount would delete the host's files.
func removeBuildDir(dir string) {
	if mounts, err := mountsUnder(dir); err == nil {
		for _, m := range slices.Backward(mounts) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
		if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
			return // never remove through a mount
		}
	} else {
		return
	}
	os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or under dir, shallowest first.
func mountsUnder(dir string) ([]string, error) {
	out, err := mountinfo.Under(dir)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return out, nil
}

// tarSource is the built tar as a one-layer OCI image, uncompressed:
// the store hashes and unpacks it as it is.
type tarSource struct {
	ref      string
	tar      string
	manifest []byte
	config   []byte
	layer    ocispec.Descriptor
}

func newTarSource(ctx context.Context, tarPath string, req Request, pkgs []string) (*tarSource, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.NewReader(ctx, f))
	if err != nil {
		return nil, fmt.Errorf("hash the built tree: %w", err)
	}
	diffID := digest.NewDigest(digest.SHA256, h)
	created := time.Now().UTC()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=" + DefaultPath},
			Cmd: []string{"/bin/bash"},
			Labels: map[string]string{
				LabelPackages: strings.Join(pkgs, ","),
				LabelSuite:    req.Suite,
			},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: n}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(rawCfg), Size: int64(len(rawCfg))},
		Layers:    []ocispec.Descriptor{layer},
	}
	m.SchemaVersion = 2
	rawM, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	ref := "apt:" + req.Suite + "/" + strings.Join(pkgs, ",")
	if len(ref) > 400 {
		ref = ref[:400]
	}
	return &tarSource{ref: ref, tar: tarPath, manifest: rawM, config: rawCfg, layer: layer}, nil
}

func (t *tarSource) Reference() string { return t.ref }

func (t *tarSource) Manifest(ctx context.Context) ([]byte, error) { return t.manifest, ctx.Err() }

func (t *tarSource) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	switch d.Digest {
	case digest.FromBytes(t.config):
		return io.NopCloser(strings.NewReader(string(t.config))), nil
	case t.layer.Digest:
		return os.Open(t.tar)
	}
	return nil, fmt.Errorf("blob %s: %w", d.Digest, errors.ErrUnsupported)
}
