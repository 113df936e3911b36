package run

import (
	"context"
	"reflect"
	"slices"
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
	if err := applyService(spec, svc, []uint32{4, 101, 4}, o, credentials{uid: 100, gid: 101, home: "/var/lib/redis"}); err != nil {
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
	case len(gs.Dirs) != 3 || gs.Dirs[0] != (guest.ServiceDir{Path: "/run/redis", Mode: 0o2755, Owned: true}):
		t.Errorf("Dirs %+v", gs.Dirs)
	}
}
