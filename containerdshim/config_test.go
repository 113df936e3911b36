package containerdshim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/api"
)

func i64(v int64) *int64    { return &v }
func u64(v uint64) *uint64  { return &v }
func baseSpec() *specs.Spec { return &specs.Spec{Process: &specs.Process{Args: []string{"/bin/sh"}}} }

func TestConfig(t *testing.T) {
	const root = "/b/rootfs"
	with := func(f func(s *specs.Spec)) *specs.Spec { s := baseSpec(); f(s); return s }
	tests := []struct {
		name  string
		spec  *specs.Spec
		want  api.Config
		notes []string // substrings, in order
		err   string
	}{
		{name: "minimal", spec: baseSpec(),
			want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0"}},
		{name: "process", spec: with(func(s *specs.Spec) {
			s.Process.Args = []string{"sh", "-c", "exit 3"}
			s.Process.Env = []string{"PATH=/bin", "A=b=c"}
			s.Process.Cwd = "/srv"
			s.Process.User = specs.User{UID: 1000, GID: 100}
			s.Process.Terminal = true
			s.Hostname = "box"
			s.Root = &specs.Root{Path: "rootfs", Readonly: true}
		}), want: api.Config{RootFS: root, Program: "sh", Args: []string{"-c", "exit 3"}, Env: []string{"PATH=/bin", "A=b=c"},
			Dir: "/srv", User: "1000:100", TTY: true, Hostname: "box", ReadOnly: true}},
		{name: "ignored things are listed", spec: with(func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}
			s.Process.Capabilities = &specs.LinuxCapabilities{}
			s.Process.NoNewPrivileges = true
			s.Process.User.AdditionalGids = []uint32{10}
			s.Linux = &specs.Linux{Seccomp: &specs.LinuxSeccomp{}, Sysctl: map[string]string{"a": "b"},
				Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}}}
		}), want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0"},
			notes: []string{"additionalGids", "RLIMIT_NOFILE", "capabilities", "noNewPrivileges", "pids", "seccomp", "sysctl"}},
		{name: "resources", spec: with(func(s *specs.Spec) {
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: i64(300<<20 + 1)},
				CPU:    &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)},
			}}
		}), want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0", MemoryMiB: 301, CPUs: 2}},
		{name: "memory below the minimum is raised", spec: with(func(s *specs.Spec) {
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(16 << 20)}}}
		}), want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0", MemoryMiB: MinMemoryMiB},
			notes: []string{"raised"}},
		{name: "mounts", spec: with(func(s *specs.Spec) {
			s.Mounts = []specs.Mount{
				{Destination: "/proc", Type: "proc", Source: "proc"},
				{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
				{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
				{Destination: "/run", Type: "tmpfs", Source: "tmpfs"},
				{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}},
				{Destination: "/cache/", Source: "/var/cache/x", Options: []string{"bind"}},
				{Destination: "/etc/resolv.conf", Type: "bind", Source: "/var/lib/x/resolv.conf", Options: []string{"bind", "ro"}},
				{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs"},
				{Destination: "/dev/termination-log", Type: "bind", Source: "/var/lib/kubelet/pods/u/containers/c/1", Options: []string{"rbind"}},
			}
		}), want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0", Volumes: []api.Volume{
			{Source: "/srv/data", Target: "/data", ReadOnly: true}, {Source: "/var/cache/x", Target: "/cache"}}},
			notes: []string{"/etc/resolv.conf", "/scratch", "termination message"}},
		{name: "network namespace path is the caller's", spec: with(func(s *specs.Spec) {
			s.Linux = &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}, {Type: specs.PIDNamespace}}}
		}), want: api.Config{RootFS: root, Program: "/bin/sh", Dir: "/", User: "0:0"}},
		{name: "no process", spec: &specs.Spec{}, err: "no process"},
		{name: "no args", spec: with(func(s *specs.Spec) { s.Process.Args = nil }), err: "nothing to run"},
		{name: "bad env", spec: with(func(s *specs.Spec) { s.Process.Env = []string{"NOEQUALS"} }), err: "KEY=value"},
		{name: "relative cwd", spec: with(func(s *specs.Spec) { s.Process.Cwd = "srv" }), err: "cwd"},
		{name: "hooks", spec: with(func(s *specs.Spec) { s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/x"}}} }), err: "hooks"},
		{name: "other mount type", spec: with(func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/mnt", Type: "nfs", Source: "srv:/x"}}
		}), err: "only bind mounts"},
		{name: "relative bind source", spec: with(func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/mnt", Type: "bind", Source: "x"}}
		}), err: "want an absolute path"},
		{name: "huge memory", spec: with(func(s *specs.Spec) {
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 62)}}}
		}), err: "memory limit"},
		{name: "too many CPUs", spec: with(func(s *specs.Spec) {
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(1 << 40)}}}
		}), err: "CPUs"},
		{name: "too many mounts", spec: with(func(s *specs.Spec) { s.Mounts = make([]specs.Mount, maxMounts+1) }), err: "mounts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notes, err := Config(tt.spec, root)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config:\n got %+v\nwant %+v", got, tt.want)
			}
			if len(notes) != len(tt.notes) {
				t.Fatalf("notes %q, want %d with %q", notes, len(tt.notes), tt.notes)
			}
			for i, n := range tt.notes {
				if !strings.Contains(notes[i], n) {
					t.Errorf("note %d %q, want %q in it", i, notes[i], n)
				}
			}
		})
	}
}

func TestNetNSPath(t *testing.T) {
	s := baseSpec()
	if p := NetNSPath(s); p != "" {
		t.Errorf("no linux section: %q", p)
	}
	s.Linux = &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}
	if p := NetNSPath(s); p != "" {
		t.Errorf("a new namespace: %q", p)
	}
	s.Linux.Namespaces[0].Path = "/var/run/netns/cni-1"
	if p := NetNSPath(s); p != "/var/run/netns/cni-1" {
		t.Errorf("a pod's: %q", p)
	}
}

func TestParseSpecBound(t *testing.T) {
	if _, err := ParseSpec(make([]byte, MaxSpecBytes+1)); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("an oversized config.json: %v", err)
	}
	if _, err := ParseSpec([]byte("{")); err == nil {
		t.Error("malformed JSON accepted")
	}
}

func TestLookPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/tool"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A link to a target outside the root (absolute, resolved in the
	// guest) counts as found, and is not followed on the host.
	if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  []string
		want string
		err  string
	}{
		{"sh", nil, "/bin/sh", ""},
		{"tool", nil, "/usr/bin/tool", ""},
		{"tool", []string{"PATH=/bin"}, "", "not found"},
		{"data", nil, "", "not found"}, // not executable
		{"/opt/x", nil, "/opt/x", ""},
		{"./x", nil, "", "relative"},
		{"tool", []string{"PATH=relative:/usr/bin"}, "/usr/bin/tool", ""},
	} {
		got, err := lookPath(root, tt.name, tt.env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("lookPath(%q, %q): %q, %v; want an error with %q", tt.name, tt.env, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("lookPath(%q, %q): %q, %v; want %q", tt.name, tt.env, got, err, tt.want)
		}
	}
}

// FuzzConfig: config.json is a client's, through containerd: no input
// makes the translation panic, and whatever it accepts is within the
// bounds api.Config's validation checks, or refused by it.
func FuzzConfig(f *testing.F) {
	seed, _ := json.Marshal(&specs.Spec{
		Process: &specs.Process{Args: []string{"sh", "-c", "x"}, Env: []string{"A=b"}, Cwd: "/",
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE"}}},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "h",
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/d", Type: "bind", Source: "/s", Options: []string{"ro"}}},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)},
			CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000)}},
			Namespaces: []specs.LinuxNamespace{{Type: "network", Path: "/proc/1/ns/net"}}},
	})
	f.Add(seed)
	f.Add([]byte(`{"process":{"args":["/x"],"cwd":"rel"}}`))
	f.Add([]byte(`{"process":{"args":[""]},"mounts":[{"destination":"x"}]}`))
	f.Add([]byte(`{"process":{"args":["a"]},"linux":{"resources":{"cpu":{"quota":-1,"period":0}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			return
		}
		c, notes, err := Config(s, "/bundle/rootfs")
		if err != nil {
			return
		}
		if len(notes) > maxRlimits+maxMounts+16 {
			t.Fatalf("%d notes", len(notes))
		}
		if c.RootFS != "/bundle/rootfs" || c.Program == "" {
			t.Fatalf("accepted a config with no root or program: %+v", c)
		}
		if c.MemoryMiB != 0 && (c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > maxMemoryMiB) {
			t.Fatalf("memory %d MiB", c.MemoryMiB)
		}
		if c.CPUs < 0 || c.CPUs > maxCPUs {
			t.Fatalf("%d CPUs", c.CPUs)
		}
		if c.Program[0] == '/' {
			_ = c.Validate() // may refuse: it must not panic
		}
	})
}
