package closure

import (
	"context"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestScriptPaths(t *testing.T) {
	tests := []struct {
		name   string
		script string
		dirs   []string
		copies [][2]string
	}{
		{
			name:   "install -d",
			script: "install -d -m 0750 -o redis -g redis /var/lib/redis\n",
			dirs:   []string{"/var/lib/redis"},
		},
		{
			name:   "/run, by its old name too",
			script: "install -d -m 2775 -o postgres -g postgres /var/run/postgresql /run/x /run\n",
			dirs:   []string{"/var/run/postgresql", "/run/x"},
		},
		{
			name:   "mkdir and chown, quoted",
			script: "mkdir -p \"/var/lib/redis\"; chown redis:redis '/var/log/redis'\n",
			dirs:   []string{"/var/lib/redis", "/var/log/redis"},
		},
		{
			name:   "expansions and comments are skipped",
			script: "mkdir -p $DIR /var/lib/$pkg /var/cache/x*\n# mkdir /var/lib/commented\n",
		},
		{
			name:   "only state directories",
			script: "rm -f /etc/foo /usr/share/x; mkdir /var/lib /var/tmp/x /runaway\n",
		},
		{
			name:   "cp of a package file",
			script: "  mkdir -p /var/www/html\n  cp /usr/share/nginx/html/index.html /var/www/html/index.nginx-debian.html\n",
			dirs:   []string{"/var/www/html", "/var/www/html/index.nginx-debian.html"},
			copies: [][2]string{{"/usr/share/nginx/html/index.html", "/var/www/html/index.nginx-debian.html"}},
		},
		{
			name:   "cp with an option or expansion is not literal",
			script: "cp -a /usr/share/a /var/lib/b\ncp $SRC /var/lib/c\n",
			dirs:   []string{"/var/lib/b", "/var/lib/c"},
		},
		{
			name:   "duplicates once, cleaned",
			script: "mkdir /var/lib/a/ /var/lib/a /var/lib//a\n",
			dirs:   []string{"/var/lib/a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs, copies := scriptPaths([]byte(tt.script))
			if !slices.Equal(dirs, tt.dirs) {
				t.Errorf("dirs = %q, want %q", dirs, tt.dirs)
			}
			if !slices.Equal(copies, tt.copies) {
				t.Errorf("copies = %q, want %q", copies, tt.copies)
			}
		})
	}
}

func TestOwnConfigDir(t *testing.T) {
	tests := []struct {
		pkg, dir string
		want     bool
	}{
		{"nginx-common", "/etc/nginx", true},
		{"nginx-common", "/etc/nginx/sites-enabled", true},
		{"nginx", "/etc/nginx/conf.d", true},
		{"redis-server", "/etc/redis", true},
		{"nginx-common", "/etc", false},
		{"nginx-common", "/etc/default", false},
		{"nginx-common", "/etc/logrotate.d", false},
		{"nginx-common", "/etc/nginxx", false},
		{"nginx-common", "/usr/share/nginx", false},
		{"python3", "/etc/python3", true},
		{"python3", "/etc/python3.11", false},
	}
	for _, tt := range tests {
		if got := ownConfigDir(tt.pkg, tt.dir); got != tt.want {
			t.Errorf("ownConfigDir(%q, %q) = %v, want %v", tt.pkg, tt.dir, got, tt.want)
		}
	}
}

func TestScriptPathsBounded(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		b.WriteString("mkdir /var/lib/d" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "/" + itoa(i) + "\n")
	}
	dirs, _ := scriptPaths([]byte(b.String()))
	if len(dirs) > maxScriptPaths {
		t.Errorf("%d paths, want at most %d", len(dirs), maxScriptPaths)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}

func FuzzScriptPaths(f *testing.F) {
	f.Add([]byte("install -d -m 2775 -o postgres /var/run/postgresql\ncp /usr/share/a /var/www/b\n"))
	f.Add([]byte("mkdir -p \"/var/lib/redis\"; # x\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		dirs, copies := scriptPaths(script)
		if len(dirs) > maxScriptPaths || len(copies) > maxScriptPaths {
			t.Fatalf("%d dirs, %d copies", len(dirs), len(copies))
		}
		for _, d := range dirs {
			if !path.IsAbs(d) || path.Clean(d) != d || strings.Contains(d, "$") {
				t.Fatalf("bad dir %q", d)
			}
			if !under(d, stateDirs) && !strings.HasPrefix(d, "/run/") && !strings.HasPrefix(d, "/var/run/") {
				t.Fatalf("dir %q outside the state directories", d)
			}
		}
		for _, c := range copies {
			for _, p := range c {
				if !path.IsAbs(p) || path.Clean(p) != p {
					t.Fatalf("bad copy path %q", p)
				}
			}
		}
	})
}

// TestHostPackageDirs checks the directories and configuration of Debian's
// nginx and redis-server (installed by setup.sh): the directories their
// packages own and their maintainer scripts make are in the guest, with
// the host's mode and owner and nothing of the host's content.
func TestHostPackageDirs(t *testing.T) {
	for _, p := range []string{"/usr/sbin/nginx", "/usr/bin/redis-server", "/usr/lib/postgresql/15/bin/postgres"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v (setup.sh installs it)", p, err)
		}
	}
	r := &Resolver{Root: "/", Path: "/usr/sbin:/usr/bin"}
	nginx, err := r.Resolve(context.Background(), "/usr/sbin/nginx", nil)
	if err != nil {
		t.Fatal(err)
	}
	redis, err := r.Resolve(context.Background(), "/usr/bin/redis-server", nil)
	if err != nil {
		t.Fatal(err)
	}
	postgres, err := r.Resolve(context.Background(), "/usr/lib/postgresql/15/bin/postgres", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The socket directory is found by its old name, a link to /run.
	if f, ok := postgres.Lookup("/var/run"); !ok || !f.IsSymlink() {
		t.Errorf("/var/run: %+v, %v; want the host's link to /run", f, ok)
	}
	tests := []struct {
		set  *Set
		dir  string
		what string
	}{
		{nginx, "/var/lib/nginx", "listed by nginx-common"},
		{nginx, "/var/log/nginx", "listed by nginx-common"},
		{nginx, "/etc/nginx/conf.d", "an empty listed directory"},
		{redis, "/var/lib/redis", "made by redis-server's postinst"},
		{redis, "/var/log/redis", "made by redis-server's postinst"},
		{postgres, "/run/postgresql", "made by postgresql-common's postinst, as /var/run/postgresql"},
	}
	for _, tt := range tests {
		f, ok := tt.set.Lookup(tt.dir)
		if !ok {
			t.Errorf("%s (%s) is not in the guest", tt.dir, tt.what)
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(tt.dir, &st); err != nil {
			t.Fatal(err)
		}
		if !f.IsDir() || uint32(f.Mode.Perm()) != st.Mode&0o777 || f.UID != st.Uid || f.GID != st.Gid {
			t.Errorf("%s: mode %v owner %d:%d, want the host's %o %d:%d", tt.dir, f.Mode, f.UID, f.GID, st.Mode&0o7777, st.Uid, st.Gid)
		}
		if tt.dir == "/etc/nginx/conf.d" {
			continue
		}
		for _, g := range tt.set.Files() {
			if strings.HasPrefix(g.Path, tt.dir+"/") {
				t.Errorf("%s holds the host's %s", tt.dir, g.Path)
			}
		}
	}
	// Nothing of the host's shared configuration: /etc/passwd is Arrow's
	// to write, /etc/default holds every package's settings.
	for _, s := range []*Set{nginx, redis} {
		for _, p := range []string{"/etc/passwd", "/etc/group", "/etc/hostname", "/etc/default/locale"} {
			if _, ok := s.Lookup(p); ok {
				t.Errorf("the host's %s is in the guest", p)
			}
		}
	}
	// The default site, enabled by nginx-common's postinst.
	if f, ok := nginx.Lookup("/etc/nginx/sites-enabled/default"); !ok || !f.IsSymlink() {
		t.Errorf("/etc/nginx/sites-enabled/default: %+v, %v; want the host's symlink", f, ok)
	}
	// The welcome page, copied by the postinst from nginx-common's file:
	// the package's content, not the host's copy.
	f, ok := nginx.Lookup("/var/www/html/index.nginx-debian.html")
	if !ok || f.Source != "/usr/share/nginx/html/index.html" {
		t.Errorf("welcome page: %+v, %v; want /usr/share/nginx/html/index.html", f, ok)
	}
}
