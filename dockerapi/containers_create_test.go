package dockerapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// testTranslator resolves every image but "missing" to itself (with
// 80/tcp exposed for "web") and hands out free ports from 40000 up.
func testTranslator() translator {
	next := 40000
	return translator{
		image: func(ref string) (imageInfo, error) {
			switch ref {
			case "missing":
				return imageInfo{}, notFoundf("No such image: missing:latest")
			case "web":
				return imageInfo{ID: "abcd", Ref: "web:latest", Exposed: []string{"80/tcp"}}, nil
			}
			return imageInfo{Ref: ref}, nil
		},
		freePorts: func(proto, ip string, lo, hi, n int) ([]int, error) {
			var out []int
			for range n {
				p := next
				if lo > 0 {
					p = lo + len(out)
				}
				next++
				out = append(out, p)
			}
			return out, nil
		},
	}
}

// decodeCreate decodes a create body as the handler does.
func decodeCreate(t *testing.T, body string) *container.CreateRequest {
	t.Helper()
	var req container.CreateRequest
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return &req
}

func TestTranslateCreate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query string
		body  string
		want  func(c *api.Config) string // "" when c is right
		extra dockerExtra
	}{{
		name: "command and environment",
		body: `{"Image":"busybox","Cmd":["echo","hi"],"Env":["A=1","UNSET"],"WorkingDir":"/tmp","User":"1000:1000","Hostname":"h1","Labels":{"a":"b"},"OpenStdin":true,"StdinOnce":true}`,
		want: func(c *api.Config) string {
			if c.Image != "busybox" || !reflect.DeepEqual(c.Args, []string{"echo", "hi"}) || c.Entrypoint != nil || !reflect.DeepEqual(c.Env, []string{"A=1"}) ||
				c.Dir != "/tmp" || c.User != "1000:1000" || c.Hostname != "h1" || c.Labels["a"] != "b" || !c.Stdin {
				return fmt.Sprintf("%+v", c)
			}
			if x := extraOf(c.Labels); !x.StdinOnce {
				return "StdinOnce not kept"
			}
			return ""
		},
	}, {
		name: "entrypoint replaces the image's",
		body: `{"Image":"busybox","Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"]}`,
		want: func(c *api.Config) string {
			if !reflect.DeepEqual(c.Entrypoint, []string{"/bin/sh", "-c"}) || !reflect.DeepEqual(c.Args, []string{"echo hi"}) {
				return fmt.Sprintf("entrypoint %q args %q", c.Entrypoint, c.Args)
			}
			return ""
		},
	}, {
		name: "an empty entrypoint makes Cmd the command line",
		body: `{"Image":"busybox","Entrypoint":[""],"Cmd":["ls","-l"]}`,
		want: func(c *api.Config) string {
			if !reflect.DeepEqual(c.Entrypoint, []string{"ls"}) || !reflect.DeepEqual(c.Args, []string{"-l"}) {
				return fmt.Sprintf("entrypoint %q args %q", c.Entrypoint, c.Args)
			}
			return ""
		},
	}, {
		name: "memory rounds up to MiB, NanoCpus up to whole CPUs",
		body: `{"Image":"busybox","HostConfig":{"Memory":134217729,"NanoCpus":1500000000}}`,
		want: func(c *api.Config) string {
			if c.MemoryMiB != 129 || c.CPUs != 2 {
				return fmt.Sprintf("memory %d cpus %d", c.MemoryMiB, c.CPUs)
			}
			return ""
		},
	}, {
		name: "CPU quota over period",
		body: `{"Image":"busybox","HostConfig":{"CpuQuota":250000,"CpuPeriod":100000}}`,
		want: func(c *api.Config) string {
			if c.CPUs != 3 {
				return fmt.Sprintf("cpus %d", c.CPUs)
			}
			return ""
		},
	}, {
		name: "port bindings: fixed, free, with an address; publish all the image's",
		body: `{"Image":"web","ExposedPorts":{"9000/udp":{}},"HostConfig":{"PublishAllPorts":true,"PortBindings":{"8080/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}],"53/udp":[{"HostIp":"","HostPort":""}],"54/udp":[{"HostIp":"","HostPort":"0"}]}}}`,
		want: func(c *api.Config) string {
			want := []api.Port{
				{HostPort: 40000, GuestPort: 53, Proto: "udp"},
				{HostPort: 40001, GuestPort: 54, Proto: "udp"},
				{HostIP: "127.0.0.1", HostPort: 18080, GuestPort: 8080, Proto: "tcp"},
				{HostPort: 40003, GuestPort: 80, Proto: "tcp"},
				{HostPort: 40002, GuestPort: 9000, Proto: "udp"},
			}
			if !reflect.DeepEqual(c.Ports, want) {
				return fmt.Sprintf("ports %+v, want %+v", c.Ports, want)
			}
			if c.Image != "web:latest" {
				return "image " + c.Image
			}
			x := extraOf(c.Labels)
			if x.Image != "web" || !reflect.DeepEqual(x.Exposed, []string{"80/tcp", "9000/udp"}) || !x.PublishAllPorts {
				return fmt.Sprintf("extra %+v", x)
			}
			return ""
		},
	}, {
		name: "a host port range",
		body: `{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"9000-9010"}]}}}`,
		want: func(c *api.Config) string {
			if len(c.Ports) != 1 || c.Ports[0].HostPort != 9000 || c.Ports[0].GuestPort != 80 {
				return fmt.Sprintf("ports %+v", c.Ports)
			}
			return ""
		},
	}, {
		name: "binds and mounts: host paths and named volumes",
		body: `{"Image":"busybox","Volumes":{"/data":{}},"HostConfig":{"Binds":["/srv:/srv:ro","data:/data","/x:/y:rw,z"],"Mounts":[{"Type":"volume","Source":"cache","Target":"/cache"},{"Type":"bind","Source":"/etc/hosts","Target":"/h","ReadOnly":true}]}}`,
		want: func(c *api.Config) string {
			want := []api.Volume{
				{Source: "/srv", Target: "/srv", ReadOnly: true},
				{Source: "data", Target: "/data"},
				{Source: "/x", Target: "/y"},
				{Source: "cache", Target: "/cache"},
				{Source: "/etc/hosts", Target: "/h", ReadOnly: true},
			}
			if !reflect.DeepEqual(c.Volumes, want) {
				return fmt.Sprintf("volumes %+v", c.Volumes)
			}
			return ""
		},
	}, {
		name: "restart policy",
		body: `{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}}`,
		want: func(c *api.Config) string {
			if c.Restart != (api.RestartPolicy{Name: "on-failure", MaxRetries: 3}) {
				return fmt.Sprintf("restart %+v", c.Restart)
			}
			return ""
		},
	}, {
		name: "the default network is Arrow's user network",
		body: `{"Image":"busybox","HostConfig":{"NetworkMode":"default"}}`,
		want: func(c *api.Config) string {
			if c.Network != "" || extraOf(c.Labels).NetworkMode != "default" {
				return "network " + c.Network
			}
			return ""
		},
	}, {
		name: "none, and NetworkDisabled",
		body: `{"Image":"busybox","NetworkDisabled":true}`,
		want: func(c *api.Config) string {
			if c.Network != "none" {
				return "network " + c.Network
			}
			return ""
		},
	}, {
		name: "a bridge network with compose's aliases",
		body: `{"Image":"busybox","HostConfig":{"NetworkMode":"proj_default"},"NetworkingConfig":{"EndpointsConfig":{"proj_default":{"Aliases":["web","abc123"]}}}}`,
		want: func(c *api.Config) string {
			if c.Network != "proj_default" || !reflect.DeepEqual(c.NetworkAliases, []string{"web", "abc123"}) {
				return fmt.Sprintf("network %q aliases %q", c.Network, c.NetworkAliases)
			}
			return ""
		},
	}, {
		name: "host-gateway extra hosts are host access",
		body: `{"Image":"busybox","HostConfig":{"ExtraHosts":["host.docker.internal:host-gateway"]}}`,
		want: func(c *api.Config) string {
			if !c.HostAccess || !reflect.DeepEqual(c.HostAliases, []string{"host.docker.internal"}) {
				return fmt.Sprintf("host access %v aliases %q", c.HostAccess, c.HostAliases)
			}
			return ""
		},
	}, {
		name: "zero values clients always send pass",
		body: `{"Image":"busybox","Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":[],"Cmd":null,"Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},
			"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"MaskedPaths":null,"ReadonlyPaths":null},
			"NetworkingConfig":{"EndpointsConfig":{}}}`,
		want: func(c *api.Config) string {
			if c.Image != "busybox" || c.Network != "" || c.Restart.Name != "no" || len(c.Volumes) != 0 || len(c.Ports) != 0 {
				return fmt.Sprintf("%+v", c)
			}
			return ""
		},
	}, {
		name:  "the name's leading slash goes",
		query: "/web1",
		body:  `{"Image":"busybox","Tty":true}`,
		want: func(c *api.Config) string {
			if !c.TTY {
				return "tty lost"
			}
			return ""
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			req, warnings, err := testTranslator().translate(tc.query, decodeCreate(t, tc.body))
			if err != nil {
				t.Fatalf("translate: %v", err)
			}
			if !req.NoStart {
				t.Error("NoStart not set: docker create must not start the container")
			}
			if tc.query != "" && req.Name != strings.TrimPrefix(tc.query, "/") {
				t.Errorf("name %q", req.Name)
			}
			if len(warnings) != 0 {
				t.Errorf("warnings %q", warnings)
			}
			if msg := tc.want(&req.Config); msg != "" {
				t.Error(msg)
			}
			if err := req.Config.Validate(); err != nil {
				t.Errorf("the translation does not validate: %v", err)
			}
		})
	}
}

func TestTranslateCreateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, query, body string
		kind              error  // the sentinel: the status
		msg               string // in the message
	}{
		{"no config", "", `{}`, daemon.ErrInvalid, "config cannot be empty"},
		{"no image", "", `{"Cmd":["x"]}`, daemon.ErrInvalid, "an image is required"},
		{"a missing image", "", `{"Image":"missing"}`, daemon.ErrNotFound, "No such image: missing:latest"},
		{"a bad name", "a b", `{"Image":"busybox"}`, daemon.ErrInvalid, "Invalid container name"},
		{"privileged", "", `{"Image":"busybox","HostConfig":{"Privileged":true}}`, errNotImplemented, "privileged"},
		{"capabilities", "", `{"Image":"busybox","HostConfig":{"CapAdd":["NET_ADMIN"]}}`, errNotImplemented, "CapAdd"},
		{"devices", "", `{"Image":"busybox","HostConfig":{"Devices":[{"PathOnHost":"/dev/kvm","PathInContainer":"/dev/kvm"}]}}`, errNotImplemented, "Devices"},
		{"host PID", "", `{"Image":"busybox","HostConfig":{"PidMode":"host"}}`, errNotImplemented, "PidMode"},
		{"host network", "", `{"Image":"busybox","HostConfig":{"NetworkMode":"host"}}`, errNotImplemented, "host network"},
		{"another container's network", "", `{"Image":"busybox","HostConfig":{"NetworkMode":"container:abc"}}`, errNotImplemented, "container:abc"},
		{"tmpfs mounts", "", `{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t"}]}}`, errNotImplemented, "tmpfs"},
		{"tmpfs", "", `{"Image":"busybox","HostConfig":{"Tmpfs":{"/t":""}}}`, errNotImplemented, "tmpfs"},
		{"anonymous volumes", "", `{"Image":"busybox","Volumes":{"/data":{}}}`, errNotImplemented, "anonymous volumes"},
		{"memory below Arrow's minimum", "", `{"Image":"busybox","HostConfig":{"Memory":6291456}}`, daemon.ErrInvalid, "Minimum memory limit allowed is 32 MiB"},
		{"negative memory", "", `{"Image":"busybox","HostConfig":{"Memory":-5}}`, daemon.ErrInvalid, "Memory"},
		{"CPU shares", "", `{"Image":"busybox","HostConfig":{"CpuShares":512}}`, errNotImplemented, "CPU shares"},
		{"a relative bind", "", `{"Image":"busybox","HostConfig":{"Binds":["./x:/x"]}}`, daemon.ErrInvalid, "absolute path"},
		{"a bind without target", "", `{"Image":"busybox","HostConfig":{"Binds":["/x"]}}`, daemon.ErrInvalid, "invalid volume specification"},
		{"a relative target", "", `{"Image":"busybox","HostConfig":{"Binds":["/x:y"]}}`, daemon.ErrInvalid, "must be absolute"},
		{"a bad restart policy", "", `{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}`, daemon.ErrInvalid, "unknown policy"},
		{"auto-remove with restarts", "", `{"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}`, daemon.ErrInvalid, "AutoRemove"},
		{"a relative working directory", "", `{"Image":"busybox","WorkingDir":"tmp"}`, daemon.ErrInvalid, "absolute path"},
		{"a fixed extra host", "", `{"Image":"busybox","HostConfig":{"ExtraHosts":["db:10.0.0.5"]}}`, errNotImplemented, "ExtraHosts"},
		{"sctp", "", `{"Image":"busybox","HostConfig":{"PortBindings":{"80/sctp":[{"HostPort":"80"}]}}}`, errNotImplemented, "sctp"},
		{"a bad host port", "", `{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"http"}]}}}`, daemon.ErrInvalid, "invalid host port"},
		{"aliases on the default network", "", `{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["x"]}}}}`, daemon.ErrInvalid, "user-defined networks"},
		{"a health check", "", `{"Image":"busybox","Healthcheck":{"Test":["CMD","true"]}}`, errNotImplemented, "health checks"},
		{"a stop signal", "", `{"Image":"busybox","StopSignal":"SIGINT"}`, errNotImplemented, "SIGINT"},
		{"a log driver", "", `{"Image":"busybox","HostConfig":{"LogConfig":{"Type":"syslog"}}}`, errNotImplemented, "syslog"},
		{"our own label", "", `{"Image":"busybox","Labels":{"io.arrowsys.docker":"{}"}}`, daemon.ErrInvalid, "Arrow's own"},
		{"a bad env entry", "", `{"Image":"busybox","Env":["=x"]}`, daemon.ErrInvalid, "env"},
		{"ports with network none", "", `{"Image":"busybox","HostConfig":{"NetworkMode":"none","PortBindings":{"80/tcp":[{"HostPort":"80"}]}}}`, daemon.ErrInvalid, "network mode none"},
		{"a duplicate mount point", "", `{"Image":"busybox","HostConfig":{"Binds":["/a:/x","/b:/x/"]}}`, daemon.ErrInvalid, "Duplicate mount point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := testTranslator().translate(tc.query, decodeCreate(t, tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if errors.Is(err, errNotImplemented) && !strings.HasPrefix(err.Error(), "Arrow does not support ") {
				t.Errorf("error %q does not say what Arrow lacks", err)
			}
		})
	}
}

// FuzzCreate: whatever the body, the translation does not panic, and
// what it accepts validates as Arrow's own API validates a config.
func FuzzCreate(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["echo","hi"]}`,
		`{"Image":"web","HostConfig":{"PublishAllPorts":true,"PortBindings":{"80/tcp":[{"HostPort":""}]}}}`,
		`{"Image":"busybox","HostConfig":{"Binds":["data:/data:ro"],"Memory":33554432,"NanoCpus":1}}`,
		`{"Image":"busybox","Entrypoint":[""],"Cmd":[""]}`,
		`{"Image":"busybox","HostConfig":{"NetworkMode":"n1"},"NetworkingConfig":{"EndpointsConfig":{"n1":{"Aliases":["a"]}}}}`,
		`{"Image":"busybox","HostConfig":{"PortBindings":{"1/udp":[{"HostIp":"::1","HostPort":"1-65535"}]}}}`,
		`{"Image":"x","HostConfig":{"CpuQuota":1,"CpuPeriod":1000000000}}`,
		`null`, `[]`, `{"Config":null}`,
	} {
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, name, body string) {
		var req container.CreateRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		r, _, err := testTranslator().translate(name, &req)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) && !strings.Contains(err.Error(), "free host ports") {
				t.Fatalf("an error without a status: %v", err)
			}
			return
		}
		if err := r.Config.Validate(); err != nil {
			t.Fatalf("accepted %s, which does not validate: %v", body, err)
		}
		if r.Name != "" && !api.ValidName(r.Name) {
			t.Fatalf("accepted the name %q", r.Name)
		}
		if !r.NoStart {
			t.Fatal("NoStart not set")
		}
	})
}
