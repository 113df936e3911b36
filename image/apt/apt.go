// Package apt builds images out of Debian packages: mmdebstrap installs
// them, maintainer scripts run, from the host's apt sources, into a tar
// archive that is imported into the content-addressed image store as a
// one-layer image. Images built this way share their common files in the
// store (every distinct file is kept once). Builds are cached by suite,
// package list and the host's sources: a second build of the same list
// only names the image built before.
package apt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/store"
)

// Errors of builds.
var (
	// ErrInvalid: a package or suite name that apt could not take.
	ErrInvalid = errors.New("invalid apt build request")
	// ErrNoPackage: apt does not know a package in this suite.
	ErrNoPackage = errors.New("no such package")
	// ErrNoTool: mmdebstrap is not installed.
	ErrNoTool = errors.New("mmdebstrap is not installed (apt-get install mmdebstrap)")
)

// Bounds on a request: it names directories and becomes a command line.
const (
	maxPackages   = 256
	maxPackageLen = 128
	maxSuiteLen   = 64
	// maxSources bounds what is read of the host's apt sources.
	maxSources = 1 << 20
)

// ParsePackages parses a comma-separated package list (as --apt takes
// it): Debian package names ([a-z0-9][a-z0-9+.-]+, Debian policy 5.6.1),
// returned sorted without duplicates, which is the cache's key.
func ParsePackages(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if err := validPackage(p); err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) > maxPackages {
		return nil, fmt.Errorf("%w: more than %d packages", ErrInvalid, maxPackages)
	}
	sort.Strings(out)
	return out, nil
}

func validPackage(p string) error {
	bad := len(p) < 2 || len(p) > maxPackageLen || !isLowerAlnum(p[0])
	for i := 1; i < len(p) && !bad; i++ {
		c := p[i]
		bad = !isLowerAlnum(c) && c != '+' && c != '.' && c != '-'
	}
	if bad {
		return fmt.Errorf("%w: package %q: a Debian package name is [a-z0-9][a-z0-9+.-]+", ErrInvalid, p)
	}
	return nil
}

// ValidateSuite checks a suite or codename (bookworm, stable,
// bookworm-backports).
func ValidateSuite(s string) error {
	bad := s == "" || len(s) > maxSuiteLen || !isLowerAlnum(s[0])
	for i := 1; i < len(s) && !bad; i++ {
		c := s[i]
		bad = !isLowerAlnum(c) && c != '-' && c != '.'
	}
	if bad {
		return fmt.Errorf("%w: suite %q: want a codename such as bookworm", ErrInvalid, s)
	}
	return nil
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// Builder builds images of packages into a store.
type Builder struct {
	Store *store.Store
	// CacheDir holds the cache's records, one per key (dataroot's
	// AptBuilds()).
	CacheDir string
	// TmpDir is where builds happen: on the data root's file system,
	// never in the system's /tmp (a build takes hundreds of megabytes).
	TmpDir string
	// EtcApt is the host's apt configuration directory (/etc/apt when
	// empty): its sources.list and sources.list.d are the mirrors.
	EtcApt string
	// OSRelease is the host's os-release file (/etc/os-release when
	// empty): its VERSION_CODENAME is the default suite.
	OSRelease string
	// Mmdebstrap is the tool (found in PATH when empty).
	Mmdebstrap string
	// Progress receives mmdebstrap's progress and the builder's own.
	Progress io.Writer
}

// Request is one build.
type Request struct {
	// Packages, as ParsePackages returns them.
	Packages []string
	// Suite is the Debian suite; the host's codename when empty.
	Suite string
	// Name names the image in the store.
	Name string
}

// Result is what Build did.
type Result struct {
	Image store.Image
	// Cached is set when the image came from an earlier build.
	Cached bool
	Suite  string
	Key    string
}

// record is a cache entry: the image an earlier build of a key made.
type record struct {
	Suite    string    `json:"suite"`
	Packages []string  `json:"packages"`
	ImageID  string    `json:"image_id"`
	Built    time.Time `json:"built"`
}

// Build builds (or finds in the cache) the image of req and names it.
// On error or cancellation nothing of the build stays: its directory
// goes, with whatever mmdebstrap mounted in it.
func (b *Builder) Build(ctx context.Context, req Request) (Result, error) {
	if len(req.Packages) == 0 {
		return Result{}, fmt.Errorf("%w: no packages", ErrInvalid)
	}
	for _, p := range req.Packages {
		if err := validPackage(p); err != nil {
			return Result{}, err
		}
	}
	if err := store.ValidateName(req.Name); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if req.Suite == "" {
		var err error
		if req.Suite, err = hostCodename(b.osRelease()); err != nil {
			return Result{}, err
		}
	}
	if err := ValidateSuite(req.Suite); err != nil {
		return Result{}, err
	}
	host, err := hostCodename(b.osRelease())
	if err != nil {
		host = ""
	}
	sources, sourcesKey, err := readSources(b.etcApt(), host, req.Suite)
	if err != nil {
		return Result{}, err
	}
	pkgs := slices.Clone(req.Packages)
	sort.Strings(pkgs)
	key := cacheKey(req.Suite, pkgs, sourcesKey)
	res := Result{Suite: req.Suite, Key: key}
	if err := cachefile.PrivateDir(b.CacheDir); err != nil {
		return res, fmt.Errorf("apt build cache: %w", err)
	}
	recPath := filepath.Join(b.CacheDir, key+".json")
	if rec, err := readRecord(recPath); err == nil {
		if img, err := b.Store.Tag(ctx, rec.ImageID, req.Name); err == nil {
			res.Image, res.Cached = img, true
			return res, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
		// The image was removed since: build it again.
	}
	img, err := b.build(ctx, req, pkgs, sources)
	if err != nil {
		return res, err
	}
	rb, err := json.Marshal(record{Suite: req.Suite, Packages: pkgs, ImageID: img.ID, Built: time.Now().UTC()})
	if err != nil {
		return res, err
	}
	if err := cachefile.WriteFile(recPath, rb, cachefile.FileMode); err != nil {
		return res, fmt.Errorf("apt build cache: record of %s: %w", img.ShortID(), err)
	}
	res.Image = img
	return res, nil
}

func (b *Builder) etcApt() string {
	if b.EtcApt == "" {
		return "/etc/apt"
	}
	return b.EtcApt
}

func (b *Builder) osRelease() string {
	if b.OSRelease == "" {
		return "/etc/os-release"
	}
	return b.OSRelease
}

func (b *Builder) progress() io.Writer {
	if b.Progress == nil {
		return io.Discard
	}
	return b.Progress
}

// cacheKey names a build: suite, packages and the sources they come from.
func cacheKey(suite string, pkgs []string, sources []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "arrow apt image v1\nsuite %s\n", suite)
	for _, p := range pkgs {
		fmt.Fprintf(h, "package %s\n", p)
	}
	h.Write(sources)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func readRecord(p string) (record, error) {
	var rec record
	b, err := readBounded(p, 64<<10)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, err
	}
	if rec.ImageID == "" {
		return rec, errors.New("no image in the record")
	}
	return rec, nil
}

func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, max)
	}
	return b, nil
}

// hostCodename reads VERSION_CODENAME from an os-release file.
func hostCodename(osRelease string) (string, error) {
	b, err := readBounded(osRelease, 64<<10)
	if err != nil {
		return "", fmt.Errorf("host's release (for the default suite; give --suite): %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%s has no VERSION_CODENAME: give --suite", osRelease)
}

// sourceFile is one of the host's apt source files, as the build's
// mirrors take it.
type sourceFile struct {
	name string // its base name: .list (one-line style) or .sources (deb822)
	data []byte
}

// readSources reads the host's apt sources: sources.list, then
// sources.list.d's *.list and *.sources in name order. For a suite other
// than the host's, the host's codename is replaced by it in every suite
// name (bookworm-updates becomes trixie-updates). key is their content,
// for the cache's key.
func readSources(etcApt, host, suite string) (files []sourceFile, key []byte, err error) {
	var paths []string
	if _, err := os.Stat(filepath.Join(etcApt, "sources.list")); err == nil {
		paths = append(paths, filepath.Join(etcApt, "sources.list"))
	}
	entries, err := os.ReadDir(filepath.Join(etcApt, "sources.list.d"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("host apt sources: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && (strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources")) {
			paths = append(paths, filepath.Join(etcApt, "sources.list.d", n))
		}
	}
	var all bytes.Buffer
	for _, p := range paths {
		b, err := readBounded(p, maxSources)
		if err != nil {
			return nil, nil, fmt.Errorf("host apt sources: %w", err)
		}
		if suite != host && host != "" {
			b = replaceCodename(b, host, suite)
		}
		if !hasEntries(b) {
			continue
		}
		files = append(files, sourceFile{name: filepath.Base(p), data: b})
		fmt.Fprintf(&all, "# %s\n%s\n", filepath.Base(p), b)
		if all.Len() > maxSources {
			return nil, nil, fmt.Errorf("host apt sources: more than %d bytes", maxSources)
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("host apt sources: none in %s (sources.list, sources.list.d)", etcApt)
	}
	return files, all.Bytes(), nil
}

// hasEntries reports whether a sources file has a line that is not a
// comment or blank.
func hasEntries(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

// replaceCodename replaces the word host (a codename, alone or before
// "-updates", "-security"...) by suite in apt sources, outside comments.
func replaceCodename(b []byte, host, suite string) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line)
			continue
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		for _, f := range fields {
			w := strings.TrimRight(f, "\n")
			if w == host || strings.HasPrefix(w, host+"-") {
				line = strings.Replace(line, f, suite+strings.TrimPrefix(f, host), 1)
			}
		}
		out.WriteString(line)
	}
	return out.Bytes()
}
