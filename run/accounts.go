package run

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
)

// Accounts every host program's guest has (see guestAccounts).
const (
	// maxStaticID bounds the IDs of Debian's static system accounts, the
	// ones base-passwd gives every Debian system with the same numbers
	// (root, daemon, bin, www-data, backup, ...): a program may name one
	// in its configuration (nginx's "user www-data"), which nothing in its
	// closure says.
	maxStaticID = 99
	// nobodyID is nobody's and nogroup's.
	nobodyID = 65534
)

// guestAccounts returns the /etc/passwd and /etc/group of a host
// program's guest: from the host's passwd and group, only the accounts
// the guest's files and application can name.
//
//   - users: root, Debian's static system accounts (IDs below 100),
//     nobody, the user the application runs as, the owners of the
//     closure's files (redis owns /var/lib/redis) and of the
//     service's tmpfiles.d directories, dirs, and the system
//     accounts (IDs below 1000) a maintainer script of an included
//     package names (memcached's postinst creates memcache, which
//     memcached switches to by a name only its configuration holds);
//   - groups: root, the static system groups, nogroup, the application's
//     group and supplementary groups, the primary groups of the users
//     kept, the groups owning the closure's files (adm owns
//     /var/log/nginx) and dirs, and the system groups a maintainer
//     script names.
//
// Every other account of the host (its people, the system accounts of
// other packages) stays out, and so do passwords: the password field is
// "x" (shadow and gshadow are never in the guest), and group member lists
// hold only the users kept. Lines are otherwise the host's, in the host's
// order.
func guestAccounts(passwd, group []byte, set *closure.Set, cred credentials, dirs ...guest.ServiceDir) (outPasswd, outGroup []byte) {
	uids := map[uint32]bool{0: true, nobodyID: true, cred.uid: true}
	gids := map[uint32]bool{0: true, nobodyID: true, cred.gid: true}
	for _, g := range cred.groups {
		gids[g] = true
	}
	if set != nil {
		for _, f := range set.Files() {
			uids[f.UID] = true
			gids[f.GID] = true
		}
	}
	for _, d := range dirs {
		if d.UID != nil {
			uids[*d.UID] = true
		}
		if d.GID != nil {
			gids[*d.GID] = true
		}
	}
	var pw bytes.Buffer
	users := make(map[string]bool)
	identityLines(passwd, func(f [][]byte) {
		if len(f) != 7 || !validName(f[0]) {
			return
		}
		uid, ok1 := parseIdentityID(f[2])
		gid, ok2 := parseIdentityID(f[3])
		if !ok1 || !ok2 || !(uids[uid] || uid <= maxStaticID || scriptAccount(set, f[0], uid)) || users[string(f[0])] {
			return
		}
		users[string(f[0])] = true
		gids[gid] = true
		f[1] = []byte("x")
		pw.Write(bytes.Join(f, []byte{':'}))
		pw.WriteByte('\n')
	})
	var gr bytes.Buffer
	groups := make(map[string]bool)
	identityLines(group, func(f [][]byte) {
		if len(f) != 4 || !validName(f[0]) {
			return
		}
		gid, ok := parseIdentityID(f[2])
		if !ok || !(gids[gid] || gid <= maxStaticID || scriptAccount(set, f[0], gid)) || groups[string(f[0])] {
			return
		}
		groups[string(f[0])] = true
		var members [][]byte
		for _, m := range bytes.Split(f[3], []byte{','}) {
			if users[string(m)] && !slices.ContainsFunc(members, func(b []byte) bool { return bytes.Equal(b, m) }) {
				members = append(members, m)
			}
		}
		fmt.Fprintf(&gr, "%s:x:%d:%s\n", f[0], gid, bytes.Join(members, []byte{','}))
	})
	return pw.Bytes(), gr.Bytes()
}

// maxSystemID bounds the IDs of system accounts, which adduser --system
// gives below 1000; people's accounts start there.
const maxSystemID = 999

// scriptAccount reports whether the account name with ID id is a system
// account a maintainer script of set's packages names.
func scriptAccount(set *closure.Set, name []byte, id uint32) bool {
	return set != nil && id <= maxSystemID && set.ScriptNames(string(name))
}

// addAccounts puts the guest's /etc/passwd and /etc/group (guestAccounts)
// into set. Their content is written under dir, each file named by its
// sum, so that the closure's caches see the same file for the same
// accounts.
func addAccounts(dir string, set *closure.Set, passwd, group []byte) error {
	if err := cachefile.PrivateDir(dir); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	for _, a := range []struct {
		guest string
		data  []byte
	}{{"/etc/passwd", passwd}, {"/etc/group", group}} {
		sum := sha256.Sum256(a.data)
		p := filepath.Join(dir, hex.EncodeToString(sum[:]))
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			if err := cachefile.WriteFile(p, a.data, cachefile.FileMode); err != nil {
				return fmt.Errorf("accounts: %w", err)
			}
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return fmt.Errorf("accounts: %w", err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Size != int64(len(a.data)) {
			return fmt.Errorf("accounts: %s is not the file Arrow wrote", p)
		}
		f := closure.File{
			Path: a.guest, Source: p, Mode: 0o644,
			Size: st.Size, ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), ChangeTime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
			Inode: st.Ino, Device: uint64(st.Dev),
		}
		if err := set.Add(f); err != nil {
			return fmt.Errorf("accounts: %w", err)
		}
	}
	return nil
}
