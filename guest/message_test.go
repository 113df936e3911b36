package guest

import (
	"fmt"
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		st   ExitStatus
		want int
	}{
		{ExitStatus{Reason: Exited, Code: 0}, 0},
		{ExitStatus{Reason: Exited, Code: 3}, 3},
		{ExitStatus{Reason: Exited, Code: 255}, 255},
		{ExitStatus{Reason: Exited, Code: 256}, 125},
		{ExitStatus{Reason: Exited, Code: -1}, 125},
		{ExitStatus{Reason: Signaled, Signal: 9}, 137},
		{ExitStatus{Reason: Signaled, Signal: 15}, 143},
		{ExitStatus{Reason: Signaled, Signal: 0}, 125},
		{ExitStatus{Reason: Signaled, Signal: 65}, 125},
		{ExitStatus{Reason: NotFound}, 127},
		{ExitStatus{Reason: NotExecutable}, 126},
		{ExitStatus{Reason: InitFailed}, 125},
		{ExitStatus{Reason: "bogus"}, 125},
	}
	for _, tt := range tests {
		if got := tt.st.ExitCode(); got != tt.want {
			t.Errorf("%+v: ExitCode() = %d, want %d", tt.st, got, tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Version: ProtocolVersion, Args: []string{"/bin/echo", "hi"}, Env: []string{"A=b", "EMPTY="}, Dir: "/tmp",
		Rlimits: []Rlimit{{Type: "nofile", Soft: 1024, Hard: 4096}}, MachineID: strings.Repeat("0a", 16)}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
	valid := []func(*Spec){
		func(s *Spec) { s.Root = &Root{Device: "root", FSType: "erofs"} },
		func(s *Spec) { s.Root = &Root{Device: "/dev/vda", FSType: "squashfs", ReadOnly: true} },
		func(s *Spec) { s.Root = &Root{Device: "img-1.2_x", FSType: "ext4"} },
		func(s *Spec) {
			s.Mounts = []Mount{{Tag: "v0", Target: "/data", FSType: "virtiofs"}, {Tag: "v1", Target: "/data/sub", FSType: "9p", ReadOnly: true}}
		},
		func(s *Spec) {
			s.Mounts = []Mount{{Tag: strings.Repeat("t", 36), Target: "/procfs", FSType: "virtiofs"}}
		},
		func(s *Spec) { s.Network = &Network{} },
		func(s *Spec) { s.Network = userNet() },
		func(s *Spec) {
			s.Network = userNet()
			s.Network.Interfaces = append(s.Network.Interfaces, Interface{MAC: "02:00:00:00:00:02", Address: "172.18.0.2/16"})
			s.Network.DNS = append(s.Network.DNS, "2001:db8::53")
			s.Network.Hosts = []HostEntry{{IP: "::1", Names: []string{"ip6-localhost"}}}
		},
		func(s *Spec) {
			n := userNet()
			n.Interfaces[0].Address = "192.0.2.7/32"
			n.Interfaces[0].Gateway = ""
			s.Network = n
		},
	}
	for i, mutate := range valid {
		s := ok
		mutate(&s)
		if err := s.Validate(); err != nil {
			t.Errorf("valid spec %d rejected: %v", i, err)
		}
	}
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"no args", func(s *Spec) { s.Args = nil }, "no program"},
		{"other version", func(s *Spec) { s.Version = ProtocolVersion + 1 }, "protocol version"},
		{"empty program", func(s *Spec) { s.Args = []string{""} }, "no program"},
		{"relative dir", func(s *Spec) { s.Dir = "tmp" }, "not absolute"},
		{"bad env", func(s *Spec) { s.Env = []string{"NOEQUALS"} }, "KEY=value"},
		{"empty key", func(s *Spec) { s.Env = []string{"=x"} }, "KEY=value"},
		{"nul in arg", func(s *Spec) { s.Args = []string{"/bin/echo", "a\x00b"} }, "NUL"},
		{"nul in env", func(s *Spec) { s.Env = []string{"A=b\x00"} }, "NUL"},
		{"nul in hostname", func(s *Spec) { s.Hostname = "h\x00" }, "NUL"},
		{"long env", func(s *Spec) { s.Env = []string{"A=" + strings.Repeat("x", 128<<10)} }, "at most"},
		{"unknown rlimit", func(s *Spec) { s.Rlimits = []Rlimit{{Type: "bogus"}} }, "unknown rlimit"},
		{"soft above hard", func(s *Spec) { s.Rlimits = []Rlimit{{Type: "nofile", Soft: 10, Hard: 1}} }, "above hard"},
		{"huge seed", func(s *Spec) { s.Seed = make([]byte, 4096) }, "seed"},
		{"long hostname", func(s *Spec) { s.Hostname = strings.Repeat("h", 65) }, "host name"},
		{"short machine ID", func(s *Spec) { s.MachineID = "abc" }, "machine ID"},
		{"upper-case machine ID", func(s *Spec) { s.MachineID = strings.Repeat("A", 32) }, "machine ID"},
		{"machine ID with a newline", func(s *Spec) { s.MachineID = strings.Repeat("a", 31) + "\n" }, "machine ID"},
		{"too many args", func(s *Spec) { s.Args = make([]string, maxArgs+1); s.Args[0] = "x" }, "arguments"},
		{"root fstype", func(s *Spec) { s.Root = &Root{Device: "root", FSType: "xfs"} }, "root file system type"},
		{"root no fstype", func(s *Spec) { s.Root = &Root{Device: "root"} }, "root file system type"},
		{"root no device", func(s *Spec) { s.Root = &Root{FSType: "erofs"} }, "root device"},
		{"root device outside /dev", func(s *Spec) { s.Root = &Root{Device: "/etc/passwd", FSType: "erofs"} }, "root device"},
		{"root device escapes /dev", func(s *Spec) { s.Root = &Root{Device: "/dev/../etc/shadow", FSType: "erofs"} }, "root device"},
		{"root device subdir", func(s *Spec) { s.Root = &Root{Device: "/dev/disk/by-id/x", FSType: "erofs"} }, "root device"},
		{"root serial too long", func(s *Spec) { s.Root = &Root{Device: strings.Repeat("s", 21), FSType: "erofs"} }, "root device"},
		{"root serial odd byte", func(s *Spec) { s.Root = &Root{Device: "a b", FSType: "erofs"} }, "root device"},
		{"mount relative", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "data", FSType: "virtiofs"}} }, "not absolute"},
		{"mount dotdot", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/data/../etc", FSType: "virtiofs"}} }, "not clean"},
		{"mount trailing slash", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/data/", FSType: "virtiofs"}} }, "not clean"},
		{"mount double slash", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "//data", FSType: "virtiofs"}} }, "not clean"},
		{"mount on root", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/", FSType: "virtiofs"}} }, "hide the root"},
		{"mount on proc", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/proc", FSType: "virtiofs"}} }, "guest kernel"},
		{"mount in dev", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/dev/shm", FSType: "virtiofs"}} }, "guest kernel"},
		{"mount nul", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/a\x00b", FSType: "virtiofs"}} }, "NUL"},
		{"mount long target", func(s *Spec) {
			s.Mounts = []Mount{{Tag: "v", Target: "/" + strings.Repeat("a", 5000), FSType: "virtiofs"}}
		}, "bytes"},
		{"mount no tag", func(s *Spec) { s.Mounts = []Mount{{Target: "/data", FSType: "virtiofs"}} }, "mount tag"},
		{"mount long tag", func(s *Spec) { s.Mounts = []Mount{{Tag: strings.Repeat("t", 37), Target: "/data", FSType: "virtiofs"}} }, "mount tag"},
		{"mount tag with comma", func(s *Spec) { s.Mounts = []Mount{{Tag: "a,b", Target: "/data", FSType: "virtiofs"}} }, "mount tag"},
		{"mount fstype", func(s *Spec) { s.Mounts = []Mount{{Tag: "v", Target: "/data", FSType: "nfs"}} }, "file system type"},
		{"mount tag twice", func(s *Spec) {
			s.Mounts = []Mount{{Tag: "v", Target: "/a", FSType: "virtiofs"}, {Tag: "v", Target: "/b", FSType: "9p"}}
		}, "used twice"},
		{"mount target twice", func(s *Spec) {
			s.Mounts = []Mount{{Tag: "v", Target: "/a", FSType: "virtiofs"}, {Tag: "w", Target: "/a", FSType: "9p"}}
		}, "two mounts"},
		{"bad MAC", withNet(func(n *Network) { n.Interfaces[0].MAC = "02:00:00:00:00" }), "MAC"},
		{"upper-case MAC", withNet(func(n *Network) { n.Interfaces[0].MAC = "02:AB:00:00:00:01" }), "MAC"},
		{"MAC twice", withNet(func(n *Network) {
			n.Interfaces = append(n.Interfaces, Interface{MAC: n.Interfaces[0].MAC, Address: "10.1.0.2/24"})
		}), "twice"},
		{"no prefix", withNet(func(n *Network) { n.Interfaces[0].Address = "10.0.2.15" }), "address"},
		{"network address", withNet(func(n *Network) { n.Interfaces[0].Address = "10.0.2.0/24" }), "address"},
		{"IPv6 address", withNet(func(n *Network) { n.Interfaces[0].Address = "fd00::2/64" }), "IPv4"},
		{"gateway outside", withNet(func(n *Network) { n.Interfaces[0].Gateway = "10.0.3.2" }), "gateway"},
		{"gateway is self", withNet(func(n *Network) { n.Interfaces[0].Gateway = "10.0.2.15" }), "gateway"},
		{"two gateways", withNet(func(n *Network) {
			n.Interfaces = append(n.Interfaces, Interface{MAC: "02:00:00:00:00:02", Address: "10.1.0.2/24", Gateway: "10.1.0.1"})
		}), "default route"},
		{"MTU", withNet(func(n *Network) { n.Interfaces[0].MTU = 20 }), "MTU"},
		{"too many interfaces", withNet(func(n *Network) {
			for i := 0; i < MaxInterfaces; i++ {
				n.Interfaces = append(n.Interfaces, Interface{MAC: fmt.Sprintf("02:00:00:00:01:%02x", i), Address: fmt.Sprintf("10.9.%d.2/24", i)})
			}
		}), "interfaces, at most"},
		{"bad DNS", withNet(func(n *Network) { n.DNS = []string{"dns.example"} }), "name server"},
		{"unspecified DNS", withNet(func(n *Network) { n.DNS = []string{"0.0.0.0"} }), "name server"},
		{"too many DNS", withNet(func(n *Network) { n.DNS = make([]string, 9) }), "name servers"},
		{"search with space", withNet(func(n *Network) { n.Search = []string{"a b"} }), "search domain"},
		{"search newline", withNet(func(n *Network) { n.Search = []string{"a\nnameserver 1.2.3.4"} }), "search domain"},
		{"hosts bad IP", withNet(func(n *Network) { n.Hosts = []HostEntry{{IP: "x", Names: []string{"a"}}} }), "hosts entry"},
		{"hosts no names", withNet(func(n *Network) { n.Hosts = []HostEntry{{IP: "10.0.0.1"}} }), "names"},
		{"hosts bad name", withNet(func(n *Network) { n.Hosts = []HostEntry{{IP: "10.0.0.1", Names: []string{"a\tb"}}} }), "DNS name"},
		{"too many mounts", func(s *Spec) {
			for i := 0; i <= MaxMounts; i++ {
				s.Mounts = append(s.Mounts, Mount{Tag: fmt.Sprint("v", i), Target: fmt.Sprint("/v", i), FSType: "virtiofs"})
			}
		}, "mounts, at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mutate(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// userNet is the network configuration of a user-mode run.
func userNet() *Network {
	return &Network{
		Interfaces: []Interface{{MAC: "02:12:34:56:78:9a", Address: "10.0.2.15/24", Gateway: "10.0.2.2", MTU: 1500}},
		DNS:        []string{"10.0.2.3"},
		Search:     []string{"example.com"},
		Hosts:      []HostEntry{{IP: "10.0.2.2", Names: []string{"host.arrow.internal"}}},
	}
}

func withNet(mutate func(*Network)) func(*Spec) {
	return func(s *Spec) {
		n := userNet()
		mutate(n)
		s.Network = n
	}
}

func TestDecodeStrict(t *testing.T) {
	var st ExitStatus
	if err := Decode([]byte(`{"reason":"exited","code":3}`), &st); err != nil || st.Code != 3 {
		t.Fatalf("Decode = %v, %+v", err, st)
	}
	for _, bad := range []string{`{"reason":"exited","extra":1}`, `{"reason":"exited"} {}`, `not json`, ``} {
		if err := Decode([]byte(bad), &st); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}
