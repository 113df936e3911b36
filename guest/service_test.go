package guest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func validServiceSpec() *Spec {
	return &Spec{
		Version: ProtocolVersion,
		Args:    []string{"/usr/bin/redis-server", "/etc/redis/redis.conf"},
		Service: &Service{
			Name:       "redis-server.service",
			Type:       ServiceNotify,
			Start:      []Command{{Path: "/usr/bin/redis-server", Args: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf"}}},
			Stop:       []Command{{Path: "kill", Args: []string{"kill", "$MAINPID"}, IgnoreFailure: true}},
			EnvFiles:   []EnvFile{{Path: "/etc/default/redis", Optional: true}},
			UMask:      0o007,
			Dirs:       []ServiceDir{{Path: "/run/redis", Mode: 0o2755, Owned: true}},
			KillSignal: 15,
		},
	}
}

func TestServiceValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *Spec)
		want   string // "" for valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"bad type", func(s *Spec) { s.Service.Type = "dbus" }, "service type"},
		{"no start", func(s *Spec) { s.Service.Start = nil }, "no ExecStart"},
		{"two starts", func(s *Spec) { s.Service.Start = append(s.Service.Start, s.Service.Start[0]) }, "several ExecStart"},
		{"two starts oneshot", func(s *Spec) {
			s.Service.Type = ServiceOneshot
			s.Service.Start = append(s.Service.Start, s.Service.Start[0])
		}, ""},
		{"forking without pid file", func(s *Spec) { s.Service.Type = ServiceForking }, "PID file"},
		{"relative pid file", func(s *Spec) { s.Service.PIDFile = "run/x.pid" }, "PID file"},
		{"relative program", func(s *Spec) { s.Service.Pre = []Command{{Path: "bin/x", Args: []string{"x"}}} }, "absolute path or a bare name"},
		{"empty command", func(s *Spec) { s.Service.Post = []Command{{}} }, "empty command"},
		{"NUL", func(s *Spec) { s.Service.Stop[0].Args[0] = "a\x00" }, "NUL"},
		{"dir in /proc", func(s *Spec) { s.Service.Dirs[0].Path = "/proc/x" }, "kernel owns"},
		{"relative dir", func(s *Spec) { s.Service.Dirs[0].Path = "run/x" }, "not absolute"},
		{"mode", func(s *Spec) { s.Service.Dirs[0].Mode = 0o17777 }, "mode"},
		{"too many dirs", func(s *Spec) {
			for len(s.Service.Dirs) <= maxServiceDirs {
				s.Service.Dirs = append(s.Service.Dirs, s.Service.Dirs[0])
			}
		}, "directories, at most"},
		{"tmpfiles dir", func(s *Spec) {
			id := uint32(7)
			s.Service.Dirs = append(s.Service.Dirs, ServiceDir{Path: "/run/x", UID: &id, KeepMode: true})
		}, ""},
		{"umask", func(s *Spec) { s.Service.UMask = 0o1000 }, "umask"},
		{"kill signal", func(s *Spec) { s.Service.KillSignal = 0 }, "kill signal"},
		{"env file", func(s *Spec) { s.Service.EnvFiles[0].Path = "x" }, "environment file"},
		{"stdin", func(s *Spec) { s.Stdin = true }, "no input"},
		{"too many commands", func(s *Spec) { s.Service.Pre = make([]Command, maxCommands+1) }, "commands in one list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServiceSpec()
			tt.change(s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestExpandArgs(t *testing.T) {
	env := map[string]string{"A": "one two", "B": "x", "EMPTY": ""}
	get := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want []string
	}{
		{[]string{"prog", "$A"}, []string{"prog", "one", "two"}},
		{[]string{"prog", "${A}"}, []string{"prog", "one two"}},
		{[]string{"prog", "--x=${B}y"}, []string{"prog", "--x=xy"}},
		{[]string{"prog", "$EMPTY", "$UNSET"}, []string{"prog"}},
		{[]string{"prog", "${UNSET}"}, []string{"prog", ""}},
		{[]string{"prog", "$$A", "a$$"}, []string{"prog", "$A", "a$"}},
		{[]string{"prog", "a$B", "${", "${1x}", "$"}, []string{"prog", "a$B", "${", "${1x}", "$"}},
	}
	for _, tt := range tests {
		if got := ExpandArgs(tt.in, get); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ExpandArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"plain", "A=1\nB=two words\n", []string{"A=1", "B=two words"}, ""},
		{"comments and blanks", "# c\n; c\n\n  A = 1  \n", []string{"A=1"}, ""},
		{"quotes", "A='x \"y\"'\nB=\"a \\\"b\\\" \\$c\"\n", []string{`A=x "y"`, `B=a "b" $c`}, ""},
		{"continuation", "A=one\\\ntwo\nB=3", []string{"A=onetwo", "B=3"}, ""},
		{"export", "export A=1\n", []string{"A=1"}, ""},
		{"empty value", "A=\n", []string{"A="}, ""},
		{"debian default", "# Options\nDAEMON_OPTS=\"-x -y\"\n#X=1\n", []string{"DAEMON_OPTS=-x -y"}, ""},
		{"no equals", "JUNK\n", nil, "not KEY=VALUE"},
		{"bad name", "1A=1\n", nil, "not a variable name"},
		{"unbalanced", "A='x\n", nil, "unbalanced"},
		{"NUL", "A=\x00", nil, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnvFile([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseEnvFile() = %q, %v, want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseEnvFile() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzServiceSpec decodes and validates arbitrary specs with services, as
// arrow-init does with what the host sends: no panic, and a spec that
// validates survives a round trip.
func FuzzServiceSpec(f *testing.F) {
	b, _ := json.Marshal(validServiceSpec())
	f.Add(b)
	f.Add([]byte(`{"version":7,"args":["x"],"service":{"type":"forking","start":[{"path":"x","args":["x"]}],"pid_file":"/run/x.pid","kill_signal":15}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if err := Decode(data, &s); err != nil {
			return
		}
		if s.Validate() != nil {
			return
		}
		b, err := json.Marshal(&s)
		if err != nil {
			t.Fatalf("marshal a valid spec: %v", err)
		}
		var again Spec
		if err := Decode(b, &again); err != nil || again.Validate() != nil {
			t.Fatalf("a valid spec does not survive a round trip: %v", err)
		}
	})
}

// FuzzParseEnvFile feeds arbitrary EnvironmentFile= content (the guest's
// files) to the parser: no panic, and every variable it returns is
// KEY=value with a valid name.
func FuzzParseEnvFile(f *testing.F) {
	f.Add([]byte("A=1\nB='x y'\n# c\nexport C=\"a\\\"b\"\n"))
	f.Add([]byte("A=one\\\ntwo"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := ParseEnvFile(data)
		if err != nil {
			return
		}
		for _, v := range vars {
			k, _, ok := strings.Cut(v, "=")
			if !ok || !isEnvName(k) {
				t.Fatalf("ParseEnvFile returned %q", v)
			}
		}
		ExpandArgs([]string{"$" + string(data), "${A}" + string(data)}, func(string) (string, bool) { return string(data), true })
	})
}
