package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/e2e/fixture"
	"github.com/arrowsys/arrow/internal/netnstest"
	"github.com/arrowsys/arrow/podnet"
)

// The CRI tests drive a private containerd 1.6 (Debian's) through its CRI
// plugin with crictl, as kubelet would, with Arrow's runtime v2 shim,
// containerd-shim-arrow-v1, as the runtime handler "arrow". containerd,
// its CNI bridge and its pods' namespaces all live in a network namespace
// the test makes, so nothing touches the host's network, and everything
// it keeps is in temporary directories.

// criEnv is one private containerd with its CRI plugin.
type criEnv struct {
	*testContainerd
	crictlConf string
	netns      string // the network namespace containerd runs in
	subnet     netip.Prefix
	bridge     string
	// podCgroup is the pods' cgroup parent (unique to the test).
	podCgroup string
	// netnsBefore are the pod namespaces that were there before: those
	// of another containerd of this machine.
	netnsBefore map[string]bool
}

// criImage is the image of the tests' containers; criPauseImage the
// sandbox image CRI asks for, which Arrow never boots: both are the
// busybox fixture.
const (
	criImage      = "docker.io/arrow-e2e/busybox:1"
	criPauseImage = "docker.io/arrow-e2e/pause:1"
)

// criConfig is the CRI plugin's configuration of the tests: the runtime
// handler arrow, as a cluster's administrator would configure it (see
// the README), and a CNI bridge network.
const criConfig = `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[1]q
  disable_apparmor = true
  # runc (for comparison by hand) cannot lower a sandbox's oom_score_adj
  # on this kind of machine.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    # The test's own snapshots: the native snapshotter copies, which
    # any file system under the temporary directory can hold.
    snapshotter = "native"
    default_runtime_name = "arrow"
    # runc, for comparison by hand (crictl runp --runtime runc).
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.arrow]
      runtime_type = "io.containerd.arrow.v1"
      # kubelet's container annotations (the declared ports among
      # them) reach the shim only when listed here.
      pod_annotations = ["*"]
      container_annotations = ["io.kubernetes.*"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[2]q
    conf_dir = %[3]q
    max_conf_num = 1
`

// startCRI starts a private containerd with the CRI plugin in a network
// namespace of its own, and imports the images. It is stopped, its pods
// removed and what it left checked, when the test ends.
func startCRI(t *testing.T) *criEnv {
	t.Helper()
	for _, bin := range []string{"crictl", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is needed for the CRI tests: run setup.sh (%v)", bin, err)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(criCNIBinDir, plugin)); err != nil {
			t.Fatalf("CNI plugin %s is needed for the CRI tests: run setup.sh (containernetworking-plugins): %v", plugin, err)
		}
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	cniDir, err := os.MkdirTemp("", "arrow-cni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cniDir) })
	e := &criEnv{
		bridge:    "arwcri" + hex.EncodeToString(b),
		podCgroup: "/arrow-cri-" + hex.EncodeToString(b),
		// A subnet no host network here uses: it exists only in the
		// test's namespace anyway.
		subnet:      netip.MustParsePrefix(fmt.Sprintf("10.88.%d.0/24", 100+int(b[0])%100)),
		netnsBefore: cniNetnsMounts(t),
	}
	e.netns, _ = netnstest.New(t)

	cniConf := filepath.Join(cniDir, "net.d")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		t.Fatal(err)
	}
	conflist := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "arrow-cri-test",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": e.bridge, "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": e.subnet.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(cniDir, "ipam"),
			},
		}},
	}
	writeJSON(t, filepath.Join(cniConf, "10-arrow-cri-test.conflist"), conflist)

	e.testContainerd = newContainerd(t, containerdSetup{
		cri:       fmt.Sprintf(criConfig, criPauseImage, criCNIBinDir, cniConf),
		netns:     e.netns,
		namespace: "k8s.io",
	})
	e.cgroupParents = append(e.cgroupParents, e.podCgroup)
	e.beforeStop = func() {
		if out, err := e.crictlErr("rmp", "-fa"); err != nil {
			e.t.Logf("crictl rmp -fa: %v\n%s", err, out)
		}
	}
	e.crictlConf = filepath.Join(e.dir, "crictl.yaml")
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 180\n", e.address, e.address)
	if err := os.WriteFile(e.crictlConf, []byte(crictlConf), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := e.crictlErr("info"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI did not come up: %v\n%s", err, e.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The images, from docker-save archives: there is no registry.
	for _, tag := range []string{criImage, criPauseImage} {
		archive := filepath.Join(e.dir, strings.NewReplacer("/", "_", ":", "_").Replace(tag)+".tar")
		if err := fixture.BusyboxArchive(archive, tag); err != nil {
			t.Fatal(err)
		}
		e.mustCtr("images", "import", "--snapshotter", "native", "--digests", archive)
	}
	if out := e.crictl("images"); !strings.Contains(out, "arrow-e2e/busybox") || !strings.Contains(out, "arrow-e2e/pause") {
		t.Fatalf("crictl images:\n%s", out)
	}
	return e
}

// criCNIBinDir is where Debian's containernetworking-plugins puts CNI's
// plugins.
const criCNIBinDir = "/usr/lib/cni"

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// crictl runs crictl against the private containerd and fails the test
// if it fails. It returns crictl's standard output alone: crictl warns
// on standard error (of a pod without a cgroup parent, for one), and
// what it prints there must not be taken for an ID.
func (e *criEnv) crictl(args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("crictl %s: %v\n%s\n%s\ncontainerd:\n%s", strings.Join(args, " "), err, out, errOut, e.logTail())
	}
	return out
}

// crictlErr runs crictl and returns its output, standard error after
// standard output (an exec's remote streams), and its error.
func (e *criEnv) crictlErr(args ...string) (string, error) {
	out, errOut, err := e.run(args...)
	return strings.TrimSpace(out + "\n" + errOut), err
}

func (e *criEnv) run(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "crictl", append([]string{"--config", e.crictlConf}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return strings.TrimSpace(out.String()), strings.TrimSpace(errOut.String()), err
}

// mountsUnder lists the mount points under the test's directory, and the
// pod namespaces' bind mounts that CRI made (named cni-…, in
// /run/netns) since the test started: they go with their pods.
func (e *criEnv) mountsUnder() []string {
	var found []string
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		e.t.Errorf("mountinfo: %v", err)
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) <= 4 {
			continue
		}
		mp := fields[4]
		if strings.HasPrefix(mp, e.dir+"/") || (strings.HasPrefix(mp, "/run/netns/cni-") && !e.netnsBefore[mp]) {
			found = append(found, mp)
		}
	}
	return found
}

// cniNetnsMounts lists the pod namespaces' bind mounts of the host.
func cniNetnsMounts(t *testing.T) map[string]bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && strings.HasPrefix(fields[4], "/run/netns/cni-") {
			m[fields[4]] = true
		}
	}
	return m
}

// podConfig is a pod sandbox's config, as kubelet would send it.
func (e *criEnv) podConfig(name string) string {
	path := filepath.Join(e.dir, name+"-pod.json")
	writeJSON(e.t, path, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"hostname":      name,
		"log_directory": filepath.Join(e.dir, "logs", name),
		"dns_config":    map[string]any{"servers": []string{"192.0.2.53"}, "searches": []string{"default.svc.cluster.local"}},
		// The pod's cgroup, as kubelet's cgroupfs driver names it.
		"linux": map[string]any{"cgroup_parent": e.podCgroup},
	})
	return path
}

// containerConfig is a container's config; ports are declared as kubelet
// declares them, in the container's annotations.
func (e *criEnv) containerConfig(name string, ports []int, mounts []map[string]any, command ...string) string {
	path := filepath.Join(e.dir, name+"-container.json")
	var decl []map[string]any
	for _, p := range ports {
		decl = append(decl, map[string]any{"name": "p" + strconv.Itoa(p), "containerPort": p, "protocol": "TCP"})
	}
	annotations := map[string]string{}
	if decl != nil {
		b, _ := json.Marshal(decl)
		annotations[podnet.PortsAnnotation] = string(b)
	}
	writeJSON(e.t, path, map[string]any{
		"metadata":    map[string]any{"name": name},
		"image":       map[string]any{"image": criImage},
		"command":     command,
		"log_path":    name + ".log",
		"annotations": annotations,
		"mounts":      mounts,
		"linux":       map[string]any{},
	})
	return path
}

// podIP is the pod's IP as CRI reports it.
func (e *criEnv) podIP(pod string) netip.Addr {
	e.t.Helper()
	var status struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	out := e.crictl("inspectp", "-o", "json", pod)
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		e.t.Fatalf("crictl inspectp: %v\n%s", err, out)
	}
	ip, err := netip.ParseAddr(status.Status.Network.IP)
	if err != nil || !e.subnet.Contains(ip) {
		e.t.Fatalf("pod IP %q: want an address of %s\n%s", status.Status.Network.IP, e.subnet, out)
	}
	return ip
}

// fromNode fetches url from the test's namespace, where containerd and
// the CNI bridge are: the node's side of the pod network.
func (e *criEnv) fromNode(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", e.netns, fixture.BusyboxPath, "wget", "-q", "-O", "-", url).CombinedOutput()
	return string(out), err
}

// TestCRIPod runs a pod of two containers, each in its own VM, through
// CRI: a server on a declared port and a client. The node reaches the
// server at the pod IP, the client reaches it there too, the server
// reaches itself there, exec runs commands in both with their output and
// exit status, and removing the pod leaves no VM, tap, shim or mount.
func TestCRIPod(t *testing.T) {
	e := startCRI(t)
	before := qemuProcesses(t)

	// A pod on the node's own network is refused, by name, and leaves
	// nothing: a VM cannot share the host's network stack.
	hostPod := filepath.Join(e.dir, "host-pod.json")
	writeJSON(t, hostPod, map[string]any{
		"metadata": map[string]any{"name": "host-net", "namespace": "default", "uid": "host-net-uid", "attempt": 1},
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	if out, err := e.crictlErr("runp", "--runtime", "arrow", hostPod); err == nil || !strings.Contains(out, "hostNetwork") {
		t.Errorf("crictl runp of a hostNetwork pod: %v, %s; want it refused, naming hostNetwork", err, out)
	}
	if out := e.crictl("pods", "-q"); out != "" {
		t.Errorf("a refused pod is listed: %s", out)
	}

	pod := e.crictl("runp", "--runtime", "arrow", e.podConfig("arrow-cri"))
	ip := e.podIP(pod)
	t.Logf("pod %s at %s", pod, ip)

	// What kubelet mounts into every container: a termination-log file
	// (which a VM cannot share: left out) and volumes, host directories
	// such as an emptyDir, which the pod's VMs share.
	shared := filepath.Join(e.dir, "emptydir")
	termLog := filepath.Join(e.dir, "termination-log")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(termLog, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	kubeletMounts := []map[string]any{
		{"container_path": "/dev/termination-log", "host_path": termLog},
		{"container_path": "/shared", "host_path": shared},
	}
	server := e.crictl("create", pod, e.containerConfig("server", []int{8080}, kubeletMounts,
		"/bin/sh", "-c", "mkdir -p /tmp/w && echo hello from the server > /tmp/w/index.html && echo written by the server > /shared/note && exec httpd -f -p 8080 -h /tmp/w"),
		e.podConfig("arrow-cri"))
	e.crictl("start", server)
	client := e.crictl("create", pod, e.containerConfig("client", nil, kubeletMounts, "/bin/sleep", "3600"), e.podConfig("arrow-cri"))
	e.crictl("start", client)

	url := fmt.Sprintf("http://%s:8080/", ip)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := e.fromNode(url)
		if err == nil && out == "hello from the server\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never fetched %s: %v %s\ncontainers:\n%s\ncontainerd:\n%s", url, err, out, e.crictl("ps", "-a"), e.logTail())
		}
		time.Sleep(time.Second)
	}

	// exec: output and exit status, in each VM.
	for _, tc := range []struct {
		container string
		cmd       []string
		out       string
		code      int
	}{
		{client, []string{"wget", "-q", "-O", "-", url}, "hello from the server", 0},
		{server, []string{"wget", "-q", "-O", "-", url}, "hello from the server", 0},
		{client, []string{"sh", "-c", "echo out; echo err >&2"}, "out\n\nerr", 0},
		// crictl (as kubelet's probes) gets ExecSync's exit status and
		// standard error in the CRI client's error, and exits 1 itself.
		{client, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "exited with 3: err", 1},
		{client, []string{"cat", "/etc/resolv.conf"}, "nameserver 192.0.2.53", 0},
		{client, []string{"cat", "/shared/note"}, "written by the server", 0},
	} {
		out, err := e.crictlErr(append([]string{"exec", "--sync", "--timeout", "120", tc.container}, tc.cmd...)...)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("crictl exec %v: %v", tc.cmd, err)
		}
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("crictl exec %v: status %d, output %q; want %d and %q", tc.cmd, code, out, tc.code, tc.out)
		}
	}

	// kubelet's stats: per container, from each VM's cgroup, which is in
	// the pod's cgroup, where kubelet's limits and accounting see it.
	if out := e.crictl("stats", "-o", "json"); !strings.Contains(out, client) || !strings.Contains(out, server) || !strings.Contains(out, "workingSetBytes") {
		t.Errorf("crictl stats: want both containers' memory:\n%s", out)
	}
	for _, c := range []string{client, server} {
		var info struct {
			Info struct {
				Pid int `json:"pid"`
			} `json:"info"`
		}
		out := e.crictl("inspect", "-o", "json", c)
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.Info.Pid == 0 {
			t.Fatalf("crictl inspect %s: %v\n%s", c, err, out)
		}
		if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Info.Pid)); err != nil || !strings.Contains(string(cg), ":"+e.podCgroup+"/"+c+"\n") {
			t.Errorf("the VM of %s: cgroups %v\n%s\nwant %s/%s", c, err, cg, e.podCgroup, c)
		}
	}

	for _, c := range []string{client, server} {
		e.crictl("stop", "--timeout", "10", c)
		e.crictl("rm", c)
	}
	e.crictl("stopp", pod)
	e.crictl("rmp", pod)
	if out := e.crictl("pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
	assertNoNewQEMU(t, before)
	if out := netnstest.Run(t, "ip", "-n", e.netns, "-o", "link"); strings.Contains(out, podnet.TapPrefix) || strings.Contains(out, "veth") {
		t.Errorf("links left in the node's namespace:\n%s", out)
	}
	if m := e.mountsUnder(); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}
