package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/closure"
)

// ErrForbidden means the client may not do what it asked: a request named a
// host path its policy does not let it use. The API answers 403.
var ErrForbidden = errors.New("forbidden")

// DefaultConfigFile is arrowd's configuration file when --config is not
// given. It need not exist: without it no API client but root (and the
// daemon's own user) may name a host path.
const DefaultConfigFile = "/etc/arrow/arrowd.json"

// maxConfigBytes bounds the configuration file; it is a short list.
const maxConfigBytes = 1 << 20

// FileConfig is arrowd's configuration file, JSON:
//
//	{"allow_host_paths": ["/srv/arrow", "/home/shared/images"]}
//
// Unknown fields are an error, so that a misspelt setting is not silently
// ignored (which would leave a policy other than the one intended).
type FileConfig struct {
	// AllowHostPaths are the host directories (or files) under which API
	// clients other than root may name host paths; see [HostPathPolicy].
	AllowHostPaths []string `json:"allow_host_paths"`
}

// LoadConfigFile reads arrowd's configuration from path. A missing file is
// an empty configuration unless mustExist (the path was given explicitly:
// a typo must not quietly mean "no configuration").
func LoadConfigFile(path string, mustExist bool) (FileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !mustExist {
			return FileConfig{}, nil
		}
		return FileConfig{}, fmt.Errorf("arrowd configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return FileConfig{}, fmt.Errorf("arrowd configuration %s: %w", path, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return FileConfig{}, fmt.Errorf("arrowd configuration %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses arrowd's configuration file: one JSON object, known
// fields only, every allowed host path absolute.
func ParseConfig(b []byte) (FileConfig, error) {
	if len(b) > maxConfigBytes {
		return FileConfig{}, fmt.Errorf("longer than %d bytes", maxConfigBytes)
	}
	var c FileConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return FileConfig{}, fmt.Errorf("malformed: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return FileConfig{}, errors.New("malformed: more than one JSON value")
	}
	for _, p := range c.AllowHostPaths {
		if err := checkAllowEntry(p); err != nil {
			return FileConfig{}, fmt.Errorf("allow_host_paths: %w", err)
		}
	}
	return c, nil
}

// checkAllowEntry checks one allowed host path as the configuration or
// --allow-host-path gives it.
func checkAllowEntry(p string) error {
	if p == "" || !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 || len(p) > 4096 {
		return fmt.Errorf("%q: want an absolute path", p)
	}
	return nil
}

// HostPathPolicy says which host paths an API request may name: volume
// sources, includes, a root file system directory, a kernel, an image given
// as a path, and the host program (with its closure) a program run copies
// into its guest.
//
// Root on the Unix socket, and the daemon's own user, are not limited: they
// could read and write those paths without Arrow. Every other client is:
//
//   - A path it names must be absolute and clean (no "." or ".."
//     components, no doubled or trailing slash), and lie within one of
//     Allow both as written and once its symlinks are resolved, comparing
//     whole path components (/data2 is not within /data). A symlink
//     inside an allowed directory cannot lead out of it.
//   - A Unix-socket peer of another uid (a member of the socket's group)
//     must, moreover, be able to use the path itself: the daemon asks the
//     kernel with the peer's uid and groups (see [asPeer]), so that the
//     socket gives no one a file they could not read, or a directory they
//     could not write, without it. This covers the path named; the files
//     below a volume or a rootfs directory are the allow list's to bound.
//   - A host program's closure (the program, its libraries, its
//     interpreter's packages, the contents of included directories) is
//     read by the daemon for the guest. A socket peer must be able to read
//     every file of it; a TLS client, which has no uid on this host, only
//     files within Allow or readable by anyone.
//
// TLS clients, and connections the daemon cannot identify, are held to the
// allow list alone. The zero policy allows nothing.
type HostPathPolicy struct {
	// Allow are the allowed host paths, absolute.
	Allow []string
	// Setting names where Allow is configured, for error messages ("the
	// allow_host_paths of /etc/arrow/arrowd.json").
	Setting string
}

// Peer is the client at the other end of an API connection.
type Peer struct {
	// Local: a Unix-socket peer, whose credentials (SO_PEERCRED and
	// SO_PEERGROUPS, as of its connect) follow. Not Local: a TLS client,
	// or a connection the daemon could not identify.
	Local  bool     `json:"local,omitempty"`
	UID    uint32   `json:"uid,omitempty"`
	GID    uint32   `json:"gid,omitempty"`
	Groups []uint32 `json:"groups,omitempty"`
}

func (p *Peer) String() string {
	if p == nil || !p.Local {
		return "a TLS client"
	}
	return fmt.Sprintf("uid %d", p.UID)
}

// unrestricted reports whether p may name any host path: root, or the
// user the daemon runs as (who owns everything the daemon can reach).
func (p *Peer) unrestricted(daemonUID int) bool {
	return p != nil && p.Local && (p.UID == 0 || int64(p.UID) == int64(daemonUID))
}

// access is what a request does with a host path.
type access int

const (
	readAccess      access = iota // read a file, or a directory tree
	readWriteAccess               // a read-write volume
)

// namedPath is a host path a request names, and what for.
type namedPath struct {
	field string // "volume source", "include", ...
	path  string
	acc   access
	// candidates are more paths the request may come to mean: an image
	// path with a tag ("oci:DIR:TAG") is cut at the first colon where a
	// path exists, which a client could change after the check.
	candidates []string
}

// namedPaths lists every host path c names.
func namedPaths(c *api.Config) []namedPath {
	var ps []namedPath
	for _, v := range c.Volumes {
		if v.Named() {
			continue // under the data root, arrowd's own
		}
		acc := readWriteAccess
		if v.ReadOnly {
			acc = readAccess
		}
		ps = append(ps, namedPath{field: "volume source", path: v.Source, acc: acc})
	}
	for _, p := range c.Includes {
		ps = append(ps, namedPath{field: "include", path: p, acc: readAccess})
	}
	if c.RootFS != "" {
		ps = append(ps, namedPath{field: "rootfs", path: c.RootFS, acc: readAccess})
	}
	if c.Kernel != "" {
		ps = append(ps, namedPath{field: "kernel", path: c.Kernel, acc: readAccess})
	}
	if p, cands, ok := imageHostPath(c.Image); ok {
		ps = append(ps, namedPath{field: "image", path: p, acc: readAccess, candidates: cands})
	}
	return ps
}

// imageTransports are the image sources that name a host path (see
// oci.Open and run.IsImageSource).
var imageTransports = []string{"oci:", "oci-archive:", "docker-archive:"}

// imageHostPath returns the host path an image reference names, if it
// names one, as oci.Open will take it: "oci:DIR[:TAG]" and the like (see
// splitImageTag), or a path. Every other way of cutting "DIR:TAG" is
// returned as a candidate, which the policy must allow too: files created
// after the check could make oci.Open cut it there.
func imageHostPath(ref string) (string, []string, bool) {
	for _, t := range imageTransports {
		rest, ok := strings.CutPrefix(ref, t)
		if !ok {
			continue
		}
		var cands []string
		for i := 0; i < len(rest); i++ {
			if rest[i] == ':' {
				cands = append(cands, rest[:i])
			}
		}
		return splitImageTag(rest), cands, true
	}
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") {
		return ref, nil, true
	}
	return "", nil, false
}

// splitImageTag is oci's rule for "PATH:TAG": the whole of s when it
// exists, else the shortest prefix before a colon that exists, else s.
func splitImageTag(s string) string {
	if _, err := os.Stat(s); err == nil {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i]
		}
	}
	return s
}

// forbidden is the error for a path the policy refuses.
func (pol *HostPathPolicy) forbidden(who *Peer, field, path, why string) error {
	setting := pol.Setting
	if setting == "" {
		setting = "arrowd's allow_host_paths"
	}
	return fmt.Errorf("%w: %s %s: %s; %s may name host paths only within %s (root on the socket is not limited)",
		ErrForbidden, field, path, why, who, setting)
}

// within reports whether the clean absolute path p is dir or below it,
// component by component.
func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// allowed reports whether p, absolute and clean, is within the allow list
// as written.
func (pol *HostPathPolicy) allowedLexically(p string) bool {
	for _, a := range pol.Allow {
		if within(p, filepath.Clean(a)) {
			return true
		}
	}
	return false
}

// allowedResolved reports whether the resolved path r is within the
// allow list once the list's own symlinks are resolved (an allowed /data
// that is a link to /srv/data allows /srv/data/x). Entries that do not
// exist allow nothing.
func (pol *HostPathPolicy) allowedResolved(r string) bool {
	for _, a := range pol.Allow {
		ra, err := filepath.EvalSymlinks(filepath.Clean(a))
		if err != nil {
			continue
		}
		if within(r, ra) {
			return true
		}
	}
	return false
}

// resolve checks the path p against the allow list and returns it with
// its symlinks resolved. The written path is checked first, so that the
// answer for a path outside the list says nothing of what is there.
func (pol *HostPathPolicy) resolve(who *Peer, field, p string) (string, error) {
	if p == "" || !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
		return "", pol.forbidden(who, field, fmt.Sprintf("%q", p), "not an absolute path")
	}
	// Only a clean path has one meaning: the kernel takes "dir/link/.."
	// through the link, filepath.Clean and the code that cleans paths
	// before use do not. Clients send clean paths (filepath.Abs).
	clean := filepath.Clean(p)
	if clean != p {
		return "", pol.forbidden(who, field, fmt.Sprintf("%q", p), fmt.Sprintf("not a clean path (want %s)", clean))
	}
	if !pol.allowedLexically(clean) {
		return "", pol.forbidden(who, field, p, "outside the allowed host paths")
	}
	r, err := filepath.EvalSymlinks(clean)
	if err != nil {
		// Refused rather than passed on: a path that does not exist yet
		// could be created as a symlink out of the list after the check.
		return "", pol.forbidden(who, field, p, fmt.Sprintf("cannot be checked (%v)", unwrapPathError(err)))
	}
	if !pol.allowedResolved(r) {
		return "", pol.forbidden(who, field, p, fmt.Sprintf("resolves to %s, outside the allowed host paths", r))
	}
	return r, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Check checks every host path c names against the policy for the client
// who. daemonUID is the daemon's effective uid.
func (pol *HostPathPolicy) Check(ctx context.Context, who *Peer, daemonUID int, c *api.Config) error {
	if who.unrestricted(daemonUID) {
		return nil
	}
	if c.NoJail {
		// An unjailed QEMU is as strong as arrowd itself.
		return fmt.Errorf("%w: no_jail: only root may run a VM without its jail (client %s)", ErrForbidden, who)
	}
	if c.Service != "" && c.Image == "" && c.RootFS == "" {
		// A host unit's files (the unit, its programs' closures, the
		// configuration its packages ship, such as redis.conf, mode
		// 0640) are read by the run as arrowd, and would be the
		// client's in the guest.
		return fmt.Errorf("%w: service %s: only root may run a host service unit (its files are read as root); run it from an image (client %s)", ErrForbidden, c.Service, who)
	}
	if c.HostAccess {
		// The user network's gateway is the host's loopback: services
		// bound there (often root's alone) would be the client's.
		return fmt.Errorf("%w: host_access: only root may let a VM reach the host (client %s)", ErrForbidden, who)
	}
	local := who != nil && who.Local
	type resolved struct {
		np namedPath
		r  string
	}
	var rs []resolved
	for _, np := range namedPaths(c) {
		for _, cand := range np.candidates {
			if !filepath.IsAbs(cand) || cand != filepath.Clean(cand) || !pol.allowedLexically(cand) {
				return pol.forbidden(who, np.field, np.path, fmt.Sprintf("may also be read as %q, outside the allowed host paths", cand))
			}
		}
		r, err := pol.resolve(who, np.field, np.path)
		if err != nil {
			return err
		}
		rs = append(rs, resolved{np, r})
	}
	if local {
		err := asPeer(who, func() error {
			for _, x := range rs {
				mode, what := uint32(unix.R_OK), "readable"
				if fi, err := os.Stat(x.r); err == nil && fi.IsDir() {
					mode, what = mode|unix.X_OK, "readable and searchable"
				}
				if x.np.acc == readWriteAccess {
					mode, what = mode|unix.W_OK, what+" and writable"
				}
				if err := peerAccess(x.r, mode); err != nil {
					return pol.forbidden(who, x.np.field, x.np.path, fmt.Sprintf("not %s by %s (%v)", what, who, err))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if c.Image != "" || c.RootFS != "" || c.Program == "" {
		return nil // no host program: nothing more is read
	}
	return pol.checkProgram(ctx, who, c.Program, c.Includes)
}

// checkProgram checks the files a program run copies from the host into
// its guest: the program first, so that nothing of a program the client
// may not read is opened for it, then its whole closure.
func (pol *HostPathPolicy) checkProgram(ctx context.Context, who *Peer, program string, includes []string) error {
	local := who != nil && who.Local
	r := &closure.Resolver{Root: "/"}
	switch {
	case filepath.IsAbs(program):
		program = filepath.Clean(program)
	case strings.Contains(program, "/"):
		return pol.forbidden(who, "program", program, "not an absolute path")
	default:
		// A name, looked up in the PATH the run will use (the system's
		// directories).
		p, err := r.Program(ctx, program)
		if err != nil {
			return fmt.Errorf("%w: program %s: %w", ErrInvalid, program, err)
		}
		program = p
	}
	// check is the test every host file read for the program must pass.
	check := func(field, p string) error {
		rp, err := filepath.EvalSymlinks(p)
		if err != nil {
			return pol.forbidden(who, field, p, fmt.Sprintf("cannot be checked (%v)", unwrapPathError(err)))
		}
		if local {
			if err := peerAccess(rp, unix.R_OK); err != nil {
				return pol.forbidden(who, field, p, fmt.Sprintf("not readable by %s (%v)", who, err))
			}
			return nil
		}
		// A TLS client has no uid here: what it may read beyond the
		// list is what anyone on the host may read.
		if pol.allowedLexically(filepath.Clean(p)) && pol.allowedResolved(rp) {
			return nil
		}
		if err := worldReadable(rp); err != nil {
			return pol.forbidden(who, field, p, fmt.Sprintf("outside the allowed host paths and not readable by every user (%v)", err))
		}
		return nil
	}
	// forEach runs check over paths, on a thread with the peer's
	// credentials for a socket peer.
	forEach := func(field string, paths []string) error {
		f := func() error {
			for _, p := range paths {
				if err := check(field, p); err != nil {
					return err
				}
			}
			return nil
		}
		if local {
			return asPeer(who, f)
		}
		return f()
	}
	if err := forEach("program", []string{program}); err != nil {
		return err
	}
	set, err := r.Resolve(ctx, program, includes)
	if err != nil {
		// The run would fail the same way: say so now.
		return fmt.Errorf("%w: program %s: %w", ErrInvalid, program, err)
	}
	var files []string
	for _, f := range set.Files() {
		if f.Source != "" {
			files = append(files, f.Source)
		}
	}
	return forEach("file of the program's closure", files)
}

// worldReadable reports (as an error) whether anyone may read the file p:
// its "other" read bit, and the "other" search bit of every directory
// above it. p is resolved, so no symlink is on the way.
func worldReadable(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return unwrapPathError(err)
	}
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("mode %v", fi.Mode().Perm())
	}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err != nil {
			return unwrapPathError(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s has mode %v", d, fi.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// peerAccess checks, on a thread that asPeer set up, whether the peer may
// access p as mode (unix.R_OK, W_OK, X_OK). faccessat2 with AT_EACCESS
// checks with the thread's file-system uid, groups and capabilities: the
// kernel's own check, so ACLs and search permission on every directory on
// the way count, and no symlink is followed at the end.
func peerAccess(p string, mode uint32) error {
	return unix.Faccessat2(unix.AT_FDCWD, p, mode, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW)
}

// asPeer runs f on an OS thread of its own that holds the peer's
// file-system credentials: its uid and gid as fsuid and fsgid, and its
// supplementary groups. Changing the fsuid from 0 also drops the thread's
// capabilities that bypass file permissions (CAP_DAC_OVERRIDE and the
// like), so the kernel checks the peer's permissions exactly.
//
// Linux credentials are per thread; the raw setgroups, setfsgid and
// setfsuid calls of x/sys/unix change only the calling thread's (unlike
// package syscall's Setuid and friends, which change every thread). The
// goroutine stays locked to its thread and exits without unlocking, so the
// Go runtime ends the thread rather than reuse it with the peer's
// credentials.
//
// If the daemon cannot take the peer's credentials (it is not root), f is
// not run and the check fails: unchecked is refused.
func asPeer(who *Peer, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread, deliberately: see above.
		groups := make([]int, len(who.Groups))
		for i, g := range who.Groups {
			groups[i] = int(g)
		}
		if err := unix.Setgroups(groups); err != nil {
			errc <- fmt.Errorf("%w: cannot check host paths as %s: setgroups: %w", ErrForbidden, who, err)
			return
		}
		if _, err := unix.SetfsgidRetGid(int(who.GID)); err != nil {
			errc <- fmt.Errorf("%w: cannot check host paths as %s: setfsgid: %w", ErrForbidden, who, err)
			return
		}
		if _, err := unix.SetfsuidRetUid(int(who.UID)); err != nil {
			errc <- fmt.Errorf("%w: cannot check host paths as %s: setfsuid: %w", ErrForbidden, who, err)
			return
		}
		// setfsuid and setfsgid report failure only by not changing the
		// id: read both back (an invalid id changes nothing and returns
		// the current one).
		uid, _ := unix.SetfsuidRetUid(-1)
		gid, _ := unix.SetfsgidRetGid(-1)
		if uint32(uid) != who.UID || uint32(gid) != who.GID {
			errc <- fmt.Errorf("%w: cannot check host paths as %s: the daemon could not take its credentials (fsuid %d, fsgid %d)", ErrForbidden, who, uid, gid)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// checkHostPaths checks the host paths of c against the daemon's policy
// for the client who.
func (d *Daemon) checkHostPaths(ctx context.Context, who *Peer, c *api.Config) error {
	return d.cfg.HostPaths.Check(ctx, who, os.Geteuid(), c)
}
