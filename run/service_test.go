package run

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/unit"
)

// TestServiceClosureHost: a host unit's closure holds every Exec*=
// program with its script interpreter and its package's files: Debian's
// memcached unit runs a perl wrapper that execs /usr/bin/memcached, a file
// of the wrapper's package. (/etc/memcached.conf, which memcached's
// postinst copies, is the closure's to add: image/closure.)
func TestServiceClosureHost(t *testing.T) {
	l, err := unit.Load(unit.DirFS("/"), "memcached")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := unit.Translate(l)
	if err != nil {
		t.Fatal(err)
	}
	set, main, err := serviceClosure(context.Background(), &closure.Resolver{Root: "/"}, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if main != "/usr/share/memcached/scripts/systemd-memcached-wrapper" {
		t.Errorf("main program %q", main)
	}
	for _, p := range []string{main, "/usr/bin/perl", "/usr/bin/memcached"} {
		if _, ok := set.Lookup(p); !ok {
			t.Errorf("%s is not in the closure", p)
		}
	}
	// Its configuration's -P /var/run/memcached/memcached.pid.
	if f, ok := set.Lookup("/var/run"); !ok || !f.IsSymlink() || f.Target != "/run" {
		t.Errorf("/var/run: %+v, want the host's link to /run", f)
	}
}

func TestServiceUser(t *testing.T) {
	tests := []struct {
		flag, user, group, want string
	}{
		{"", "", "", ""},
		{"", "redis", "", "redis"},
		{"", "redis", "redis", "redis:redis"},
		{"", "", "adm", "root:adm"},
		{"1000", "redis", "redis", "1000"},
	}
	for _, tt := range tests {
		o := &Options{Config: api.Config{User: tt.flag}}
		if got := serviceUser(o, &unit.Service{User: tt.user, Group: tt.group}); got != tt.want {
			t.Errorf("serviceUser(--user %q, User=%q, Group=%q) = %q, want %q", tt.flag, tt.user, tt.group, got, tt.want)
		}
	}
}

func TestApplyService(t *testing.T) {
	svc := &unit.Service{
		Name: "redis-server.service", Type: unit.TypeNotify,
		Start:   []unit.Command{{Path: "/usr/bin/redis-server", Args: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf"}}},
		Stop:    []unit.Command{{Path: "/bin/kill", Args: []string{"/bin/kill", "$MAINPID"}, IgnoreFailure: true}},
		User:    "redis",
		UMask:   0o007,
		Rlimits: []unit.Rlimit{{Type: "nofile", Soft: 65535, Hard: 65535}},
		Dirs: []unit.Dir{{Path: "/run/redis", Mode: 0o2755, Owned: true}, {Path: "/var/lib/redis", Mode: 0o750, Owned: true},
			{Path: "/etc/redis", Mode: 0o755}},
		Env:         []string{"A=1"},
		EnvFiles:    []unit.EnvFile{{Path: "/etc/default/redis", Optional: true}},
		Dir:         "~",
		KillSignal:  unix.SIGQUIT,
		TimeoutStop: 5 * time.Second,
	}
	env := serviceEnv(svc, "redis:redis")
	wantEnv := []string{"USER=redis", "LOGNAME=redis", "RUNTIME_DIRECTORY=/run/redis", "STATE_DIRECTORY=/var/lib/redis", "CONFIGURATION_DIRECTORY=/etc/redis", "A=1"}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("serviceEnv = %q, want %q", env, wantEnv)
	}
	o := &Options{Config: api.Config{Ports: []api.Port{{HostPort: 1, GuestPort: 6379}, {HostPort: 2, GuestPort: 53, Proto: "udp"}}}}
	spec := &guest.Spec{Version: guest.ProtocolVersion, Args: []string{"x"}, Rlimits: []guest.Rlimit{{Type: "nofile", Soft: 1 << 20, Hard: 1 << 20}}}
	spec.GID = 101
	memcache := uint32(105)
	tmp := []guest.ServiceDir{{Path: "/run/memcached", Mode: 0o755, UID: &memcache, GID: &memcache}}
	if err := applyService(spec, svc, []uint32{4, 101, 4}, tmp, o, credentials{uid: 100, gid: 101, home: "/var/lib/redis"}); err != nil {
		t.Fatal(err)
	}
	gs := spec.Service
	switch {
	case gs.Type != guest.ServiceNotify || gs.KillSignal != int(unix.SIGQUIT) || gs.TimeoutStopNanos != int64(5*time.Second) || gs.UMask != 0o007:
		t.Errorf("service %+v", gs)
	case !reflect.DeepEqual(spec.Args, svc.Start[0].Args):
		t.Errorf("Args %q", spec.Args)
	case !slices.Equal(spec.Groups, []uint32{4}):
		t.Errorf("Groups %v, want SupplementaryGroups= once, without the primary group", spec.Groups)
	case spec.Dir != "/var/lib/redis":
		t.Errorf("Dir %q, want the user's home for ~", spec.Dir)
	case !reflect.DeepEqual(spec.Rlimits, []guest.Rlimit{{Type: "nofile", Soft: 65535, Hard: 65535}}):
		t.Errorf("Rlimits %+v: the unit's LimitNOFILE= replaces the default", spec.Rlimits)
	case !reflect.DeepEqual(gs.LoopbackPorts, []int{6379}):
		t.Errorf("LoopbackPorts %v, want the published TCP port", gs.LoopbackPorts)
	case !gs.Stop[0].IgnoreFailure || !slices.Equal(gs.Stop[0].Args, []string{"/bin/kill", "$MAINPID"}):
		t.Errorf("Stop %+v", gs.Stop)
	case len(gs.Dirs) != 4 || gs.Dirs[0] != tmp[0] || gs.Dirs[1] != (guest.ServiceDir{Path: "/run/redis", Mode: 0o2755, Owned: true}):
		t.Errorf("Dirs %+v", gs.Dirs)
	}
}

// TestServiceTmpfiles: a host unit's directories from tmpfiles.d are those
// of the files its packages ship (memcached's /run/memcached, owned by
// memcache); an image's are every file of its root, owners looked up in
// its /etc/passwd and /etc/group; an unknown owner fails the run.
func TestServiceTmpfiles(t *testing.T) {
	l, err := unit.Load(unit.DirFS("/"), "memcached")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := unit.Translate(l)
	if err != nil {
		t.Fatal(err)
	}
	set, _, err := serviceClosure(context.Background(), &closure.Resolver{Root: "/"}, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := serviceTmpfiles(&Options{}, svc, unit.DirFS("/"), set)
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup("memcache")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if len(dirs) != 1 || dirs[0].Path != "/run/memcached" || dirs[0].Mode != 0o755 || dirs[0].UID == nil || *dirs[0].UID != uint32(uid) || dirs[0].GID == nil || *dirs[0].GID != uint32(gid) || dirs[0].KeepMode {
		t.Errorf("memcached: %+v, want only /run/memcached 0755 memcache (%d:%d)", dirs, uid, gid)
	}

	write := func(root string, files map[string]string) {
		for p, c := range files {
			h := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(h, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	root := t.TempDir()
	write(root, map[string]string{
		"etc/passwd":                    "root:x:0:0::/root:/bin/sh\npostgres:x:102:104::/var/lib/postgresql:/bin/sh\n",
		"etc/group":                     "root:x:0:\npostgres:x:104:\n",
		"usr/lib/tmpfiles.d/pg.conf":    "d /run/postgresql 2775 postgres postgres - -\nd /var/log/postgresql 1775 root postgres - -\n",
		"usr/lib/tmpfiles.d/other.conf": "d /run/other\nL /x - - - - y\n",
		"etc/tmpfiles.d/unrelated.conf": "d /run/unrelated 0700 7 -\n",
	})
	var log strings.Builder
	dirs, err = serviceTmpfiles(&Options{Debug: true, Log: &log}, &unit.Service{Name: "pg.service"}, unit.DirFS(root), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := func(v uint32) *uint32 { return &v }
	want := []guest.ServiceDir{
		{Path: "/run/other", KeepMode: true},
		{Path: "/run/postgresql", Mode: 0o2775, UID: id(102), GID: id(104)},
		{Path: "/var/log/postgresql", Mode: 0o1775, UID: id(0), GID: id(104)},
		{Path: "/run/unrelated", Mode: 0o700, UID: id(7)},
	}
	if !reflect.DeepEqual(dirs, want) {
		t.Errorf("image: %+v, want %+v", dirs, want)
	}
	if !strings.Contains(log.String(), "other.conf:2: L /x: ignored") {
		t.Errorf("--debug does not list the ignored line:\n%s", log.String())
	}

	write(root, map[string]string{"usr/lib/tmpfiles.d/bad.conf": "d /run/x 0755 nosuch -\n"})
	_, err = serviceTmpfiles(&Options{}, &unit.Service{Name: "pg.service"}, unit.DirFS(root), nil)
	var f *Error
	if !errors.As(err, &f) || f.Code != ExitArrowFailed || !strings.Contains(err.Error(), `bad.conf:1: no user "nosuch"`) {
		t.Errorf("unknown user: %v", err)
	}
}
