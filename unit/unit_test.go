package unit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// root writes files (path: content; content "->TARGET" makes a link) under
// a new directory and returns it as an FS.
func root(t *testing.T, files map[string]string) DirFS {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		h := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, h); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(h, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return DirFS(dir)
}

const redisUnit = `[Unit]
Description=Advanced key-value store
After=network.target

[Service]
Type=notify
ExecStart=/usr/bin/redis-server /etc/redis/redis.conf --supervised systemd --daemonize no
PIDFile=/run/redis/redis-server.pid
TimeoutStopSec=0
Restart=always
User=redis
Group=redis
RuntimeDirectory=redis
RuntimeDirectoryMode=2755
UMask=007
PrivateTmp=true
LimitNOFILE=65535
ProtectSystem=strict
SystemCallFilter=~ @privileged @resources

[Install]
WantedBy=multi-user.target
Alias=redis.service
`

func TestLoadAndTranslate(t *testing.T) {
	lib := "/lib/systemd/system/"
	etc := "/etc/systemd/system/"
	tests := []struct {
		name  string
		files map[string]string
		unit  string
		check func(t *testing.T, s *Service)
		err   string
	}{
		{
			name:  "redis as Debian ships it",
			files: map[string]string{lib + "redis-server.service": redisUnit},
			unit:  "redis-server",
			check: func(t *testing.T, s *Service) {
				want := &Service{
					Name: "redis-server.service", Files: []string{lib + "redis-server.service"},
					Type:    TypeNotify,
					Start:   []Command{{Path: "/usr/bin/redis-server", Args: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf", "--supervised", "systemd", "--daemonize", "no"}}},
					PIDFile: "/run/redis/redis-server.pid", User: "redis", Group: "redis",
					UMask: 0o007, Rlimits: []Rlimit{{"nofile", 65535, 65535}},
					Dirs:        []Dir{{Path: "/run/redis", Mode: 0o2755, Owned: true}},
					TimeoutStop: 0, KillSignal: unix.SIGTERM,
					Notes: []string{"Restart=: ignored", "PrivateTmp=: satisfied by the VM", "ProtectSystem=: satisfied by the VM", "SystemCallFilter=: satisfied by the VM"},
				}
				if !reflect.DeepEqual(s, want) {
					t.Errorf("got  %+v\nwant %+v", s, want)
				}
			},
		},
		{
			name: "alias by link",
			files: map[string]string{
				lib + "redis-server.service": redisUnit,
				etc + "redis.service":        "->" + lib + "redis-server.service",
			},
			unit: "redis.service",
			check: func(t *testing.T, s *Service) {
				if s.Name != "redis-server.service" {
					t.Errorf("name %q, want the alias's target", s.Name)
				}
			},
		},
		{
			name:  "masked",
			files: map[string]string{lib + "a.service": redisUnit, etc + "a.service": "->/dev/null"},
			unit:  "a",
			err:   "masked",
		},
		{
			name:  "not found",
			files: map[string]string{lib + "a.service": redisUnit},
			unit:  "b",
			err:   "not found",
		},
		{
			name: "drop-ins reset and override, in name order, etc over lib",
			files: map[string]string{
				lib + "a.service":                "[Service]\nExecStart=/bin/a one\nEnvironment=A=1 \"B=two words\"\n",
				lib + "a.service.d/10-x.conf":    "[Service]\nExecStart=\nExecStart=/bin/a two\n",
				lib + "a.service.d/20-y.conf":    "[Service]\nEnvironment=C=3\n",
				etc + "a.service.d/20-y.conf":    "[Service]\nEnvironment=C=4\n",
				etc + "a.service.d/30-mask.conf": "->/dev/null",
				lib + "a.service.d/30-mask.conf": "[Service]\nExecStart=/bin/never\n",
				lib + "a.service.d/README":       "not a drop-in",
			},
			unit: "a",
			check: func(t *testing.T, s *Service) {
				if got := s.Start; len(got) != 1 || !reflect.DeepEqual(got[0].Args, []string{"/bin/a", "two"}) {
					t.Errorf("Start = %+v", got)
				}
				if want := []string{"A=1", "B=two words", "C=4"}; !reflect.DeepEqual(s.Env, want) {
					t.Errorf("Env = %q, want %q", s.Env, want)
				}
				if len(s.Files) != 3 {
					t.Errorf("Files = %q", s.Files)
				}
			},
		},
		{
			name: "template instance with specifiers and the template's drop-ins",
			files: map[string]string{
				lib + "postgresql@.service": "[Unit]\nDescription=PostgreSQL Cluster %i\n[Service]\nType=forking\n" +
					"ExecStart=-/usr/bin/pg_ctlcluster --skip-systemctl-redirect %i start\nExecStop=/usr/bin/pg_ctlcluster -m fast %i stop\n" +
					"PIDFile=/run/postgresql/%i.pid\nTimeoutStopSec=1h\nSyslogIdentifier=postgresql@%i\n",
				etc + "postgresql@.service.d/x.conf": "[Service]\nEnvironment=N=%n P=%p I=%I F=%f J=%j PCT=%%x\n",
			},
			unit: "postgresql@15-main",
			check: func(t *testing.T, s *Service) {
				if s.Name != "postgresql@15-main.service" || s.Type != TypeForking || s.PIDFile != "/run/postgresql/15-main.pid" {
					t.Errorf("got %+v", s)
				}
				if c := s.Start[0]; !c.IgnoreFailure || c.Args[2] != "15-main" {
					t.Errorf("Start = %+v", c)
				}
				want := []string{"N=postgresql@15-main.service", "P=postgresql", "I=15/main", "F=/15/main", "J=postgresql", "PCT=%x"}
				if !reflect.DeepEqual(s.Env, want) {
					t.Errorf("Env = %q, want %q", s.Env, want)
				}
				if s.TimeoutStop != time.Hour {
					t.Errorf("TimeoutStop = %v", s.TimeoutStop)
				}
			},
		},
		{
			name:  "template without instance",
			files: map[string]string{lib + "p@.service": "[Service]\nExecStart=/bin/p\n"},
			unit:  "p@",
			err:   "name an instance",
		},
		{
			name:  "unsupported directive named",
			files: map[string]string{lib + "a.service": "[Service]\nExecStart=/bin/a\nDynamicUser=yes\n"},
			unit:  "a",
			err:   "DynamicUser= is not supported",
		},
		{
			name:  "unsupported type",
			files: map[string]string{lib + "a.service": "[Service]\nType=dbus\nExecStart=/bin/a\n"},
			unit:  "a",
			err:   `Type=: "dbus" is not supported`,
		},
		{
			name:  "forking needs a PID file",
			files: map[string]string{lib + "a.service": "[Service]\nType=forking\nExecStart=/bin/a\n"},
			unit:  "a",
			err:   "without PIDFile",
		},
		{
			name:  "no ExecStart",
			files: map[string]string{lib + "a.service": "[Service]\nExecStart=/bin/a\nExecStart=\n"},
			unit:  "a",
			err:   "no ExecStart",
		},
		{
			name:  "host-only specifier",
			files: map[string]string{lib + "a.service": "[Service]\nExecStart=/bin/a %H\n"},
			unit:  "a",
			err:   "%H",
		},
		{
			name: "prefixes, quoting, continuation, directories, limits, signals",
			files: map[string]string{lib + "a.service": "[Service]\n" +
				"ExecStartPre=-+/bin/pre 'a b' \"c\\\"d\" e\\x41\n" +
				"ExecStart=@/bin/real argv0 --flag \\\n  continued\n" +
				"ExecStartPost=:/bin/post $NOT\n" +
				"StateDirectory=a a/b\nStateDirectoryMode=0700\nLogsDirectory=x\nConfigurationDirectory=c\n" +
				"LimitNOFILE=1024:4096\nLimitCORE=infinity\nLimitMEMLOCK=64K\n" +
				"KillSignal=SIGQUIT\nTimeoutStopSec=1min 30s\nWorkingDirectory=-/srv\nEnvironmentFile=-/etc/default/a\n"},
			unit: "a",
			check: func(t *testing.T, s *Service) {
				pre := Command{Path: "/bin/pre", Args: []string{"/bin/pre", "a b", `c"d`, "eA"}, IgnoreFailure: true, Privileged: true}
				if !reflect.DeepEqual(s.Pre, []Command{pre}) {
					t.Errorf("Pre = %+v, want %+v", s.Pre, pre)
				}
				start := Command{Path: "/bin/real", Args: []string{"argv0", "--flag", "continued"}}
				if !reflect.DeepEqual(s.Start, []Command{start}) {
					t.Errorf("Start = %+v, want %+v", s.Start, start)
				}
				if !s.Post[0].NoExpand {
					t.Errorf("Post = %+v: want NoExpand", s.Post)
				}
				dirs := []Dir{{"/var/lib/a", 0o700, true}, {"/var/lib/a/b", 0o700, true}, {"/var/log/x", 0o755, true}, {"/etc/c", 0o755, false}}
				if !reflect.DeepEqual(s.Dirs, dirs) {
					t.Errorf("Dirs = %+v, want %+v", s.Dirs, dirs)
				}
				limits := []Rlimit{{"nofile", 1024, 4096}, {"core", 1<<64 - 1, 1<<64 - 1}, {"memlock", 64 << 10, 64 << 10}}
				if !reflect.DeepEqual(s.Rlimits, limits) {
					t.Errorf("Rlimits = %+v, want %+v", s.Rlimits, limits)
				}
				if s.KillSignal != unix.SIGQUIT || s.TimeoutStop != 90*time.Second || s.Dir != "/srv" || !s.DirOptional {
					t.Errorf("got %+v", s)
				}
				if !reflect.DeepEqual(s.EnvFiles, []EnvFile{{"/etc/default/a", true}}) {
					t.Errorf("EnvFiles = %+v", s.EnvFiles)
				}
			},
		},
		{
			name:  "escaping directory",
			files: map[string]string{lib + "a.service": "[Service]\nExecStart=/bin/a\nStateDirectory=../etc\n"},
			unit:  "a",
			err:   "relative path below /var/lib",
		},
		{
			name:  "link out of the root stays in it",
			files: map[string]string{etc + "a.service": "->../../../../../../../lib/systemd/system/b.service", lib + "b.service": "[Service]\nExecStart=/bin/b\n"},
			unit:  "a",
			check: func(t *testing.T, s *Service) {
				if s.Name != "b.service" {
					t.Errorf("Name = %q", s.Name)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Load(root(t, tt.files), tt.unit)
			var s *Service
			if err == nil {
				s, err = Translate(l)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestMaskedIsErrMasked(t *testing.T) {
	_, err := Load(root(t, map[string]string{"/etc/systemd/system/a.service": "->/dev/null"}), "a")
	if !errors.Is(err, ErrMasked) {
		t.Fatalf("error %v, want ErrMasked", err)
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		in   string
		want Name
		err  string
	}{
		{"nginx", Name{Full: "nginx.service", Prefix: "nginx"}, ""},
		{"nginx.service", Name{Full: "nginx.service", Prefix: "nginx"}, ""},
		{"postgresql@15-main", Name{Full: "postgresql@15-main.service", Prefix: "postgresql", Instance: "15-main", Template: true}, ""},
		{"x.socket", Name{}, "only service units"},
		{"", Name{}, "want 1 to"},
		{"../etc/passwd", Name{}, "not allowed"},
		{"a@b@c", Name{}, "PREFIX@INSTANCE"},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseName(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseName(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{`a b  c`, []string{"a", "b", "c"}, ""},
		{`"a b" 'c d'`, []string{"a b", "c d"}, ""},
		{`-g 'daemon on; master_process on;'`, []string{"-g", "daemon on; master_process on;"}, ""},
		{`a"b c"d`, []string{"ab cd"}, ""},
		{`"" x`, []string{"", "x"}, ""},
		{`\t\n\\\x41\101`, []string{"\t\n\\AA"}, ""},
		{`"unbalanced`, nil, "unbalanced"},
		{`bad\q`, nil, "unknown escape"},
		{`end\`, nil, "trailing backslash"},
	}
	for _, tt := range tests {
		got, err := SplitWords(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SplitWords(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitWords(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTimespan(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90", 90 * time.Second, false},
		{"5s", 5 * time.Second, false},
		{"1min 30s", 90 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1h", time.Hour, false},
		{"infinity", 0, false},
		{"0", 0, false},
		{"x", 0, true},
		{"99999999d", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseTimespan(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseTimespan(%q) = %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzTranslate parses and translates arbitrary unit files, as an image
// could ship them: no panic, and a translated service keeps its limits.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte(redisUnit))
	f.Add([]byte("[Service]\nType=forking\nPIDFile=x.pid\nExecStart=-@/bin/a a0 \"$X\" ${Y} %i %%\nEnvironment=A=1\nStateDirectory=a b\nLimitNOFILE=1:2\n"))
	f.Add([]byte("[Service]\nExecStart=/bin/a \\\n b\nExecStart=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := parseOptions(data)
		if err != nil {
			return
		}
		l := &Loaded{Name: Name{Full: "f@i.service", Prefix: "f", Instance: "i", Template: true}, Files: []File{{Path: "/lib/systemd/system/f@.service", Options: opts}}}
		s, err := Translate(l)
		if err != nil {
			return
		}
		if len(s.Start) == 0 || s.UMask > 0o777 {
			t.Fatalf("translated a service without ExecStart or with umask %o", s.UMask)
		}
		for _, d := range s.Dirs {
			if strings.Contains(d.Path, "..") {
				t.Fatalf("directory %q escapes its root", d.Path)
			}
		}
	})
}
