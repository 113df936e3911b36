package dockerapi

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/arrowsys/arrow/api"
)

// testArrow is a running arrow on a bridge network, made by create.
func testArrow(t *testing.T) api.Arrow {
	t.Helper()
	req, _, err := testTranslator().translate("web1", decodeCreate(t, `{"Image":"web","Cmd":["nginx","-g","daemon off;"],"Labels":{"com.docker.compose.project":"p"},
		"HostConfig":{"AutoRemove":true,"NetworkMode":"p_default","Binds":["data:/data","/srv:/srv:ro"],"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]},"Memory":268435456},
		"NetworkingConfig":{"EndpointsConfig":{"p_default":{"Aliases":["web"]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return api.Arrow{
		ID: strings.Repeat("ab", 32), Name: "web1", Config: req.Config, Created: now.Add(-time.Hour),
		State: api.Running, StartedAt: now.Add(-5 * time.Minute), Pid: 99, Restarts: 2,
		Endpoint: &api.Endpoint{ID: "ep1", Name: "web1", Address: "10.89.0.5/24", MAC: "52:54:00:12:34:56"},
		LogPath:  "/var/lib/arrow/arrows/x/log",
	}
}

func TestInspectOf(t *testing.T) {
	a := testArrow(t)
	got := inspectOf(&a, imageDefaults{ID: "sha256:abcd"}, "10.89.0.1")
	if got.ID != a.ID || got.Name != "/web1" || got.Image != "sha256:abcd" || got.Path != "nginx" || !reflect.DeepEqual(got.Args, []string{"-g", "daemon off;"}) {
		t.Errorf("identity: %+v", got)
	}
	if s := got.State; s.Status != container.StateRunning || !s.Running || s.Paused || s.Pid != 99 || s.StartedAt != a.StartedAt.Format(time.RFC3339Nano) || s.FinishedAt != "0001-01-01T00:00:00Z" {
		t.Errorf("state %+v", s)
	}
	if got.RestartCount != 2 {
		t.Errorf("restart count %d", got.RestartCount)
	}
	if c := got.Config; c.Image != "web" || c.Labels["com.docker.compose.project"] != "p" || c.Labels[extraLabel] != "" {
		t.Errorf("config: image %q labels %v", c.Image, c.Labels)
	}
	if _, ok := got.Config.ExposedPorts[network.MustParsePort("80/tcp")]; !ok {
		t.Errorf("exposed ports %v", got.Config.ExposedPorts)
	}
	if hc := got.HostConfig; !hc.AutoRemove || hc.NetworkMode != "p_default" || hc.Memory != 256<<20 || len(hc.Binds) != 2 {
		t.Errorf("host config %+v", hc)
	}
	b := got.NetworkSettings.Ports[network.MustParsePort("80/tcp")]
	if len(b) != 1 || b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != "8080" {
		t.Errorf("ports %v", got.NetworkSettings.Ports)
	}
	ep := got.NetworkSettings.Networks["p_default"]
	if ep == nil || ep.NetworkID != netID("p_default") || ep.EndpointID != netEndpointID("p_default", a.ID) || ep.IPAddress.String() != "10.89.0.5" || ep.IPPrefixLen != 24 || ep.Gateway.String() != "10.89.0.1" || !reflect.DeepEqual(ep.Aliases, []string{"web"}) || ep.MacAddress.String() != "52:54:00:12:34:56" {
		t.Errorf("endpoint %+v", ep)
	}
	if len(got.Mounts) != 2 || got.Mounts[0].Type != "volume" || got.Mounts[0].Name != "data" || got.Mounts[1].Type != "bind" || got.Mounts[1].RW {
		t.Errorf("mounts %+v", got.Mounts)
	}
	// It must encode: clients decode the JSON, not the struct.
	if _, err := json.Marshal(got); err != nil {
		t.Fatal(err)
	}

	a.State, a.Pid, a.ExitCode, a.FinishedAt = api.Exited, 0, 3, time.Now()
	got = inspectOf(&a, imageDefaults{}, "")
	if s := got.State; s.Status != container.StateExited || s.Running || s.ExitCode != 3 || s.Pid != 0 {
		t.Errorf("exited state %+v", s)
	}
	if len(got.NetworkSettings.Ports) != 0 {
		t.Errorf("an exited container shows bindings %v", got.NetworkSettings.Ports)
	}
}

func TestStateAndStatus(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		a      api.Arrow
		state  container.ContainerState
		status string
	}{
		{api.Arrow{State: api.Created}, container.StateCreated, "Created"},
		{api.Arrow{State: api.Starting, StartedAt: now.Add(-3 * time.Second)}, container.StateRunning, "Up 3 seconds"},
		{api.Arrow{State: api.Running, StartedAt: now.Add(-5 * time.Minute)}, container.StateRunning, "Up 5 minutes"},
		{api.Arrow{State: api.Running, StartedAt: now.Add(-5 * time.Minute), Health: "healthy"}, container.StateRunning, "Up 5 minutes (healthy)"},
		{api.Arrow{State: api.Running, Paused: true, StartedAt: now.Add(-3 * time.Hour)}, container.StatePaused, "Up 3 hours (Paused)"},
		{api.Arrow{State: api.Restarting, ExitCode: 1, FinishedAt: now.Add(-time.Second)}, container.StateRestarting, "Restarting (1) 1 second ago"},
		{api.Arrow{State: api.Exited, ExitCode: 137, FinishedAt: now.Add(-2 * 24 * time.Hour)}, container.StateExited, "Exited (137) 2 days ago"},
	} {
		if got := stateOf(&tc.a); got != tc.state {
			t.Errorf("%+v: state %s, want %s", tc.a, got, tc.state)
		}
		if got := statusOf(&tc.a, now); got != tc.status {
			t.Errorf("%+v: status %q, want %q", tc.a, got, tc.status)
		}
	}
}

func TestSummaryOf(t *testing.T) {
	a := testArrow(t)
	s := summaryOf(&a, imageDefaults{ID: "sha256:abcd"}, "10.89.0.1", time.Now())
	if s.ID != a.ID || !reflect.DeepEqual(s.Names, []string{"/web1"}) || s.Image != "web" || s.ImageID != "sha256:abcd" ||
		s.Command != "nginx -g daemon off;" || s.State != container.StateRunning || s.HostConfig.NetworkMode != "p_default" {
		t.Errorf("summary %+v", s)
	}
	if len(s.Ports) != 1 || s.Ports[0].PrivatePort != 80 || s.Ports[0].PublicPort != 8080 || s.Ports[0].IP.String() != "127.0.0.1" || s.Ports[0].Type != "tcp" {
		t.Errorf("ports %+v", s.Ports)
	}
	if _, ok := s.Labels[extraLabel]; ok {
		t.Error("Arrow's own label shown")
	}
}

func TestParseDockerFilters(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want dockerFilters
		bad  bool
	}{
		{``, dockerFilters{}, false},
		{`{"label":{"a=b":true,"c":true},"status":{"running":true}}`, dockerFilters{"label": {"a=b": true, "c": true}, "status": {"running": true}}, false},
		{`{"label":["a=b"],"name":["web"]}`, dockerFilters{"label": {"a=b": true}, "name": {"web": true}}, false},
		{`{"label":{"a":false}}`, dockerFilters{}, false},
		{`{"label":"a"}`, nil, true},
		{`[1]`, nil, true},
		{`{`, nil, true},
	} {
		r := httptest.NewRequest("GET", "/containers/json?filters="+url.QueryEscape(tc.q), nil)
		got, err := parseDockerFilters(r)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: accepted", tc.q)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.q, got, err, tc.want)
		}
	}
}

func TestContainerFilter(t *testing.T) {
	a := testArrow(t)
	exited := a
	exited.State, exited.ExitCode = api.Exited, 2
	for _, tc := range []struct {
		f    dockerFilters
		a    *api.Arrow
		want bool
	}{
		{dockerFilters{}, &a, true},
		{dockerFilters{"label": {"com.docker.compose.project=p": true}}, &a, true},
		{dockerFilters{"label": {"com.docker.compose.project": true}}, &a, true},
		{dockerFilters{"label": {"com.docker.compose.project=q": true}}, &a, false},
		{dockerFilters{"label": {"com.docker.compose.project=p": true, "other": true}}, &a, false},
		{dockerFilters{"label": {extraLabel: true}}, &a, false},
		{dockerFilters{"name": {"web": true}}, &a, true},
		{dockerFilters{"name": {"^/web1$": true}}, &a, true},
		{dockerFilters{"name": {"db": true}}, &a, false},
		{dockerFilters{"id": {"abab": true}}, &a, true},
		{dockerFilters{"id": {"cd": true}}, &a, false},
		{dockerFilters{"status": {"running": true}}, &a, true},
		{dockerFilters{"status": {"exited": true}}, &a, false},
		{dockerFilters{"status": {"exited": true}}, &exited, true},
		{dockerFilters{"exited": {"2": true}}, &exited, true},
		{dockerFilters{"exited": {"0": true}}, &exited, false},
		{dockerFilters{"ancestor": {"web": true}}, &a, true},
		{dockerFilters{"ancestor": {"web:latest": true}}, &a, true},
		{dockerFilters{"ancestor": {"sha256:abcd": true}}, &a, true},
		{dockerFilters{"ancestor": {"db": true}}, &a, false},
		{dockerFilters{"network": {"p_default": true}}, &a, true},
		{dockerFilters{"network": {"bridge": true}}, &a, false},
		{dockerFilters{"volume": {"data": true}}, &a, true},
	} {
		cf, err := newContainerFilter(tc.f, containerFilterKeys)
		if err != nil {
			t.Errorf("%v: %v", tc.f, err)
			continue
		}
		if got := cf.match(tc.a, "sha256:abcd"); got != tc.want {
			t.Errorf("%v on %s: %v, want %v", tc.f, tc.a.State, got, tc.want)
		}
	}
	for _, bad := range []dockerFilters{
		{"before": {"x": true}},
		{"name": {"(": true}},
		{"status": {"sleeping": true}},
		{"exited": {"x": true}},
	} {
		if _, err := newContainerFilter(bad, containerFilterKeys); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestParsePS(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want container.TopResponse
	}{
		{
			"UID        PID  PPID  C STIME TTY          TIME CMD\nroot         1     0  0 10:00 ?        00:00:00 /sbin/init  with  args\nroot        42     1  0 10:00 ?        00:00:00 sleep 100\n",
			container.TopResponse{
				Titles: []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"},
				Processes: [][]string{
					{"root", "1", "0", "0", "10:00", "?", "00:00:00", "/sbin/init  with  args"},
					{"root", "42", "1", "0", "10:00", "?", "00:00:00", "sleep 100"},
				},
			},
		},
		{
			"PID   USER     TIME  COMMAND\n    1 root      0:00 sleep 1000\n",
			container.TopResponse{Titles: []string{"PID", "USER", "TIME", "COMMAND"}, Processes: [][]string{{"1", "root", "0:00", "sleep 1000"}}},
		},
		{"", container.TopResponse{Titles: []string{}, Processes: [][]string{}}},
	} {
		if got := parsePS(tc.out); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePS(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func TestStatsOf(t *testing.T) {
	a := testArrow(t)
	pre := cpuCounters{total: 5e9, system: 1000e9}
	// 50% of one CPU over a second on a 4-CPU host whose counter moved
	// by 4 s.
	resp, cur := statsOf(&a, &api.Stats{ID: a.ID, CPUPercent: 50, MemoryBytes: 100 << 20, MemoryLimit: 512 << 20, Pids: 7}, pre, 1004e9, time.Second, 4, time.Now(), 8<<30)
	cpuDelta := float64(resp.CPUStats.CPUUsage.TotalUsage - resp.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(resp.CPUStats.SystemUsage - resp.PreCPUStats.SystemUsage)
	// The docker CLI's computation.
	pct := cpuDelta / sysDelta * float64(resp.CPUStats.OnlineCPUs) * 100
	if pct < 49.9 || pct > 50.1 {
		t.Errorf("the CLI would show %.2f%%, want 50%%", pct)
	}
	if cur.total != resp.CPUStats.CPUUsage.TotalUsage || cur.system != 1004e9 || resp.PreCPUStats.CPUUsage.TotalUsage != 5e9 {
		t.Errorf("counters %+v, response %+v", cur, resp.CPUStats)
	}
	if resp.MemoryStats.Usage != 100<<20 || resp.MemoryStats.Limit != 512<<20 || resp.PidsStats.Current != 7 || resp.Name != "/web1" {
		t.Errorf("memory %+v pids %+v name %q", resp.MemoryStats, resp.PidsStats, resp.Name)
	}
	// Without a limit, the host's memory is the limit; without the
	// host's counter, the interval stands for it.
	resp, _ = statsOf(&a, &api.Stats{CPUPercent: 200}, cur, 0, time.Second, 4, time.Now(), 8<<30)
	cpuDelta = float64(resp.CPUStats.CPUUsage.TotalUsage - resp.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta = float64(resp.CPUStats.SystemUsage - resp.PreCPUStats.SystemUsage)
	if pct := cpuDelta / sysDelta * 4 * 100; pct < 199.9 || pct > 200.1 {
		t.Errorf("the CLI would show %.2f%%, want 200%%", pct)
	}
	if resp.MemoryStats.Limit != 8<<30 {
		t.Errorf("limit %d", resp.MemoryStats.Limit)
	}
}

func TestEndpointOfUserNetwork(t *testing.T) {
	a := api.Arrow{ID: strings.Repeat("cd", 32), Name: "u1", State: api.Running}
	es := endpointOf(&a, "")
	if es.IPAddress != userGuest.Addr() || es.Gateway != userGateway || es.NetworkID != netID("bridge") || es.EndpointID == "" {
		t.Errorf("running on the user network: %+v", es)
	}
	a.State = api.Exited
	if es := endpointOf(&a, ""); es.IPAddress.IsValid() || es.EndpointID != "" {
		t.Errorf("exited: %+v", es)
	}
	a.Config.Network, a.State = "none", api.Running
	if es := endpointOf(&a, ""); es.IPAddress.IsValid() || es.NetworkID != netID("none") {
		t.Errorf("none: %+v", es)
	}
}

func TestEffectiveConfig(t *testing.T) {
	img := imageDefaults{Config: ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin", "A=image"}, WorkingDir: "/app", User: "app"}}
	for _, tc := range []struct {
		name                 string
		c                    api.Config
		entrypoint, cmd, env []string
		dir, user            string
	}{
		{"the image's", api.Config{Image: "x"}, []string{"/entry"}, []string{"serve"}, []string{"PATH=/bin", "A=image"}, "/app", "app"},
		{"args replace Cmd", api.Config{Image: "x", Args: []string{"check"}}, []string{"/entry"}, []string{"check"}, []string{"PATH=/bin", "A=image"}, "/app", "app"},
		{"an entrypoint drops the image's Cmd", api.Config{Image: "x", Entrypoint: []string{"sh"}}, []string{"sh"}, nil, []string{"PATH=/bin", "A=image"}, "/app", "app"},
		{"env, dir and user over the image's", api.Config{Image: "x", Env: []string{"A=mine", "B=1"}, Dir: "/w", User: "root"}, []string{"/entry"}, []string{"serve"}, []string{"PATH=/bin", "A=mine", "B=1"}, "/w", "root"},
		{"a host program", api.Config{Program: "/bin/echo", Args: []string{"hi"}}, []string{"/bin/echo"}, []string{"hi"}, nil, "", ""},
	} {
		a := api.Arrow{Config: tc.c}
		e, c, env, dir, user := effectiveConfig(&a, &img)
		if !reflect.DeepEqual(e, tc.entrypoint) || !reflect.DeepEqual(c, tc.cmd) || !reflect.DeepEqual(env, tc.env) || dir != tc.dir || user != tc.user {
			t.Errorf("%s: %q %q %q %q %q", tc.name, e, c, env, dir, user)
		}
	}
}
