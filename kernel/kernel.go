// Package kernel provides Arrow's guest kernel: the Kconfig fragment that
// tailors a Linux kernel to QEMU microvm guests, the build that turns
// Debian's linux-source tarball into a PVH-bootable vmlinux, the on-disk
// cache of built kernels, and inspection of user-supplied kernel images.
//
// Built kernels live in a kernels directory, in <key>/, where key is derived
// from the kernel source version and the fragment (see Key). Each such
// directory holds the vmlinux, the final .config (as "config"), the build
// log (when the build ran there) and a JSON metadata file.
//
// There are two kernels directories, searched in this order: the data
// root's, <root>/kernels, private to its owner (0700, files 0600), and the
// system's, [SystemDir], where a build run as root installs the kernel for
// every user of the machine (root-owned, 0755, files 0644: a kernel holds
// nothing secret). So a user with a data root of their own, or a test with
// a temporary one, boots root's kernel instead of spending minutes building
// one.
package kernel

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/dataroot"
)

//go:embed arrow.config
var fragment string

// Fragment returns Arrow's kernel config fragment (arrow.config), which is
// applied on top of `make tinyconfig`. The returned slice is a fresh copy.
func Fragment() []byte {
	return []byte(fragment)
}

// Format is the file format of a kernel image.
type Format string

const (
	// FormatELF is an uncompressed ELF vmlinux, bootable by QEMU through
	// PVH when it carries the PVH entry note.
	FormatELF Format = "elf"
	// FormatBzImage is an x86 boot-protocol bzImage, such as Debian's
	// /boot/vmlinuz-* kernels.
	FormatBzImage Format = "bzimage"
)

// Kernel describes a usable kernel image.
type Kernel struct {
	// Path is the kernel image file (vmlinux or bzImage).
	Path string
	// Version is, for kernels built by Arrow, the Debian version of the
	// linux-source package they were built from (e.g. "6.1.192-2"); for
	// images passed to Inspect it is the kernel release found in the image
	// (e.g. "6.1.0-28-cloud-amd64"), or empty when none was found.
	Version string
	// Release is the kernel release string (uname -r) when known.
	Release string
	// ConfigHash is the hex SHA-256 of the config fragment the kernel was
	// built with; empty for kernels not built by Arrow.
	ConfigHash string
	// Key is the cache key (see Key); empty for kernels not built by Arrow.
	Key string
	// Tailored reports whether Arrow built the kernel from its fragment.
	Tailored bool
	// Current reports whether the kernel matches the embedded fragment and
	// the installed kernel source, i.e. it is the one Find returns.
	Current bool
	// Format is the image format.
	Format Format
	// PVH reports whether the image has a PVH entry point (ELF note
	// XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot an ELF directly.
	PVH bool
	// Config is the path of the kernel's full .config, when known.
	Config string
	// BuiltAt is when Arrow built the kernel; zero for other kernels.
	BuiltAt time.Time
	// Size is the size of the image file in bytes.
	Size int64
}

// ErrNotBuilt reports that no cached kernel matches the current fragment and
// kernel source. Errors returned by Find match it with errors.Is.
var ErrNotBuilt = errors.New("guest kernel not built yet: run `arrow kernel build`")

// The files in a kernel's directory under [KernelsDir].
const (
	imageName    = "vmlinux"
	configName   = "config"
	logName      = "build.log"
	metadataName = "kernel.json"
)

// KernelsDir returns the directory under root that holds cached kernels.
func KernelsDir(root string) string {
	return dataroot.Root(root).Kernels()
}

// SystemDir is the machine's kernels directory, where `arrow kernel build`
// run as root installs the kernel. It sits beside arrow-init and
// arrow-jailer (/usr/local/libexec/arrow), outside any private data root.
const SystemDir = "/usr/local/lib/arrow/kernels"

// SystemDirEnv names an environment variable that, when set, replaces
// SystemDir: for tests that need a machine without a system kernel.
const SystemDirEnv = "ARROW_SYSTEM_KERNELS"

// DefaultSystemDir returns $ARROW_SYSTEM_KERNELS, or SystemDir when unset.
func DefaultSystemDir() string {
	if d := os.Getenv(SystemDirEnv); d != "" {
		return d
	}
	return SystemDir
}

// Modes of the two kernels directories and of the files in them.
const (
	privateDirMode  os.FileMode = 0o700
	privateFileMode os.FileMode = 0o600
	systemDirMode   os.FileMode = 0o755
	systemFileMode  os.FileMode = 0o644
)

// searchDirs returns the kernels directories searched for root, in order.
func searchDirs(root, system string) []string {
	dirs := []string{KernelsDir(root)}
	if system != "" && trustedSystemDir(system) {
		dirs = append(dirs, system)
	}
	return dirs
}

// trustedSystemDir reports whether the system kernels directory is fit to
// boot kernels from: owned by root (or by this user, for tests run by one)
// and writable by its owner alone. A kernel any user could have put there
// would be a kernel any user chose for everyone's VMs.
func trustedSystemDir(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid == 0 || int(st.Uid) == os.Geteuid())
}

// FragmentHash returns the hex SHA-256 of a config fragment.
func FragmentHash(fragment []byte) string {
	sum := sha256.Sum256(fragment)
	return hex.EncodeToString(sum[:])
}

// Key returns the cache key for a kernel built from the given source version
// and config fragment: the source version made filesystem safe, a dash, and
// the first 12 hex digits of the fragment's SHA-256, e.g.
// "6.1.192-2-1a2b3c4d5e6f". Any change to either input changes the key.
func Key(sourceVersion string, fragment []byte) string {
	return safeName(sourceVersion) + "-" + FragmentHash(fragment)[:12]
}

// safeName maps s to a non-empty name made of [A-Za-z0-9._-] that does not
// start with a dot.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || out[0] == '.' {
		out = "_" + out
	}
	return out
}

// metadata is the JSON file stored next to each cached vmlinux.
type metadata struct {
	Key           string    `json:"key"`
	SourceVersion string    `json:"source_version"`
	Source        string    `json:"source"`
	Release       string    `json:"release,omitempty"`
	ConfigHash    string    `json:"config_hash"`
	PVH           bool      `json:"pvh"`
	BuiltAt       time.Time `json:"built_at"`
	BuildSeconds  float64   `json:"build_seconds"`
}

// loadCached reads the cached kernel in dir.
func loadCached(dir string) (Kernel, error) {
	raw, err := os.ReadFile(filepath.Join(dir, metadataName))
	if err != nil {
		return Kernel{}, fmt.Errorf("read kernel metadata: %w", err)
	}
	var m metadata
	if err := json.Unmarshal(raw, &m); err != nil {
		return Kernel{}, fmt.Errorf("parse kernel metadata %s: %w", filepath.Join(dir, metadataName), err)
	}
	img := filepath.Join(dir, imageName)
	st, err := os.Stat(img)
	if err != nil {
		return Kernel{}, fmt.Errorf("cached kernel image: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Kernel{}, fmt.Errorf("cached kernel image %s is not a regular file", img)
	}
	return Kernel{
		Path:       img,
		Version:    m.SourceVersion,
		Release:    m.Release,
		ConfigHash: m.ConfigHash,
		Key:        m.Key,
		Tailored:   true,
		Format:     FormatELF,
		PVH:        m.PVH,
		Config:     filepath.Join(dir, configName),
		BuiltAt:    m.BuiltAt,
		Size:       st.Size(),
	}, nil
}

// Find returns the cached kernel built from the embedded fragment and the
// installed linux-source package, from the data root's kernels or else from
// the system's ([DefaultSystemDir]). When the package version cannot be
// determined (for example the package was removed after building), it falls
// back to the most recently built kernel for the embedded fragment. When no
// such kernel exists the error matches ErrNotBuilt.
func Find(root string) (Kernel, error) { return FindIn(root, DefaultSystemDir()) }

// FindIn is Find with system as the system kernels directory ("" for none).
func FindIn(root, system string) (Kernel, error) {
	ver, verErr := memoSourceVersion(root, dpkgStatus, SourceVersion)
	return find(searchDirs(root, system), ver, verErr, Fragment())
}

// dpkgStatus is dpkg's database of installed packages: it changes whenever
// a package is installed, upgraded or removed.
const dpkgStatus = "/var/lib/dpkg/status"

// sourceMemo records the installed source version and the identity of
// dpkg's database when it was read.
type sourceMemo struct {
	StatusSize  int64  `json:"status_size"`
	StatusMtime int64  `json:"status_mtime_ns"`
	Version     string `json:"version"`
}

// memoSourceVersion returns the installed source version, asking dpkg only
// when its database changed since the last time. Find runs on every
// `arrow run`, and dpkg-query costs milliseconds there; a stat does not.
// The memo lives in the kernels directory and is written only when that
// exists, so Find never creates Arrow's data root.
func memoSourceVersion(root, status string, lookup VersionFunc) (string, error) {
	memoPath := filepath.Join(KernelsDir(root), "source-version.json")
	st, statErr := os.Stat(status)
	if statErr == nil {
		if b, err := os.ReadFile(memoPath); err == nil {
			var m sourceMemo
			if json.Unmarshal(b, &m) == nil && m.Version != "" &&
				m.StatusSize == st.Size() && m.StatusMtime == st.ModTime().UnixNano() {
				return m.Version, nil
			}
		}
	}
	ver, err := lookup(context.Background())
	if err != nil || statErr != nil {
		return ver, err
	}
	if _, err := os.Stat(KernelsDir(root)); err == nil {
		b, _ := json.Marshal(sourceMemo{StatusSize: st.Size(), StatusMtime: st.ModTime().UnixNano(), Version: ver})
		tmp, err := os.CreateTemp(KernelsDir(root), ".source-version-*")
		if err == nil {
			_, werr := tmp.Write(b)
			cerr := tmp.Close()
			if werr != nil || cerr != nil || os.Rename(tmp.Name(), memoPath) != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return ver, nil
}

// Cached returns the kernel Arrow built into dir (a directory of
// [KernelsDir]), so that a --kernel naming Arrow's own vmlinux is known as
// tailored wherever it lives.
func Cached(dir string) (Kernel, error) { return loadCached(dir) }

func find(dirs []string, sourceVersion string, verErr error, frag []byte) (Kernel, error) {
	if verErr == nil {
		key := Key(sourceVersion, frag)
		var unusable []string
		for _, kdir := range dirs {
			dir := filepath.Join(kdir, key)
			k, err := loadCached(dir)
			if err == nil {
				k.Current = true
				return k, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				unusable = append(unusable, fmt.Sprintf("cached kernel %s is unusable: %v", dir, err))
			}
		}
		if len(unusable) > 0 {
			return Kernel{}, fmt.Errorf("%w (%s)", ErrNotBuilt, strings.Join(unusable, "; "))
		}
		return Kernel{}, fmt.Errorf("%w (no kernel for linux-source %s and the current config in %s)",
			ErrNotBuilt, sourceVersion, strings.Join(dirs, " or "))
	}
	// Source version unknown: any kernel built from this fragment will do.
	all, err := list(dirs, "", frag)
	if err != nil {
		return Kernel{}, err
	}
	hash := FragmentHash(frag)
	for _, k := range all { // newest first
		if k.ConfigHash == hash {
			k.Current = true
			return k, nil
		}
	}
	return Kernel{}, fmt.Errorf("%w (and the kernel source version is unknown: %v)", ErrNotBuilt, verErr)
}

// List returns all cached kernels under root and in the system kernels
// directory ([DefaultSystemDir]), newest first. The one that Find would
// return is marked Current. Directories that do not hold a complete kernel
// (such as interrupted builds) are skipped.
func List(root string) ([]Kernel, error) { return ListIn(root, DefaultSystemDir()) }

// ListIn is List with system as the system kernels directory ("" for none).
func ListIn(root, system string) ([]Kernel, error) {
	ver, err := SourceVersion(context.Background())
	if err != nil {
		ver = ""
	}
	ks, err := list(searchDirs(root, system), ver, Fragment())
	if err != nil {
		return nil, err
	}
	if ver == "" {
		// Mirror Find's fallback: the newest kernel for this fragment.
		hash := FragmentHash(Fragment())
		for i := range ks {
			if ks[i].ConfigHash == hash {
				ks[i].Current = true
				break
			}
		}
	}
	return ks, nil
}

// list reads all cached kernels in dirs, marking as current the first one,
// in the order of dirs, for sourceVersion (when non-empty) and frag.
func list(dirs []string, sourceVersion string, frag []byte) ([]Kernel, error) {
	current := ""
	if sourceVersion != "" {
		current = Key(sourceVersion, frag)
	}
	var out []Kernel
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cached kernels: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			k, err := loadCached(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if e.Name() == current {
				k.Current = true
				current = "" // a later directory's copy is shadowed
			}
			out = append(out, k)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].BuiltAt.After(out[j].BuiltAt) })
	return out, nil
}
