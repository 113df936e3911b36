package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"web", true},
		{"Web-1.prod_2", true},
		{"0day", true},
		{strings.Repeat("a", 128), true},
		{"", false},
		{strings.Repeat("a", 129), false},
		{"-web", false},
		{"_web", false},
		{".web", false},
		{"web server", false},
		{"web/1", false},
		{"../etc", false},
		{"web\x00", false},
		{"\x00", false},
		{"wéb", false},
		{"web\n", false},
		{"a:b", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"appnet", true}, {"my-net_1.x", true}, {strings.Repeat("n", MaxNetworkNameLen), true},
		{strings.Repeat("n", MaxNetworkNameLen+1), false}, {"user", false}, {"none", false}, {"", false}, {"-x", false}, {"a b", false}, {"ü", false},
	} {
		if got := ValidNetworkName(tc.name); got != tc.ok {
			t.Errorf("ValidNetworkName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		p    RestartPolicy
		ok   bool
		want string // String()
	}{
		{RestartPolicy{}, true, "no"},
		{RestartPolicy{Name: "no"}, true, "no"},
		{RestartPolicy{Name: "always"}, true, "always"},
		{RestartPolicy{Name: "unless-stopped"}, true, "unless-stopped"},
		{RestartPolicy{Name: "on-failure"}, true, "on-failure"},
		{RestartPolicy{Name: "on-failure", MaxRetries: 3}, true, "on-failure:3"},
		{RestartPolicy{Name: "on-failure", MaxRetries: 1 << 20}, true, "on-failure:1048576"},
		{RestartPolicy{Name: "on-failure", MaxRetries: 1<<20 + 1}, false, ""},
		{RestartPolicy{Name: "on-failure", MaxRetries: -1}, false, ""},
		{RestartPolicy{Name: "always", MaxRetries: 1}, false, ""},
		{RestartPolicy{Name: "no", MaxRetries: 1}, false, ""},
		{RestartPolicy{MaxRetries: 2}, false, ""},
		{RestartPolicy{Name: "sometimes"}, false, ""},
		{RestartPolicy{Name: "Always"}, false, ""},
		{RestartPolicy{Name: "on-failure:3"}, false, ""},
	} {
		err := tc.p.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tc.p, err, tc.ok)
		}
		if tc.ok {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.want)
			}
		} else if err != nil && !strings.HasPrefix(err.Error(), "restart: ") {
			t.Errorf("%+v: error %q does not name the field", tc.p, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	many := func(n int, s string) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = s
		}
		return l
	}
	for _, tc := range []struct {
		name string
		c    Config
		err  string // a substring of the error; "" for none
	}{
		{"image", Config{Image: "alpine"}, ""},
		{"program path", Config{Program: "/bin/echo", Args: []string{"hi"}}, ""},
		{"program name", Config{Program: "echo"}, ""},
		{"program in rootfs", Config{Program: "/bin/sh", RootFS: "/srv/root"}, ""},
		{"entrypoint only", Config{Entrypoint: []string{"/bin/sh"}}, ""},
		{"host service", Config{Service: "redis-server"}, ""},
		{"service instance in an image", Config{Service: "postgresql@15-main.service", Image: "pg"}, ""},
		{"service with a program", Config{Service: "nginx", Program: "/usr/sbin/nginx"}, "no program, args or entrypoint"},
		{"service with args", Config{Service: "nginx", Image: "x", Args: []string{"-g"}}, "no program, args or entrypoint"},
		{"service with a terminal", Config{Service: "nginx", TTY: true}, "no input"},
		{"service name", Config{Service: "../etc/passwd"}, "want a unit name"},
		{"everything", Config{
			Image: "alpine", Args: []string{"a"}, Entrypoint: []string{"/bin/sh", "-c"}, Env: []string{"A=1", "B=", "C=x=y"},
			Dir: "/work", User: "1000:1000", Includes: []string{"/etc/hosts"}, Hostname: "h", ReadOnly: true,
			Volumes: []Volume{{Source: "/src", Target: "/dst", ReadOnly: true}}, Stdin: true,
			MemoryMiB: 512, CPUs: 2, Kernel: "/boot/vmlinuz", KernelArgs: "quiet", Accel: "kvm",
			BootTimeout: 30, StopTimeout: 5,
		}, ""},
		{"named volume", Config{Image: "a", Volumes: []Volume{{Source: "pgdata", Target: "/var/lib/postgresql"}, {Source: "a.b_c-1", Target: "/x"}}}, ""},
		{"accel auto", Config{Image: "a", Accel: "auto"}, ""},
		{"accel tcg", Config{Image: "a", Accel: "tcg"}, ""},
		{"limits at max", Config{Image: "a", MemoryMiB: 1 << 20, CPUs: 256}, ""},
		{"args at max", Config{Image: "a", Args: many(4096, "")}, ""},
		{"bytes at max", Config{Image: "a", Args: []string{strings.Repeat("x", 128<<10)}}, ""},
		{"volumes at max", Config{Image: "a", Volumes: make([]Volume, 64)}, "volume"}, // empty paths

		{"nothing", Config{}, "nothing to run"},
		{"args only", Config{Args: []string{"x"}}, "nothing to run"},
		{"image and program", Config{Image: "a", Program: "/bin/sh"}, "not both"},
		{"image and rootfs", Config{Image: "a", RootFS: "/r"}, "not both"},
		{"relative program with slash", Config{Program: "bin/sh"}, "program"},
		{"dot program", Config{Program: "./sh"}, "program"},
		{"bare program in rootfs", Config{Program: "sh", RootFS: "/r"}, "program"},
		{"relative rootfs", Config{Program: "/bin/sh", RootFS: "root"}, "rootfs"},
		{"relative workdir", Config{Image: "a", Dir: "work"}, "workdir"},
		{"relative kernel", Config{Image: "a", Kernel: "vmlinuz"}, "kernel"},
		{"relative include", Config{Image: "a", Includes: []string{"etc/hosts"}}, "include"},
		{"relative volume source", Config{Image: "a", Volumes: []Volume{{Source: "src/data", Target: "/dst"}}}, "volume"},
		{"bad volume name", Config{Image: "a", Volumes: []Volume{{Source: "_src", Target: "/dst"}}}, "volume name"},
		{"one-letter volume name", Config{Image: "a", Volumes: []Volume{{Source: "s", Target: "/dst"}}}, "volume name"},
		{"named volume, relative target", Config{Image: "a", Volumes: []Volume{{Source: "data", Target: "dst"}}}, "absolute target"},
		{"relative volume target", Config{Image: "a", Volumes: []Volume{{Source: "/src", Target: "dst"}}}, "volume"},
		{"too many volumes", Config{Image: "a", Volumes: make([]Volume, 65)}, "at most 64 volumes"},
		{"NUL in arg", Config{Image: "a", Args: []string{"a\x00b"}}, "NUL"},
		{"NUL in entrypoint", Config{Image: "a", Entrypoint: []string{"\x00"}}, "NUL"},
		{"NUL in env", Config{Image: "a", Env: []string{"A=\x00"}}, "NUL"},
		{"NUL in include", Config{Image: "a", Includes: []string{"/etc\x00"}}, "NUL"},
		{"env without =", Config{Image: "a", Env: []string{"A"}}, "env"},
		{"env with empty key", Config{Image: "a", Env: []string{"=1"}}, "env"},
		{"too many args", Config{Image: "a", Args: many(4097, "")}, "at most 4096"},
		{"too many args together", Config{Image: "a", Args: many(2048, ""), Env: many(2049, "A=")}, "at most 4096"},
		{"too many bytes", Config{Image: "a", Args: []string{strings.Repeat("x", 128<<10), "y"}}, "exceed"},
		{"negative memory", Config{Image: "a", MemoryMiB: -1}, "memory"},
		{"huge memory", Config{Image: "a", MemoryMiB: 1<<20 + 1}, "memory"},
		{"negative cpus", Config{Image: "a", CPUs: -1}, "cpus"},
		{"many cpus", Config{Image: "a", CPUs: 257}, "cpus"},
		{"negative boot timeout", Config{Image: "a", BootTimeout: -1}, "timeout"},
		{"negative stop timeout", Config{Image: "a", StopTimeout: -0.5}, "timeout"},
		// 1e10 s overflows a time.Duration.
		{"overflowing boot timeout", Config{Image: "a", BootTimeout: 1e10}, "boot timeout 1e+10 s: want at most 86400"},
		{"overflowing stop timeout", Config{Image: "a", StopTimeout: 1e10}, "stop timeout 1e+10 s: want at most 86400"},
		{"day-long boot timeout", Config{Image: "a", BootTimeout: 86400.5}, "boot timeout"},
		{"huge stop timeout", Config{Image: "a", StopTimeout: 1.7e308}, "stop timeout"},
		{"a day's stop timeout", Config{Image: "a", BootTimeout: 86400, StopTimeout: 86400}, ""},
		{"bad accel", Config{Image: "a", Accel: "hvf"}, "accel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.err != "" && err == nil:
				t.Errorf("Validate() = nil, want an error with %q", tc.err)
			case err != nil && (!strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "config: ")):
				t.Errorf("Validate() = %q, want \"config: ...%s...\"", err, tc.err)
			}
		})
	}
}

func TestCreateRequestValidate(t *testing.T) {
	ok := Config{Image: "alpine"}
	manyLabels := make(map[string]string)
	for i := range 257 {
		manyLabels[fmt.Sprint(i)] = ""
	}
	// with returns ok changed by f.
	with := func(f func(*Config)) Config {
		c := ok
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		r    CreateRequest
		err  string
	}{
		{"minimal", CreateRequest{Config: ok}, ""},
		{"named", CreateRequest{Name: "web-1", Config: ok}, ""},
		{"policy", CreateRequest{Config: with(func(c *Config) { c.Restart = RestartPolicy{Name: "on-failure", MaxRetries: 5} })}, ""},
		{"labels", CreateRequest{Config: with(func(c *Config) { c.Labels = map[string]string{"a": "b", "c": ""} })}, ""},
		{"bad name", CreateRequest{Name: "-x", Config: ok}, "name"},
		{"NUL name", CreateRequest{Name: "x\x00", Config: ok}, "name"},
		{"long name", CreateRequest{Name: strings.Repeat("n", 129), Config: ok}, "name"},
		{"bad policy", CreateRequest{Config: with(func(c *Config) { c.Restart = RestartPolicy{Name: "never"} })}, "restart"},
		{"too many labels", CreateRequest{Config: with(func(c *Config) { c.Labels = manyLabels })}, "labels"},
		{"empty label key", CreateRequest{Config: with(func(c *Config) { c.Labels = map[string]string{"": "v"} })}, "label"},
		{"huge label", CreateRequest{Config: with(func(c *Config) { c.Labels = map[string]string{"k": strings.Repeat("v", 4096)} })}, "label"},
		// A detached arrow's terminal is its shim's: attach and resize.
		{"tty", CreateRequest{Config: with(func(c *Config) { c.TTY = true })}, ""},
		{"tty and stdin", CreateRequest{Config: with(func(c *Config) { c.TTY, c.Stdin = true, true })}, ""},
		{"service with tty", CreateRequest{Config: Config{Service: "nginx", TTY: true}}, "no terminal"},
		{"no start", CreateRequest{Config: ok, NoStart: true}, ""},
		{"v1 policy", CreateRequest{Config: ok, V1Restart: &RestartPolicy{Name: "always"}}, ""},
		{"v1 bad policy", CreateRequest{Config: ok, V1Restart: &RestartPolicy{Name: "never"}}, "restart"},
		{"v1 policy twice", CreateRequest{Config: with(func(c *Config) { c.Restart.Name = "no" }), V1Restart: &RestartPolicy{Name: "always"}}, "twice"},
		{"v1 labels", CreateRequest{Config: ok, V1Labels: map[string]string{"a": "b"}}, ""},
		{"v1 empty label key", CreateRequest{Config: ok, V1Labels: map[string]string{"": "b"}}, "label"},
		{"v1 labels twice", CreateRequest{Config: with(func(c *Config) { c.Labels = map[string]string{} }), V1Labels: map[string]string{"a": "b"}}, "twice"},
		{"bad config", CreateRequest{Name: "ok"}, "nothing to run"},
		{"auto remove", CreateRequest{Config: ok, AutoRemove: true}, ""},
		{"auto remove, policy no", CreateRequest{Config: with(func(c *Config) { c.Restart.Name = "no" }), AutoRemove: true}, ""},
		{"auto remove with a policy", CreateRequest{Config: with(func(c *Config) { c.Restart.Name = "always" }), AutoRemove: true}, "cannot be restarted"},
		{"auto remove with a v1 policy", CreateRequest{Config: ok, V1Restart: &RestartPolicy{Name: "on-failure"}, AutoRemove: true}, "cannot be restarted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.err != "" && err == nil:
				t.Errorf("Validate() = nil, want an error with %q", tc.err)
			case err != nil && !strings.Contains(err.Error(), tc.err):
				t.Errorf("Validate() = %q, want it to mention %q", err, tc.err)
			}
		})
	}
}

func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"config":{"image":"alpine"}}`,
		`{"name":"web","config":{"program":"/bin/sh","args":["-c","x"],"env":["A=1"]},"restart":{"name":"on-failure","max_retries":3},"labels":{"a":"b"}}`,
		`{"config":{"program":"sh","rootfs":"/r","volumes":[{"source":"/a","target":"/b"}],"memory_mib":-1}}`,
		`{"name":"\u0000","config":{"entrypoint":["\u0000"],"include":["x"]}}`,
		`{"config":{"image":"a","accel":"kvm","boot_timeout":1e308,"stop_timeout":-1}}`,
		`{"config":{"image":"a","restart":{"name":"always"},"labels":{"k":""},"tty":true}}`,
		`{"config":{"image":"a","restart":{"name":"no"}},"restart":{"name":"always"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r CreateRequest
		if json.Unmarshal(b, &r) != nil {
			return
		}
		err := r.Validate()
		if err != nil {
			return
		}
		// What validates is sane.
		if r.Name != "" && !ValidName(r.Name) {
			t.Fatalf("invalid name %q validated", r.Name)
		}
		if r.Config.MemoryMiB < 0 || r.Config.CPUs < 0 || r.Config.BootTimeout < 0 || r.Config.StopTimeout < 0 {
			t.Fatalf("negative value validated: %+v", r.Config)
		}
		// A validated timeout converts to a time.Duration without
		// overflow.
		for _, sec := range []float64{r.Config.BootTimeout, r.Config.StopTimeout} {
			if d := time.Duration(sec * float64(time.Second)); d < 0 || d.Seconds() > MaxTimeoutSeconds+1 {
				t.Fatalf("timeout %g s validated, a Duration of %v", sec, d)
			}
		}
		for _, l := range [][]string{r.Config.Args, r.Config.Entrypoint, r.Config.Env, r.Config.Includes} {
			for _, s := range l {
				if strings.IndexByte(s, 0) >= 0 {
					t.Fatalf("NUL validated: %q", s)
				}
			}
		}
		// Folding the first shape's fields in keeps the request valid:
		// what the daemon stores validates as a config.
		r.Fold()
		if err := r.Config.Validate(); err != nil {
			t.Fatalf("valid request, invalid config once folded: %v", err)
		}
		if r.Restart.String() == "" {
			t.Fatal("empty policy string")
		}
	})
}

// TestCreateRequestV1 decodes a request in the API's first shape, with the
// restart policy and labels beside the config: Fold moves them into it.
func TestCreateRequestV1(t *testing.T) {
	var r CreateRequest
	if err := json.Unmarshal([]byte(`{"name":"web","config":{"program":"/bin/true"},"restart":{"name":"on-failure","max_retries":2},"labels":{"k":"v"}}`), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Fold()
	if r.Restart.String() != "on-failure:2" || r.Labels["k"] != "v" || r.V1Restart != nil || r.V1Labels != nil {
		t.Errorf("folded: %+v", r)
	}
	b, _ := json.Marshal(r)
	if want := `"config":{"program":"/bin/true","restart":{"name":"on-failure","max_retries":2},"labels":{"k":"v"}}`; !strings.Contains(string(b), want) {
		t.Errorf("encoded %s, want %s in it", b, want)
	}
}
