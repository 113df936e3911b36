package run

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
)

const hostPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash
redis:x:103:111::/var/lib/redis:/usr/sbin/nologin
alice:$6$hash:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/bash
+nis
broken:x:notanumber:1::/:/bin/sh
`

const hostGroup = `root:x:0:
adm:x:4:alice,bob
www-data:x:33:
sudo:x:27:alice,bob
postgres:x:104:
redis:x:111:
ssl-cert:x:105:postgres
alice:x:1000:
bob:x:1001:
docker:x:990:bob,alice
nogroup:x:65534:
`

func TestGuestAccounts(t *testing.T) {
	owned := func(uid, gid uint32) *closure.Set {
		s := closure.NewSet()
		if err := s.Add(closure.File{Path: "/var/lib/x", Mode: fs.ModeDir | 0o750, UID: uid, GID: gid}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	static := "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	staticGroups := "root:x:0:\nadm:x:4:\nwww-data:x:33:\nsudo:x:27:\n"
	tests := []struct {
		name          string
		set           *closure.Set
		cred          credentials
		dirs          []guest.ServiceDir
		passwd, group string
	}{
		{
			name:   "root, nothing owned: the static accounts and nobody",
			set:    closure.NewSet(),
			passwd: static,
			group:  staticGroups + "nogroup:x:65534:\n",
		},
		{
			name:   "the run user, its groups, and only its name in member lists",
			set:    closure.NewSet(),
			cred:   credentials{uid: 1000, gid: 1000, groups: []uint32{4, 990}},
			passwd: static + "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
			group:  "root:x:0:\nadm:x:4:alice\nwww-data:x:33:\nsudo:x:27:alice\nalice:x:1000:\ndocker:x:990:alice\nnogroup:x:65534:\n",
		},
		{
			name:   "the owner of a state directory and its group",
			set:    owned(103, 111),
			passwd: static + "redis:x:103:111::/var/lib/redis:/usr/sbin/nologin\n",
			group:  staticGroups + "redis:x:111:\nnogroup:x:65534:\n",
		},
		{
			name:   "a user's primary group comes with it",
			set:    closure.NewSet(),
			cred:   credentials{uid: 101, gid: 101},
			passwd: static + "postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
			group:  staticGroups + "postgres:x:104:\nnogroup:x:65534:\n",
		},
		{
			name: "system accounts a maintainer script names, not people or words alone",
			set: func() *closure.Set {
				s := closure.NewSet()
				s.AddScriptNames([]byte("USER=\"redis\"\nadduser --system --ingroup $USER $USER\n# alice and systemd-network\n"))
				return s
			}(),
			passwd: static + "systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\nredis:x:103:111::/var/lib/redis:/usr/sbin/nologin\n",
			group:  staticGroups + "redis:x:111:\nnogroup:x:65534:\n",
		},
		{
			name: "the owners of tmpfiles.d directories",
			set:  closure.NewSet(),
			dirs: func() []guest.ServiceDir {
				uid, gid := uint32(103), uint32(111)
				return []guest.ServiceDir{{Path: "/run/redis", UID: &uid, GID: &gid}, {Path: "/run/x"}}
			}(),
			passwd: static + "redis:x:103:111::/var/lib/redis:/usr/sbin/nologin\n",
			group:  staticGroups + "redis:x:111:\nnogroup:x:65534:\n",
		},
		{
			name:   "a numeric user with no entry adds nothing",
			set:    closure.NewSet(),
			cred:   credentials{uid: 4242, gid: 4242},
			passwd: static,
			group:  staticGroups + "nogroup:x:65534:\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, g := guestAccounts([]byte(hostPasswd), []byte(hostGroup), tt.set, tt.cred, tt.dirs...)
			if string(p) != tt.passwd {
				t.Errorf("passwd:\n%s\nwant:\n%s", p, tt.passwd)
			}
			if string(g) != tt.group {
				t.Errorf("group:\n%s\nwant:\n%s", g, tt.group)
			}
			if strings.Contains(string(p), "$6$") {
				t.Error("a password hash reached the guest")
			}
		})
	}
}

func FuzzGuestAccounts(f *testing.F) {
	f.Add([]byte(hostPasswd), []byte(hostGroup), uint32(1000))
	f.Fuzz(func(t *testing.T, passwd, group []byte, uid uint32) {
		p, g := guestAccounts(passwd, group, closure.NewSet(), credentials{uid: uid, gid: uid})
		for _, line := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
			if line == "" {
				continue
			}
			fields := strings.Split(line, ":")
			if len(fields) != 7 || fields[1] != "x" {
				t.Fatalf("passwd line %q", line)
			}
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(g), "\n"), "\n") {
			if line == "" {
				continue
			}
			if fields := strings.Split(line, ":"); len(fields) != 4 || fields[1] != "x" {
				t.Fatalf("group line %q", line)
			}
		}
	})
}

func TestAddAccounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "accounts")
	for i := 0; i < 2; i++ { // the second time, the files exist
		set := closure.NewSet()
		if err := addAccounts(dir, set, []byte("root:x:0:0::/root:/bin/sh\n"), []byte("root:x:0:\n")); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/etc/passwd", "/etc/group"} {
			f, ok := set.Lookup(p)
			if !ok || f.Mode != 0o644 || f.Inode == 0 {
				t.Fatalf("%s: %+v, %v", p, f, ok)
			}
			if b, err := os.ReadFile(f.Source); err != nil || !strings.HasPrefix(string(b), "root:x:0:") {
				t.Fatalf("%s: %q, %v", f.Source, b, err)
			}
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("accounts directory: %v, %v", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("%d files, want 2", len(entries))
	}
}

func TestClosureTooBig(t *testing.T) {
	sized := func(mib int64) *closure.Set {
		s := closure.NewSet()
		if err := s.Add(closure.File{Path: "/f", Mode: 0o644, Size: mib << 20, Source: "/f"}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		set    *closure.Set
		memMiB int
		want   bool
	}{
		{sized(34), 256, false},   // python3
		{sized(64), 256, false},   // a quarter, exactly
		{sized(65), 256, true},    // more
		{sized(296), 256, true},   // PostgreSQL's initdb
		{sized(296), 2048, false}, // in a guest it fits in
	}
	for _, tt := range tests {
		if got := closureTooBig(tt.set, tt.memMiB); got != tt.want {
			t.Errorf("closureTooBig(%d MiB, %d MiB) = %v, want %v", tt.set.Bytes()>>20, tt.memMiB, got, tt.want)
		}
	}
}
