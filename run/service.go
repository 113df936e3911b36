package run

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/unit"
)

// loadService finds and translates o.Service in the root the run's
// programs come from: the image's, --rootfs's, or the host's; and
// resolves its SupplementaryGroups= in that root's /etc/group.
func loadService(ctx context.Context, o *Options) (*unit.Service, []uint32, unit.FS, error) {
	svc, root, where, err := findService(ctx, o)
	if err != nil {
		return nil, nil, nil, err
	}
	var gids []uint32
	if len(svc.Groups) > 0 {
		b, err := root.ReadFile("/etc/group", maxIdentityFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, failf(ExitArrowFailed, "--service %s (in %s): /etc/group: %w", svc.Name, where, err)
		}
		db := newUserDB(nil, b)
		for _, g := range svc.Groups {
			gid, ok := parseIdentityID([]byte(g))
			if !ok {
				i := slices.IndexFunc(db.groups, func(e groupEntry) bool { return e.name == g })
				if i < 0 {
					return nil, nil, nil, failf(ExitArrowFailed, "--service %s: SupplementaryGroups=%s: no such group in %s's /etc/group", svc.Name, g, where)
				}
				gid = db.groups[i].gid
			}
			gids = append(gids, gid)
		}
	}
	return svc, gids, root, nil
}

// serviceTmpfiles reads the tmpfiles.d directories the service's system
// would have made at boot, before the service started, and resolves their
// owners in root's /etc/passwd and /etc/group. For a host unit (set is
// its closure) they are those of the files its packages ship, which
// dpkg's lists hold, so the closure has; for an image's or --rootfs's
// unit, every file of that root, which is the arrow's system.
func serviceTmpfiles(o *Options, svc *unit.Service, root unit.FS, set *closure.Set) ([]guest.ServiceDir, error) {
	var names []string
	if set != nil {
		for _, f := range set.Files() {
			if d, n := path.Split(f.Path); (d == "/usr/lib/tmpfiles.d/" || d == "/lib/tmpfiles.d/") && strings.HasSuffix(n, ".conf") && !f.IsDir() {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, nil
		}
	}
	tf, err := unit.LoadTmpfiles(root, names)
	if err != nil {
		return nil, failf(ExitArrowFailed, "--service %s: %w", svc.Name, err)
	}
	if o.Debug {
		for _, f := range tf.Files {
			fmt.Fprintf(o.Log, "arrow: service %s: tmpfiles.d %s\n", svc.Name, f)
		}
		for _, n := range tf.Notes {
			fmt.Fprintf(o.Log, "arrow: service %s: tmpfiles.d %s\n", svc.Name, n)
		}
	}
	if len(tf.Dirs) == 0 {
		return nil, nil
	}
	var passwd, group []byte
	for _, f := range []struct {
		name string
		b    *[]byte
	}{{"/etc/passwd", &passwd}, {"/etc/group", &group}} {
		b, err := root.ReadFile(f.name, maxIdentityFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, failf(ExitArrowFailed, "--service %s: tmpfiles.d owners: %s: %w", svc.Name, f.name, err)
		}
		*f.b = b
	}
	db := newUserDB(passwd, group)
	lookup := func(name string, users bool) (*uint32, bool) {
		if name == "" {
			return nil, true
		}
		if id, ok := parseIdentityID([]byte(name)); ok {
			return &id, true
		}
		if name == "root" {
			id := uint32(0)
			return &id, true
		}
		if users {
			for _, u := range db.users {
				if u.name == name {
					return &u.uid, true
				}
			}
			return nil, false
		}
		for _, g := range db.groups {
			if g.name == name {
				return &g.gid, true
			}
		}
		return nil, false
	}
	var out []guest.ServiceDir
	for _, d := range tf.Dirs {
		uid, ok := lookup(d.User, true)
		if !ok {
			return nil, failf(ExitArrowFailed, "--service %s: tmpfiles.d %s: no user %q in /etc/passwd", svc.Name, d.Where, d.User)
		}
		gid, ok := lookup(d.Group, false)
		if !ok {
			return nil, failf(ExitArrowFailed, "--service %s: tmpfiles.d %s: no group %q in /etc/group", svc.Name, d.Where, d.Group)
		}
		out = append(out, guest.ServiceDir{Path: d.Path, Mode: d.Mode, UID: uid, GID: gid, KeepMode: !d.HasMode, Optional: d.Optional, Replace: d.Replace})
	}
	return out, nil
}

// findService finds and translates o.Service, and says in which root.
func findService(ctx context.Context, o *Options) (*unit.Service, unit.FS, string, error) {
	var root unit.FS
	where := "the host"
	switch {
	case o.Image != "":
		s, err := store.Open(ImagesDir(o.Root))
		if err != nil {
			return nil, nil, "", fail(ExitArrowFailed, err)
		}
		img, err := findImage(ctx, s, o.Image, o.Log)
		if err != nil {
			return nil, nil, "", err
		}
		tree, err := s.Tree(ctx, img)
		if err != nil {
			return nil, nil, "", failf(ExitArrowFailed, "image %s: %w", o.Image, err)
		}
		root, where = newImageFS(ctx, s, img, tree), "image "+o.Image
	case o.RootFS != "":
		root, where = unit.DirFS(o.RootFS), "--rootfs "+o.RootFS
	default:
		root = unit.DirFS("/")
	}
	l, err := unit.Load(root, o.Service)
	if err != nil {
		return nil, nil, "", failf(ExitArrowFailed, "--service %s (in %s): %w", o.Service, where, err)
	}
	svc, err := unit.Translate(l)
	if err != nil {
		return nil, nil, "", failf(ExitArrowFailed, "--service %s (in %s): %w", o.Service, where, err)
	}
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: service %s (%s) from %s\n", svc.Name, svc.Type, strings.Join(svc.Files, ", "))
		for _, n := range svc.Notes {
			fmt.Fprintf(o.Log, "arrow: service %s: %s\n", svc.Name, n)
		}
	}
	return svc, root, where, nil
}

// serviceUser is the --user a service runs as: User= and Group=, unless
// the run gives its own.
func serviceUser(o *Options, svc *unit.Service) string {
	if o.User != "" || svc.User == "" && svc.Group == "" {
		return o.User
	}
	u := svc.User
	if u == "" {
		u = "root"
	}
	if svc.Group != "" {
		u += ":" + svc.Group
	}
	return u
}

// serviceClosure is the closure of a host service's programs: every Exec*=
// command's (with their script interpreters), and includes.
func serviceClosure(ctx context.Context, r *closure.Resolver, svc *unit.Service, includes []string) (*closure.Set, string, error) {
	var main string
	set := closure.NewSet()
	seen := map[string]bool{}
	for i, c := range slices.Concat(svc.Start, svc.Pre, svc.Post, svc.Stop, svc.StopPost) {
		if seen[c.Path] {
			continue
		}
		seen[c.Path] = true
		prog, err := r.Program(ctx, c.Path)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", svc.Name, err)
		}
		var inc []string
		if i == 0 {
			main, inc = prog, includes
		}
		s, err := r.Resolve(ctx, prog, inc)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", svc.Name, err)
		}
		if err := set.Merge(s); err != nil {
			return nil, "", fmt.Errorf("%s: %s: %w", svc.Name, prog, err)
		}
	}
	// Debian's packages name /var/run and /var/lock (memcached's PID file
	// is /var/run/memcached/memcached.pid), which base-files makes links
	// into /run; the guest gets the host's links, its /run being the
	// guest's own.
	for _, l := range runLinks {
		target, err := os.Readlink(l)
		if err != nil {
			continue
		}
		if err := set.Add(closure.File{Path: l, Mode: fs.ModeSymlink | 0o777, Target: target}); err != nil {
			return nil, "", fmt.Errorf("%s: %s: %w", svc.Name, l, err)
		}
	}
	return set, main, nil
}

// runLinks are the host's compatibility links into /run a service's
// guest gets.
var runLinks = []string{"/var/run", "/var/lock"}

// serviceEnv is the environment a service gets beside the image's: what
// systemd sets (USER, LOGNAME, the *_DIRECTORY variables), then its
// Environment=.
func serviceEnv(svc *unit.Service, user string) []string {
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		name = "root"
	}
	env := []string{"USER=" + name, "LOGNAME=" + name}
	for _, k := range []struct{ root, v string }{
		{"/run", "RUNTIME_DIRECTORY"}, {"/var/lib", "STATE_DIRECTORY"}, {"/var/cache", "CACHE_DIRECTORY"},
		{"/var/log", "LOGS_DIRECTORY"}, {"/etc", "CONFIGURATION_DIRECTORY"},
	} {
		var dirs []string
		for _, d := range svc.Dirs {
			if strings.HasPrefix(d.Path, k.root+"/") {
				dirs = append(dirs, d.Path)
			}
		}
		if len(dirs) > 0 {
			env = append(env, k.v+"="+strings.Join(dirs, ":"))
		}
	}
	return append(env, svc.Env...)
}

// applyService makes spec run svc: its commands and type, its
// directories (after tmpDirs, its packages' tmpfiles.d ones), umask, limits, working directory and stop.
func applyService(spec *guest.Spec, svc *unit.Service, groups []uint32, tmpDirs []guest.ServiceDir, o *Options, cred credentials) error {
	cmds := func(in []unit.Command) []guest.Command {
		var out []guest.Command
		for _, c := range in {
			out = append(out, guest.Command{Path: c.Path, Args: c.Args, IgnoreFailure: c.IgnoreFailure, NoExpand: c.NoExpand, Privileged: c.Privileged})
		}
		return out
	}
	gs := &guest.Service{
		Name: svc.Name, Type: svc.Type,
		Pre: cmds(svc.Pre), Start: cmds(svc.Start), Post: cmds(svc.Post), Stop: cmds(svc.Stop), StopPost: cmds(svc.StopPost),
		PIDFile: svc.PIDFile, Unset: svc.Unset, DirOptional: svc.DirOptional, UMask: svc.UMask,
		KillSignal: int(svc.KillSignal), TimeoutStopNanos: int64(svc.TimeoutStop),
	}
	for _, f := range svc.EnvFiles {
		gs.EnvFiles = append(gs.EnvFiles, guest.EnvFile{Path: f.Path, Optional: f.Optional})
	}
	// tmpfiles.d's first, as systemd-tmpfiles runs before any service.
	gs.Dirs = append(gs.Dirs, tmpDirs...)
	for _, d := range svc.Dirs {
		gs.Dirs = append(gs.Dirs, guest.ServiceDir{Path: d.Path, Mode: d.Mode, Owned: d.Owned})
	}
	for _, p := range o.Ports {
		if p.Protocol() == "tcp" && !slices.Contains(gs.LoopbackPorts, p.GuestPort) {
			gs.LoopbackPorts = append(gs.LoopbackPorts, p.GuestPort)
		}
	}
	spec.Service = gs
	spec.Args = svc.Start[0].Args
	if o.Dir == "" {
		switch svc.Dir {
		case "":
			spec.Dir = "/"
		case "~":
			spec.Dir = "/"
			if cred.home != "" {
				spec.Dir = cred.home
			} else if cred.uid == 0 {
				spec.Dir = "/root"
			}
		default:
			spec.Dir = svc.Dir
		}
	}
	for _, g := range groups {
		if !slices.Contains(spec.Groups, g) && g != spec.GID {
			spec.Groups = append(spec.Groups, g)
		}
	}
	for _, r := range svc.Rlimits {
		spec.Rlimits = slices.DeleteFunc(spec.Rlimits, func(x guest.Rlimit) bool { return x.Type == r.Type })
		spec.Rlimits = append(spec.Rlimits, guest.Rlimit{Type: r.Type, Soft: r.Soft, Hard: r.Hard})
	}
	if err := spec.Validate(); err != nil {
		return failf(ExitArrowFailed, "--service %s: %w", svc.Name, err)
	}
	return nil
}

// imageFS is an image's root file system as the store has it, for reading
// units without materializing the image.
type imageFS struct {
	ctx     context.Context
	s       *store.Store
	img     store.Image
	entries map[string]store.Entry
}

func newImageFS(ctx context.Context, s *store.Store, img store.Image, tree []store.Entry) *imageFS {
	m := make(map[string]store.Entry, len(tree))
	for _, e := range tree {
		m[e.Path] = e
	}
	return &imageFS{ctx: ctx, s: s, img: img, entries: m}
}

// resolve follows links in name's directories (and, unless parentOnly,
// its last component) inside the image.
func (f *imageFS) resolve(name string, parentOnly bool) (string, error) {
	if !path.IsAbs(name) {
		return "", fmt.Errorf("%q: %w", name, fs.ErrInvalid)
	}
	todo := strings.Split(strings.Trim(path.Clean(name), "/"), "/")
	if todo[0] == "" {
		todo = nil
	}
	done, links := "/", 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			done = path.Dir(done)
			continue
		}
		if c == "." || c == "" {
			continue
		}
		next := path.Join(done, c)
		if parentOnly && len(todo) == 0 {
			return next, nil
		}
		e, ok := f.entries[next]
		if !ok {
			return "", fs.ErrNotExist
		}
		if e.Type != store.TypeSymlink {
			done = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many symbolic links", name)
		}
		if path.IsAbs(e.Target) {
			done = "/"
		}
		todo = append(strings.Split(strings.Trim(e.Target, "/"), "/"), todo...)
	}
	return done, nil
}

func (f *imageFS) ReadFile(name string, max int64) ([]byte, error) {
	return f.s.ReadFile(f.ctx, f.img, name, max)
}

func (f *imageFS) Readlink(name string) (string, error) {
	p, err := f.resolve(name, true)
	if err != nil {
		return "", err
	}
	e, ok := f.entries[p]
	switch {
	case !ok:
		return "", fs.ErrNotExist
	case e.Type != store.TypeSymlink:
		return "", fmt.Errorf("%s: %w: not a link", name, fs.ErrInvalid)
	}
	return e.Target, nil
}

func (f *imageFS) ReadDir(name string) ([]string, error) {
	p, err := f.resolve(name, false)
	if err != nil {
		return nil, err
	}
	if e, ok := f.entries[p]; !ok {
		return nil, fs.ErrNotExist
	} else if e.Type != store.TypeDir {
		return nil, fmt.Errorf("%s: %w: not a directory", name, fs.ErrInvalid)
	}
	var out []string
	for q := range f.entries {
		if q != "/" && path.Dir(q) == p {
			out = append(out, path.Base(q))
		}
	}
	slices.Sort(out)
	return out, nil
}
