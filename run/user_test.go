package run

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
nohome:x:1002:1002::relative:/bin/sh
broken:x:notanumber:1:::
short:x:7
+nis::::::
big:x:4294967295:1:::
dup:x:2000:2000::/first:
dup:x:2001:2001::/second:
win:x:3000:3000::/home/win:/bin/sh` + "\r\n" + `last:x:4000:4000::/home/last:/bin/sh`

const testGroup = `root:x:0:
wheel:x:10:root,alice
users:x:100:alice, bob
staff:x:50:
alice:x:1000:
bad:x:-1:alice
dev:x:60:alice,alice,nobody
`

func TestResolveUser(t *testing.T) {
	db := newUserDB([]byte(testPasswd), []byte(testGroup))
	empty := newUserDB(nil, nil)
	host := newUserDB([]byte(testPasswd), []byte(testGroup))
	host.host = true
	tests := []struct {
		name   string
		user   string
		db     *userDB
		uid    uint32
		gid    uint32
		groups []uint32
		home   string
		err    string
	}{
		{"root by default", "", db, 0, 0, []uint32{10}, "/root", ""},
		{"root by name", "root", db, 0, 0, []uint32{10}, "/root", ""},
		{"name", "alice", db, 1000, 1000, []uint32{10, 100, 60}, "/home/alice", ""},
		{"uid with an entry", "1000", db, 1000, 1000, []uint32{10, 100, 60}, "/home/alice", ""},
		{"primary group from passwd", "bob", db, 1001, 100, []uint32{100}, "/home/bob", ""},
		{"name:group", "alice:staff", db, 1000, 50, nil, "/home/alice", ""},
		{"name:gid", "alice:7", db, 1000, 7, nil, "/home/alice", ""},
		{"uid:group", "1234:staff", db, 1234, 50, nil, "", ""},
		{"uid:gid", "1234:5678", db, 1234, 5678, nil, "", ""},
		{"uid without entry", "1234", db, 1234, 1234, nil, "", ""},
		{"relative home ignored", "nohome", db, 1002, 1002, nil, "", ""},
		{"first of duplicates", "dup", db, 2000, 2000, nil, "/first", ""},
		{"CRLF line", "win", db, 3000, 3000, nil, "/home/win", ""},
		{"last line without newline", "last", db, 4000, 4000, nil, "/home/last", ""},
		{"root group by name", "alice:root", db, 1000, 0, nil, "/home/alice", ""},
		{"unknown user", "mallory", db, 0, 0, nil, "", `no user "mallory" in the root file system's /etc/passwd`},
		{"unknown group", "alice:nogroup", db, 0, 0, nil, "", `no group "nogroup" in the root file system's /etc/group`},
		{"unknown user of the host", "mallory", host, 0, 0, nil, "", `no user "mallory" in the host's /etc/passwd`},
		{"name of the host", "alice", host, 1000, 1000, []uint32{10, 100, 60}, "/home/alice", ""},
		{"malformed line not a user", "broken", db, 0, 0, nil, "", "no user"},
		{"NIS line not a user", "+nis", db, 0, 0, nil, "", "ParseUser"},
		{"no passwd", "alice", empty, 0, 0, nil, "", "has no /etc/passwd"},
		{"no passwd, root", "root", empty, 0, 0, nil, "", ""},
		{"no passwd, uid", "5", empty, 5, 5, nil, "", ""},
		{"no group file", "5:staff", empty, 0, 0, nil, "", "has no /etc/group"},
		{"host program, numbers", "1000:50", nil, 1000, 50, nil, "", ""},
		{"host program, root", "root:root", nil, 0, 0, nil, "", ""},
		{"host program, name", "alice", nil, 0, 0, nil, "", "a host program takes numeric IDs"},
		{"bad syntax", "a b", db, 0, 0, nil, "", "printable ASCII"},
		{"empty group", "alice:", db, 0, 0, nil, "", "group is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := resolveUser(tt.user, tt.db)
			if tt.err != "" {
				if err == nil || tt.err != "ParseUser" && !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("resolveUser(%q) = %+v, %v; want error %q", tt.user, c, err, tt.err)
				}
				return
			}
			if err != nil || c.uid != tt.uid || c.gid != tt.gid || !slices.Equal(c.groups, tt.groups) || c.home != tt.home {
				t.Fatalf("resolveUser(%q) = %+v, %v; want %d:%d %v %q", tt.user, c, err, tt.uid, tt.gid, tt.groups, tt.home)
			}
		})
	}
	if _, err := resolveUser("mallory", db); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v is not ErrUnknownUser", err)
	}
}

func TestResolveUserLimits(t *testing.T) {
	// More groups than the guest takes: the first 64.
	var g strings.Builder
	for i := range 100 {
		g.WriteString("g" + strings.Repeat("x", i) + ":x:" + itoa(100+i) + ":u\n")
	}
	db := newUserDB([]byte("u:x:1:1::/:\n"), []byte(g.String()))
	c, err := resolveUser("u", db)
	if err != nil || len(c.groups) != maxGroups || c.groups[0] != 100 {
		t.Errorf("groups %v, %v", c.groups, err)
	}
	// An overlong line is skipped, the next one read.
	long := "x:x:5:5::/" + strings.Repeat("a", maxIdentityLine) + ":\nu:x:1:1::/:\n"
	if c, err := resolveUser("u", newUserDB([]byte(long), nil)); err != nil || c.uid != 1 {
		t.Errorf("after a long line: %+v %v", c, err)
	}
	if _, err := resolveUser("x", newUserDB([]byte(long), nil)); err == nil {
		t.Error("an overlong line was parsed")
	}
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

func TestReadDirUserDB(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("evil:x:0:0::/:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(root, "etc"), 0o755))
	// An absolute symlink resolves inside the root, not on the host.
	must(os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "etc", "passwd")))
	must(os.WriteFile(filepath.Join(root, "etc", "group"), []byte("staff:x:50:\n"), 0o644))
	db, err := readDirUserDB(root)
	if err != nil {
		t.Fatal(err)
	}
	if db.hasPasswd || len(db.users) != 0 || !db.hasGroup || len(db.groups) != 1 {
		t.Errorf("db %+v: followed a link out of the root?", db)
	}
	// Inside the root, links work.
	must(os.Remove(filepath.Join(root, "etc", "passwd")))
	must(os.WriteFile(filepath.Join(root, "etc", "passwd.real"), []byte("app:x:10:20::/srv:\n"), 0o644))
	must(os.Symlink("/etc/passwd.real", filepath.Join(root, "etc", "passwd")))
	if db, err = readDirUserDB(root); err != nil || len(db.users) != 1 || db.users[0].name != "app" {
		t.Errorf("db %+v, %v", db, err)
	}
	// Not a regular file: an error, not a hang.
	must(os.Remove(filepath.Join(root, "etc", "group")))
	must(os.Mkdir(filepath.Join(root, "etc", "group"), 0o755))
	if _, err := readDirUserDB(root); err == nil {
		t.Error("a directory as /etc/group accepted")
	}
}

// FuzzUserDB: no passwd or group file makes parsing or resolution panic,
// and what resolves is consistent with the files.
func FuzzUserDB(f *testing.F) {
	f.Add([]byte(testPasswd), []byte(testGroup), "alice")
	f.Add([]byte("a:x:1:2::/h:\n"), []byte("g:x:3:a\n"), "a:g")
	f.Add([]byte(":::::::\n\n\x00:x:1:1\n"), []byte("::\n"), "1:1")
	f.Add([]byte("u:x:99999999999:1::/:\n"), []byte("g:x:1:u,u,u\n"), "u")
	f.Fuzz(func(t *testing.T, passwd, group []byte, user string) {
		db := newUserDB(passwd, group)
		for _, e := range db.users {
			if e.name == "" || strings.ContainsAny(e.name, ":\n\x00") || e.uid == 1<<32-1 {
				t.Fatalf("bad entry %+v", e)
			}
		}
		c, err := resolveUser(user, db)
		if err != nil {
			return
		}
		if len(c.groups) > maxGroups {
			t.Fatalf("%d groups", len(c.groups))
		}
		if c.home != "" && !strings.HasPrefix(c.home, "/") {
			t.Fatalf("home %q", c.home)
		}
	})
}

func TestDefaultHome(t *testing.T) {
	for _, tc := range []struct {
		name string
		cred credentials
		want string
	}{
		{"passwd home", credentials{uid: 1000, home: "/home/alice"}, "/home/alice"},
		{"passwd home for root", credentials{uid: 0, home: "/var/root"}, "/var/root"},
		{"root without entry", credentials{uid: 0}, "/root"},
		{"user without entry", credentials{uid: 7, gid: 8}, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cred.defaultHome(); got != tc.want {
				t.Fatalf("defaultHome() = %q, want %q", got, tc.want)
			}
		})
	}
}
