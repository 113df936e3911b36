package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	// SourcePackage is the Debian package that ships the kernel source.
	SourcePackage = "linux-source-6.1"
	// DefaultSource is the kernel source tarball installed by SourcePackage.
	DefaultSource = "/usr/src/linux-source-6.1.tar.xz"
)

// VersionFunc reports the version of the kernel source a build uses.
type VersionFunc func(ctx context.Context) (string, error)

// SourceVersion returns the Debian version of the installed SourcePackage
// (e.g. "6.1.192-2"), as reported by dpkg-query.
func SourceVersion(ctx context.Context) (string, error) {
	return packageVersion(ctx, SourcePackage)
}

// packageVersion asks dpkg-query for the version of an installed package.
func packageVersion(ctx context.Context, pkg string) (string, error) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return "", fmt.Errorf("look up version of %s: dpkg-query not found (not a Debian system?): %w", pkg, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", pkg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s is not installed (apt-get install %s): dpkg-query: %s: %w",
			pkg, pkg, strings.TrimSpace(stderr.String()), err)
	}
	return parseDpkgStatus(pkg, stdout.String())
}

// parseDpkgStatus parses "<status> <version>" as printed by packageVersion.
func parseDpkgStatus(pkg, out string) (string, error) {
	status, version, _ := strings.Cut(strings.TrimSpace(out), " ")
	if status != "installed" {
		return "", fmt.Errorf("%s is not installed (dpkg status %q): apt-get install %s", pkg, status, pkg)
	}
	if version == "" {
		return "", fmt.Errorf("dpkg-query reported no version for %s", pkg)
	}
	return version, nil
}

// FileVersion derives a source version for a tarball that is not managed by
// dpkg: its base name without extensions and the first 12 hex digits of the
// SHA-256 of its contents, e.g. "linux-6.6.8-0123456789ab".
func FileVersion(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash kernel source: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, readerCtx{ctx, f}); err != nil {
		return "", fmt.Errorf("hash kernel source %s: %w", path, err)
	}
	name := filepath.Base(path)
	for _, ext := range []string{".xz", ".gz", ".bz2", ".zst", ".tar", ".tgz"} {
		name = strings.TrimSuffix(name, ext)
	}
	return name + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// readerCtx stops reading once its context is done.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// errMissingSource builds the error for a missing source tarball.
func errMissingSource(path string, err error) error {
	if path == DefaultSource {
		return fmt.Errorf("kernel source %s not found: install it with `apt-get install %s`: %w", path, SourcePackage, err)
	}
	return fmt.Errorf("kernel source %s not found: %w", path, err)
}
