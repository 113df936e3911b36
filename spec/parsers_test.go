package spec

import (
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: "256M", want: 256},
		{in: "256", want: 256},
		{in: " 512mib ", want: 512},
		{in: "1G", want: 1024},
		{in: "1gb", want: 1024},
		{in: "1.5GiB", want: 1536},
		{in: "32768K", want: 32},
		{in: "32M", want: 32},
		{in: "1T", want: 1 << 20},
		{in: "1048576", want: 1 << 20},
		{in: "0.5G", want: 512},
		{in: "", wantErr: `"" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "1X", wantErr: `"1X" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "256B", wantErr: `"256B" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "-1G", wantErr: `"-1G" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "1e3", wantErr: `"1e3" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "inf", wantErr: `"inf" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "1.G", wantErr: `"1.G" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "0x100", wantErr: `"0x100" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`},
		{in: "100.5", wantErr: `"100.5" is not a whole number of MiB`},
		{in: "1000K", wantErr: `"1000K" is not a whole number of MiB`},
		{in: "31M", wantErr: `"31M" is out of range (32M to 1T)`},
		{in: "0", wantErr: `"0" is out of range (32M to 1T)`},
		{in: "1025G", wantErr: `"1025G" is out of range (32M to 1T)`},
		{in: "99999999999999999999999G", wantErr: `"99999999999999999999999G" is out of range (32M to 1T)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMemory(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    api.Volume
		wantErr string
	}{
		{in: "./data:/data", want: api.Volume{Source: "./data", Target: "/data"}},
		{in: "/srv/conf:/etc/app/:ro", want: api.Volume{Source: "/srv/conf", Target: "/etc/app", ReadOnly: true}},
		{in: "../x:/x//y:rw", want: api.Volume{Source: "../x", Target: "/x/y"}},
		{in: ".:/src", want: api.Volume{Source: ".", Target: "/src"}},
		{in: "/a:/proc2", want: api.Volume{Source: "/a", Target: "/proc2"}},
		{in: "/a", wantErr: `"/a" is not SOURCE:TARGET[:ro|rw]`},
		{in: "/a:/b:ro:x", wantErr: `"/a:/b:ro:x" is not SOURCE:TARGET[:ro|rw]`},
		{in: "/a:/b:RO", wantErr: `mode "RO": want ro or rw`},
		{in: "data:/data", want: api.Volume{Source: "data", Target: "/data"}},
		{in: "pg.data_1-x:/var/lib/postgresql:ro", want: api.Volume{Source: "pg.data_1-x", Target: "/var/lib/postgresql", ReadOnly: true}},
		{in: "d:/data", wantErr: `source "d": a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)`},
		{in: "-data:/data", wantErr: `source "-data": a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)`},
		{in: "da ta:/data", wantErr: `source "da ta": a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)`},
		{in: "~/data:/data", wantErr: `source "~/data": want a host path starting with /, ./ or ../, or a volume name`},
		{in: ":/data", wantErr: `source "" is not a path`},
		{in: "./a:", wantErr: `target "" is not a path`},
		{in: "./a:data", wantErr: `target "data" is not an absolute path`},
		{in: "./a:/", wantErr: `target "/" would hide the guest's root file system`},
		{in: "./a:/.", wantErr: `target "/." would hide the guest's root file system`},
		{in: "./a:/a/..", wantErr: `target "/a/.." contains ".."`},
		{in: "./a:/dev", wantErr: `target "/dev" is inside /dev, which the guest kernel owns`},
		{in: "./a:/sys/fs/x", wantErr: `target "/sys/fs/x" is inside /sys, which the guest kernel owns`},
		{in: "./a\x00:/a", wantErr: `source "./a\x00" contains a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVolume(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    api.Port
		wantErr string
	}{
		{in: "8080:80", want: api.Port{HostPort: 8080, GuestPort: 80, Proto: "tcp"}},
		{in: "127.0.0.1:5353:53/udp", want: api.Port{HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53, Proto: "udp"}},
		{in: "[::1]:8443:443/tcp", want: api.Port{HostIP: "::1", HostPort: 8443, GuestPort: 443, Proto: "tcp"}},
		{in: "[2001:DB8::1]:1:65535", want: api.Port{HostIP: "2001:db8::1", HostPort: 1, GuestPort: 65535, Proto: "tcp"}},
		{in: "0.0.0.0:80:80", want: api.Port{HostIP: "0.0.0.0", HostPort: 80, GuestPort: 80, Proto: "tcp"}},
		{in: "80", wantErr: `"80" is not [IP:]HOST:GUEST[/tcp|udp] (the host port is required)`},
		{in: "", wantErr: `"" is not [IP:]HOST:GUEST[/tcp|udp] (the host port is required)`},
		{in: "0:80", wantErr: `host port "0": want a number from 1 to 65535`},
		{in: ":80", wantErr: `host port "": want a number from 1 to 65535`},
		{in: "80:0", wantErr: `guest port "0": want a number from 1 to 65535`},
		{in: "65536:80", wantErr: `host port "65536": want a number from 1 to 65535`},
		{in: "+80:80", wantErr: `host port "+80": want a number from 1 to 65535`},
		{in: "8000-8010:80", wantErr: `host port "8000-8010": want a number from 1 to 65535`},
		{in: "80:80/TCP", wantErr: `protocol "TCP": want tcp or udp`},
		{in: "80:80/", wantErr: `protocol "": want tcp or udp`},
		{in: ":80:80", wantErr: `":80:80": empty host IP (leave it out to listen on every address)`},
		{in: "1.2.3:80:80", wantErr: `host IP "1.2.3" is not an IP address`},
		{in: "::1:80:80", wantErr: `"::1:80:80" is not [IP:]HOST:GUEST[/tcp|udp] (put IPv6 addresses in brackets)`},
		{in: "[::1]:80", wantErr: `"[::1]:80" is not [IP:]HOST:GUEST[/tcp|udp]`},
		{in: "[::1:80:80", wantErr: `"[::1:80:80" is not [IP:]HOST:GUEST[/tcp|udp]`},
		{in: "[1.2.3.4]:80:80", wantErr: `"[1.2.3.4]:80:80" is not [IP:]HOST:GUEST[/tcp|udp] (IPv6 addresses, and only they, go in brackets)`},
		{in: "[fe80::1%eth0]:80:80", wantErr: `host IP "fe80::1%eth0" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePort(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
			if err == nil {
				back, err := ParsePort(got.String())
				if err != nil || back != got {
					t.Errorf("ParsePort(%q) = %+v, %v; want the same port", got.String(), back, err)
				}
			}
		})
	}
}

func TestParseRestart(t *testing.T) {
	tests := []struct {
		in      string
		want    api.RestartPolicy
		wantErr string
	}{
		{in: "no", want: api.RestartPolicy{Name: "no"}},
		{in: "always", want: api.RestartPolicy{Name: "always"}},
		{in: "unless-stopped", want: api.RestartPolicy{Name: "unless-stopped"}},
		{in: "on-failure", want: api.RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:0", want: api.RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:5", want: api.RestartPolicy{Name: "on-failure", MaxRetries: 5}},
		{in: "on-failure:1000000", want: api.RestartPolicy{Name: "on-failure", MaxRetries: 1000000}},
		{in: "", wantErr: `"" is not a restart policy (want no, on-failure[:N], always or unless-stopped)`},
		{in: "never", wantErr: `"never" is not a restart policy (want no, on-failure[:N], always or unless-stopped)`},
		{in: "On-Failure", wantErr: `"On-Failure" is not a restart policy (want no, on-failure[:N], always or unless-stopped)`},
		{in: "on-failure:", wantErr: `"on-failure:": want a retry count from 0 to 1000000`},
		{in: "on-failure:-1", wantErr: `"on-failure:-1": want a retry count from 0 to 1000000`},
		{in: "on-failure:1000001", wantErr: `"on-failure:1000001": want a retry count from 0 to 1000000`},
		{in: "on-failure:99999999999999999999", wantErr: `"on-failure:99999999999999999999": want a retry count from 0 to 1000000`},
		{in: "no:1", wantErr: `"no:1": only on-failure takes a retry count`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRestart(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
			if err == nil {
				if back, err := ParseRestart(got.String()); err != nil || back != got {
					t.Errorf("ParseRestart(%q) = %+v, %v; want the same policy", got.String(), back, err)
				}
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{api.Volume{Source: "/a", Target: "/b"}.String(), "/a:/b"},
		{api.Volume{Source: "/a", Target: "/b", ReadOnly: true}.String(), "/a:/b:ro"},
		{api.Port{HostPort: 1, GuestPort: 2, Proto: "udp"}.String(), "1:2/udp"},
		{api.Port{HostIP: "::", HostPort: 1, GuestPort: 2, Proto: "tcp"}.String(), "[::]:1:2/tcp"},
		{api.RestartPolicy{}.String(), "no"},
		{api.RestartPolicy{Name: "on-failure", MaxRetries: 3}.String(), "on-failure:3"},
		{api.RestartPolicy{Name: "on-failure"}.String(), "on-failure"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		in    string
		ok    bool
	}{
		{"user", checkUser, "root", true},
		{"user", checkUser, "0:0", true},
		{"user", checkUser, "root:1000", true},
		{"user", checkUser, "4294967294", true},
		{"user", checkUser, "4294967295", false},
		{"user", checkUser, "", false},
		{"user", checkUser, "1000:", false},
		{"user", checkUser, ":1000", false},
		{"user", checkUser, "1:2:3", false},
		{"user", checkUser, "-1", false},
		{"user", checkUser, "alice", true},
		{"user", checkUser, "alice:staff", true},
		{"user", checkUser, "alice:50", true},
		{"user", checkUser, "1000:staff", true},
		{"user", checkUser, "www-data", true},
		{"user", checkUser, "a b", false},
		{"user", checkUser, "a/b", false},
		{"user", checkUser, "al\x00ice", false},
		{"user", checkUser, "élise", false},
		{"user", checkUser, strings.Repeat("a", 256), true},
		{"user", checkUser, strings.Repeat("a", 257), false},
		{"name", checkName, "a", true},
		{"name", checkName, "web-1", true},
		{"name", checkName, "0abc", true},
		{"name", checkName, "", false},
		{"name", checkName, "web-", false},
		{"name", checkName, "web_1", false},
		{"name", checkName, "web.example", false},
		{"name", checkName, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc", true},
		{"name", checkName, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd", false},
	}
	for _, tt := range tests {
		if err := tt.check(tt.in); (err == nil) != tt.ok {
			t.Errorf("%s %q: error %v, want ok=%v", tt.name, tt.in, err, tt.ok)
		}
	}
}

func TestParseUser(t *testing.T) {
	tests := []struct {
		in   string
		want User
	}{
		{"root", User{Name: "root"}},
		{"0", User{}},
		{"1000", User{UID: 1000}},
		{"alice", User{Name: "alice"}},
		{"alice:staff", User{Name: "alice", Group: "staff", HasGroup: true}},
		{"alice:50", User{Name: "alice", GID: 50, HasGroup: true}},
		{"1000:staff", User{UID: 1000, Group: "staff", HasGroup: true}},
		{"1000:0", User{UID: 1000, HasGroup: true}},
		{"4294967294:4294967294", User{UID: 4294967294, GID: 4294967294, HasGroup: true}},
	}
	for _, tt := range tests {
		got, err := ParseUser(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseUser(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.in {
			t.Errorf("ParseUser(%q).String() = %q", tt.in, s)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"imgae", "image"},
		{"Image", "image"},
		{"readOnly", "read_only"},
		{"readonly", "read_only"},
		{"port", "ports"},
		{"envs", "env"},
		{"command", ""},
		{"x", ""},
		{"tt", "tty"},
		{"base", ""},
		{"nam", "name"},
		{"cpu", "cpus"},
		{"memroy", "memory"},
		{"entrypiont", "entrypoint"},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, topFields()); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// checkParse compares a parser's result with what a test wants.
func checkParse[T comparable](t *testing.T, got T, err error, want T, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got %+v, want error %q", got, wantErr)
		}
		if err.Error() != wantErr {
			t.Fatalf("error %q, want %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("error %v", err)
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
