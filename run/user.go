package run

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/spec"
)

// Limits on an image's /etc/passwd and /etc/group, which are untrusted.
const (
	// maxIdentityFile is the largest passwd or group file read.
	maxIdentityFile = 4 << 20
	// maxIdentityLine is the longest line kept; longer ones are skipped.
	maxIdentityLine = 64 << 10
	// maxGroups is the most supplementary groups given to the
	// application (the guest protocol's limit).
	maxGroups = 64
)

// ErrUnknownUser is returned when a user or group name is not in the
// image's /etc/passwd or /etc/group.
var ErrUnknownUser = errors.New("unknown user")

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

// groupEntry is one line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// userDB is a root file system's user database: its /etc/passwd and
// /etc/group. A nil *userDB is a host program's guest, which has none.
type userDB struct {
	users  []passwdEntry
	groups []groupEntry
	// hasPasswd and hasGroup say whether the files exist.
	hasPasswd, hasGroup bool
	// host says the files are the host's (a host program's names).
	host bool
}

// newUserDB parses the content of /etc/passwd and /etc/group; nil means
// the file does not exist.
func newUserDB(passwd, group []byte) *userDB {
	return &userDB{
		users:     parsePasswd(passwd),
		groups:    parseGroup(group),
		hasPasswd: passwd != nil,
		hasGroup:  group != nil,
	}
}

// identityLines calls f with the fields of each line of b that is not
// empty, not a comment and not too long.
func identityLines(b []byte, f func(fields [][]byte)) {
	if len(b) > maxIdentityFile {
		b = b[:maxIdentityFile]
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 || len(line) > maxIdentityLine || line[0] == '#' || bytes.IndexByte(line, 0) >= 0 {
			continue
		}
		f(bytes.Split(line, []byte{':'}))
	}
}

// parsePasswd parses /etc/passwd (name:password:uid:gid:gecos:home:shell),
// skipping malformed lines and NIS entries (+name, -name).
func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	identityLines(b, func(f [][]byte) {
		if len(f) < 4 || !validName(f[0]) {
			return
		}
		uid, ok1 := parseIdentityID(f[2])
		gid, ok2 := parseIdentityID(f[3])
		if !ok1 || !ok2 {
			return
		}
		e := passwdEntry{name: string(f[0]), uid: uid, gid: gid}
		if len(f) > 5 && path.IsAbs(string(f[5])) {
			e.home = path.Clean(string(f[5]))
		}
		out = append(out, e)
	})
	return out
}

// parseGroup parses /etc/group (name:password:gid:member,member,...),
// skipping malformed lines.
func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	identityLines(b, func(f [][]byte) {
		if len(f) < 3 || !validName(f[0]) {
			return
		}
		gid, ok := parseIdentityID(f[2])
		if !ok {
			return
		}
		e := groupEntry{name: string(f[0]), gid: gid}
		if len(f) > 3 {
			for _, m := range bytes.Split(f[3], []byte{','}) {
				if m = bytes.TrimSpace(m); validName(m) {
					e.members = append(e.members, string(m))
				}
			}
		}
		out = append(out, e)
	})
	return out
}

// validName accepts what spec.ParseUser accepts as a name, so that a
// name in the files can be asked for.
func validName(b []byte) bool {
	if len(b) == 0 || b[0] == '+' || b[0] == '-' {
		return false
	}
	u, err := spec.ParseUser(string(b))
	return err == nil && u.Name == string(b) && !u.HasGroup
}

// parseIdentityID parses a decimal ID below 2^32-1.
func parseIdentityID(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil || n > 1<<32-2 {
		return 0, false
	}
	return uint32(n), true
}

// credentials are who the application runs as.
type credentials struct {
	uid, gid uint32
	groups   []uint32
	// home is the user's home directory from /etc/passwd; empty when
	// the user has no entry.
	home string
}

// defaultHome is HOME for a process with credentials c when neither the
// image nor the user set it, as docker picks it: the user's home from
// /etc/passwd, else /root for root and / for anyone else. The application
// and exec share it, so that a process exec'd as the application's user
// sees the same HOME.
func (c credentials) defaultHome() string {
	switch {
	case c.home != "":
		return c.home
	case c.uid == 0:
		return "/root"
	default:
		return "/"
	}
}

// resolveUser works out the credentials of user (spec.ParseUser's syntax,
// empty for root) as docker does: a name is looked up in db's /etc/passwd
// and a group name in its /etc/group; a number is an ID, whether or not
// it has an entry. Without a group the user's primary group from
// /etc/passwd applies (the UID itself when the user has no entry), plus
// the groups /etc/group lists the user in. "root" means 0 even without an
// entry. With a nil db (a host program) only numbers and root work.
func resolveUser(user string, db *userDB) (credentials, error) {
	var c credentials
	u := spec.User{}
	if user != "" {
		var err error
		if u, err = spec.ParseUser(user); err != nil {
			return c, err
		}
	}
	var entry *passwdEntry
	if db != nil {
		for i := range db.users {
			e := &db.users[i]
			if u.Name != "" && e.name == u.Name || u.Name == "" && e.uid == u.UID {
				entry = e
				break
			}
		}
	}
	switch {
	case entry != nil:
		c.uid, c.gid, c.home = entry.uid, entry.gid, entry.home
	case u.Name == "root":
		c.uid, c.gid = 0, 0
	case u.Name != "":
		return c, unknownName(db, "user", u.Name, "/etc/passwd", db != nil && db.hasPasswd)
	default:
		c.uid, c.gid = u.UID, u.UID
	}
	if u.HasGroup {
		// An explicit group replaces the primary and supplementary ones.
		switch {
		case u.Group == "":
			c.gid = u.GID
		default:
			var found bool
			if db != nil {
				for _, g := range db.groups {
					if g.name == u.Group {
						c.gid, found = g.gid, true
						break
					}
				}
			}
			switch {
			case found:
			case u.Group == "root":
				c.gid = 0
			default:
				return c, unknownName(db, "group", u.Group, "/etc/group", db != nil && db.hasGroup)
			}
		}
		return c, nil
	}
	if entry != nil {
		for _, g := range db.groups {
			if slices.Contains(g.members, entry.name) && !slices.Contains(c.groups, g.gid) {
				c.groups = append(c.groups, g.gid)
				if len(c.groups) == maxGroups {
					break
				}
			}
		}
	}
	return c, nil
}

// unknownName is the error for a user or group name that is not in file.
func unknownName(db *userDB, what, name, file string, exists bool) error {
	switch {
	case db == nil:
		return fmt.Errorf("%w: %s %q: names are looked up in an image's or root file system's %s; a host program takes numeric IDs (or root)", ErrUnknownUser, what, name, file)
	case !exists:
		return fmt.Errorf("%w: %s %q: the root file system has no %s", ErrUnknownUser, what, name, file)
	}
	if db.host {
		return fmt.Errorf("%w: no %s %q in the host's %s", ErrUnknownUser, what, name, file)
	}
	return fmt.Errorf("%w: no %s %q in the root file system's %s", ErrUnknownUser, what, name, file)
}

// readDirUserDB reads the user database of the root file system at dir,
// resolving symbolic links inside it, never out of it.
func readDirUserDB(dir string) (*userDB, error) {
	passwd, err := readInRoot(dir, "etc/passwd")
	if err != nil {
		return nil, err
	}
	group, err := readInRoot(dir, "etc/group")
	if err != nil {
		return nil, err
	}
	return newUserDB(passwd, group), nil
}

// readInRoot reads the regular file name under root as if root were "/":
// symbolic links and ".." do not leave it. It returns nil, nil when the
// file does not exist.
func readInRoot(root, name string) ([]byte, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fd, err := unix.Openat2(int(d.Fd()), name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, root, err)
	}
	f := os.NewFile(uintptr(fd), path.Join(root, name))
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", f.Name())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIdentityFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.Name(), maxIdentityFile)
	}
	return b, nil
}
