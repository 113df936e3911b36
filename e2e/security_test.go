package e2e

// The security suite plays the attacker from inside real guests, and
// checks from outside what the jail (package jail) promises.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"golang.org/x/sys/unix"
)

// serveSecret serves "secret-<tag>" over HTTP on addr until the test ends
// and returns the port.
func serveSecret(t *testing.T, addr, tag string) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "secret-"+tag)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// fetcher is a guest program that fetches each URL with a short timeout
// and prints "URL ok BODY" or "URL blocked ERROR" per line.
const fetcher = `
import sys, urllib.request
for u in sys.argv[1:]:
    try:
        print(u, "ok", urllib.request.urlopen(u, timeout=4).read().decode(), flush=True)
    except Exception as e:
        print(u, "blocked", type(e).__name__, flush=True)
`

// outsideNet makes a network namespace standing in for the outside world,
// joined to the host by a veth pair: the host is 198.18.78.1, the outside
// 198.18.78.2. It returns the namespace's name.
func outsideNet(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("secns%d", os.Getpid()%100000)
	// Not arw…: those names are Arrow's own links.
	host, peer := "secvh"+strconv.Itoa(os.Getpid()%100000), "secvp"+strconv.Itoa(os.Getpid()%100000)
	cmds := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", ns},
		{"ip", "addr", "add", "198.18.78.1/30", "dev", host},
		{"ip", "link", "set", host, "up"},
		{"ip", "-n", ns, "addr", "add", "198.18.78.2/30", "dev", peer},
		{"ip", "-n", ns, "link", "set", peer, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	return ns
}

// serveSecretIn serves "secret-<tag>" on addr:port inside netns ns.
func serveSecretIn(t *testing.T, ns, addr, tag string) int {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("secret-"+tag), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "python3", "-m", "http.server", "-b", addr, "-d", dir, strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 100; i++ {
		if out, err := exec.Command("ip", "netns", "exec", ns, "python3", "-c",
			fmt.Sprintf("import socket; socket.create_connection((%q, %d), 1)", addr, port)).CombinedOutput(); err == nil {
			return port
		} else if i == 99 {
			t.Fatalf("server in %s did not come up: %s", ns, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port
}

// TestSecurityUserNetwork: a guest on the default network cannot fetch a
// page the host serves only on its loopback, nor one on another of the
// host's own addresses; it still reaches the outside; and with
// --add-host NAME:host-gateway it reaches the host by that name.
func TestSecurityUserNetwork(t *testing.T) {
	ns := outsideNet(t)
	loop := serveSecret(t, "127.0.0.1:0", "loopback")
	hostAddr := serveSecret(t, "198.18.78.1:0", "host-address")
	outside := serveSecretIn(t, ns, "198.18.78.2", "outside")
	urls := []string{
		fmt.Sprintf("http://10.0.2.2:%d/", loop),
		fmt.Sprintf("http://198.18.78.1:%d/", hostAddr),
		fmt.Sprintf("http://198.18.78.2:%d/", outside),
	}
	root := t.TempDir()
	linkKernel(t, root)
	r := arrow(t, "", append([]string{"--root", root, "run", "/usr/bin/python3", "-c", fetcher}, urls...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := map[string]string{urls[0]: "blocked", urls[1]: "blocked", urls[2]: "ok secret-outside"}
	checkFetches(t, r.stdout, want)

	// Opted in: the host by name, at the gateway.
	named := fmt.Sprintf("http://host.arrow.internal:%d/", loop)
	r = arrow(t, "", "--root", root, "run", "--add-host", "host.arrow.internal:host-gateway", "/usr/bin/python3", "-c", fetcher, named)
	if r.code != 0 {
		t.Fatalf("with --add-host: exit %d: %s", r.code, r.stderr)
	}
	checkFetches(t, r.stdout, map[string]string{named: "ok secret-loopback"})

	// And the next run of the same uid range is guarded again.
	r = arrow(t, "", "--root", root, "run", "/usr/bin/python3", "-c", fetcher, urls[0])
	checkFetches(t, r.stdout, map[string]string{urls[0]: "blocked"})
}

func checkFetches(t *testing.T, out string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		u, rest, _ := strings.Cut(line, " ")
		got[u] = rest
	}
	for u, w := range want {
		if !strings.HasPrefix(got[u], w) {
			t.Errorf("%s from the guest: %q, want %q", u, got[u], w)
		}
	}
}

// linkKernel shares the host's built kernel with a private data root.
func linkKernel(t *testing.T, root string) {
	t.Helper()
	if err := os.Symlink("/var/lib/arrow/kernels", filepath.Join(root, "kernels")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
}

// vmProc is what /proc says of a VM's QEMU process.
type vmProc struct {
	pid                 int
	uid                 string
	root                string
	ns                  map[string]string
	seccomp, capEff     string
	pidsMax, cgroupPath string
	memMax, memSwapMax  string // v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes; v2: memory.max, memory.swap.max
	v2Memory            bool
}

func readVMProc(t *testing.T, pid int) vmProc {
	t.Helper()
	p := vmProc{pid: pid, ns: map[string]string{}}
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:":
			p.uid = f[1]
		case "Seccomp:":
			p.seccomp = f[1]
		case "CapEff:":
			p.capEff = f[1]
		}
	}
	p.root, _ = os.Readlink(dir + "/root")
	for _, n := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		p.ns[n], _ = os.Readlink(dir + "/ns/" + n)
	}
	cg, _ := os.ReadFile(dir + "/cgroup")
	for _, line := range strings.Split(string(cg), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var max string
		switch {
		case parts[1] == "memory":
			d := filepath.Join("/sys/fs/cgroup/memory", parts[2])
			if b, err := os.ReadFile(d + "/memory.limit_in_bytes"); err == nil {
				p.memMax = strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(d + "/memory.memsw.limit_in_bytes"); err == nil {
				p.memSwapMax = strings.TrimSpace(string(b))
			}
			continue
		case parts[1] == "pids":
			max = filepath.Join("/sys/fs/cgroup/pids", parts[2], "pids.max")
		case parts[0] == "0" && parts[1] == "":
			d := filepath.Join("/sys/fs/cgroup", parts[2])
			if _, err := os.Stat(filepath.Join(d, "pids.max")); err != nil {
				d = filepath.Join("/sys/fs/cgroup/unified", parts[2])
			}
			max = filepath.Join(d, "pids.max")
			// The memory controller under v2 (on a hybrid host it is v1's).
			if b, err := os.ReadFile(filepath.Join(d, "memory.max")); err == nil && p.memMax == "" {
				p.memMax, p.v2Memory = strings.TrimSpace(string(b)), true
				if b, err := os.ReadFile(filepath.Join(d, "memory.swap.max")); err == nil {
					p.memSwapMax = strings.TrimSpace(string(b))
				}
			}
		default:
			continue
		}
		if v, err := os.ReadFile(max); err == nil {
			p.pidsMax, p.cgroupPath = strings.TrimSpace(string(v)), parts[2]
		}
	}
	return p
}

// qemuUnder returns the pid of the QEMU that the process pid started
// (through its jail's helper), waiting for it to exist.
func qemuUnder(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, helper := range childrenOf(pid) {
			for _, q := range childrenOf(helper) {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", q)); strings.HasPrefix(string(comm), "qemu-system") {
					return q
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no QEMU under process %d", pid)
	return 0
}

func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// startSleeper starts a foreground `arrow run` of a program that prints
// "up" and sleeps, and waits for "up".
func startSleeper(t *testing.T, root string, flags ...string) *exec.Cmd {
	t.Helper()
	args := append(append([]string{"--root", root, "run"}, flags...), "/usr/bin/python3", "-c", "import time; print('up', flush=True); time.sleep(120)")
	cmd := exec.Command(arrowBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "up" {
		t.Fatalf("arrow run: %q %v\n%s", line, err, stderr.String())
	}
	return cmd
}

// TestSecurityJail: two running arrows' QEMUs, seen from /proc, run as
// different non-root uids, with an empty root of their own, in mount, pid
// and ipc namespaces that are not the host's, under a seccomp filter,
// without capabilities, in cgroups with a pids limit; and they die with
// the process that started them.
func TestSecurityJail(t *testing.T) {
	root := t.TempDir()
	linkKernel(t, root)
	before := qemuProcesses(t)
	a, b := startSleeper(t, root), startSleeper(t, root, "--network", "none", "-m", "300M")
	pa, pb := readVMProc(t, qemuUnder(t, a.Process.Pid)), readVMProc(t, qemuUnder(t, b.Process.Pid))
	self := readVMProc(t, os.Getpid())
	for _, p := range []vmProc{pa, pb} {
		t.Run("qemu "+strconv.Itoa(p.pid), func(t *testing.T) {
			if p.uid == "0" || p.uid == "" {
				t.Errorf("uid %q: want a uid of its own", p.uid)
			}
			if p.root == "/" || p.root == "" {
				t.Errorf("root %q: want the jail's empty directory", p.root)
			}
			for _, n := range []string{"mnt", "pid", "ipc", "uts"} {
				if p.ns[n] == self.ns[n] {
					t.Errorf("%s namespace %s is the host's", n, p.ns[n])
				}
			}
			if p.seccomp != "2" {
				t.Errorf("Seccomp: %s, want 2", p.seccomp)
			}
			if p.capEff != "0000000000000000" {
				t.Errorf("CapEff: %s, want none", p.capEff)
			}
			if p.pidsMax == "" || p.pidsMax == "max" {
				t.Errorf("pids limit %q in cgroup %q, want a number", p.pidsMax, p.cgroupPath)
			}
		})
	}
	// The guest's memory plus the VM's overhead, and no swap beyond it.
	want := strconv.Itoa((300 + 192) << 20)
	if pb.memMax != want {
		t.Errorf("--memory 300M: memory limit %q, want %s", pb.memMax, want)
	}
	// No swap beyond it: v1's memory+swap limit is the memory limit, v2's
	// swap limit is 0 (both files exist only where swap is accounted).
	switch {
	case pb.memSwapMax == "":
	case !pb.v2Memory && pb.memSwapMax != want:
		t.Errorf("--memory 300M: memory+swap limit %s, want %s", pb.memSwapMax, want)
	case pb.v2Memory && pb.memSwapMax != "0":
		t.Errorf("--memory 300M: swap limit %s, want 0", pb.memSwapMax)
	}
	// Without a network the VM needs none of the host's.
	if pb.ns["net"] == self.ns["net"] {
		t.Errorf("a --network none QEMU is in the host's network namespace")
	}
	if pa.uid == pb.uid {
		t.Errorf("both QEMUs run as uid %s", pa.uid)
	}
	if pa.cgroupPath == pb.cgroupPath {
		t.Errorf("both QEMUs share cgroup %s", pa.cgroupPath)
	}
	for _, n := range []string{"mnt", "pid", "ipc"} {
		if pa.ns[n] == pb.ns[n] {
			t.Errorf("both QEMUs share %s namespace %s", n, pa.ns[n])
		}
	}
	// Killed without a chance to clean up, the runs take their jails'
	// helpers, and so their QEMUs, with them.
	_ = a.Process.Signal(syscall.SIGKILL)
	_ = b.Process.Signal(syscall.SIGKILL)
	_, _ = a.Process.Wait()
	_, _ = b.Process.Wait()
	assertNoNewQEMU(t, before)
}

// TestSecurityJailFailsClosed: with no free uid in the jail's range the run
// fails with 125 and says why, and runs again once one is free.
func TestSecurityJailFailsClosed(t *testing.T) {
	root := t.TempDir()
	linkKernel(t, root)
	// A range of this test's own, apart from the one the host's arrows use.
	const first = 1900070400
	env := []string{"ARROW_JAIL_UIDS=" + strconv.Itoa(first) + "-" + strconv.Itoa(first+1)}
	var held []*os.File
	for uid := first; uid <= first+1; uid++ {
		if err := os.MkdirAll("/run/arrow/jail/uids", 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join("/run/arrow/jail/uids", strconv.Itoa(uid)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("uid %d is leased already: %v", uid, err)
		}
		held = append(held, f)
	}
	r := arrowEnv(t, env, "", "--root", root, "run", "/bin/true")
	if r.code != 125 || !strings.Contains(r.stderr, "no free uid") {
		t.Errorf("with the range exhausted: exit %d, stderr %q; want 125 naming the missing uid", r.code, r.stderr)
	}
	held[1].Close()
	if r := arrowEnv(t, env, "", "--root", root, "run", "/bin/true"); r.code != 0 {
		t.Errorf("with a uid free again: exit %d, stderr %q", r.code, r.stderr)
	}
	held[0].Close()
	// Runs of another range guard their own uids and leave the default
	// range's rules alone: an arrowd beside the tests stays guarded.
	for _, chain := range []string{"output-1900000000-1900065535", "output-" + strconv.Itoa(first) + "-" + strconv.Itoa(first+1)} {
		out, err := exec.Command("nft", "list", "chain", "inet", "arrow-jail", chain).CombinedOutput()
		if err != nil {
			t.Errorf("guard chain %s: %v\n%s", chain, err, out)
			continue
		}
		// What no test can send from a guest here (slirp forwards no
		// broadcast; no multicast listener): at least the rules are in.
		for _, want := range []string{"fib daddr type local reject", "fib daddr type broadcast reject", "fib daddr type multicast reject", `oifname "arw-*" reject`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("guard chain %s has no %q rule:\n%s", chain, want, out)
			}
		}
	}
}

// TestSecurityTemplateMemory: a template's memory file is root's, mode
// 0600, which a clone's uid cannot open for writing; and a file changed
// after it was published is never cloned again.
func TestSecurityTemplateMemory(t *testing.T) {
	root := t.TempDir()
	linkKernel(t, root)
	if r := arrow(t, "", "--root", root, "run", "/bin/true"); r.code != 0 {
		t.Fatalf("first run: %d %s", r.code, r.stderr)
	}
	mems, _ := filepath.Glob(filepath.Join(root, "templates", ".mem", "*.mem"))
	if len(mems) != 1 {
		t.Fatalf("template memory files: %v", mems)
	}
	mem := mems[0]
	fi, err := os.Stat(mem)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("memory file owned by %d, mode %o; want root's, 0600", st.Uid, fi.Mode().Perm())
	}
	// A uid of the jail's range, as an escaped clone's QEMU is, tries to
	// open it for writing by its path.
	try := exec.Command("/usr/bin/python3", "-c", "import sys; open(sys.argv[1], 'r+b')", mem)
	try.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1900070500, Gid: 1900070500}}
	if out, err := try.CombinedOutput(); err == nil || !strings.Contains(string(out), "PermissionError") {
		t.Errorf("a jail uid opened the template's memory for writing: %v %s", err, out)
	}
	// Root changes one byte, as a QEMU writing through its descriptor
	// would: the next run refuses the template, says so, and runs.
	f, err := os.OpenFile(mem, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x90}, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := arrow(t, "", "--root", root, "run", "--debug", "/bin/echo", "still runs")
	if r.code != 0 || !strings.Contains(r.stdout, "still runs") {
		t.Fatalf("after the change: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "changed since the template was published") {
		t.Errorf("the changed template was not refused:\n%s", r.stderr)
	}
}

// TestSecurityVolumeSetuid: root in a guest cannot leave a setuid or
// setgid file, or a device node, in a read-write volume.
func TestSecurityVolumeSetuid(t *testing.T) {
	root := t.TempDir()
	linkKernel(t, root)
	vol := t.TempDir()
	prog := `
import os, stat
def tryit(name, f):
    try:
        f()
        print(name, "done")
    except OSError as e:
        print(name, "refused", e.errno)
open("/data/tool", "w").write("#!/bin/sh\nid\n")
tryit("chmod-setuid", lambda: os.chmod("/data/tool", 0o4755))
tryit("chmod-setgid", lambda: os.chmod("/data/tool", 0o2755))
tryit("create-setuid", lambda: os.close(os.open("/data/made", os.O_CREAT | os.O_WRONLY, 0o4755)))
tryit("mknod-char", lambda: os.mknod("/data/mem", 0o666 | stat.S_IFCHR, os.makedev(1, 1)))
tryit("chmod-plain", lambda: os.chmod("/data/tool", 0o755))
`
	r := arrow(t, "", "--root", root, "run", "-v", vol+":/data", "/usr/bin/python3", "-c", prog)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "chmod-plain done") {
		t.Errorf("an ordinary chmod failed: %s", r.stdout)
	}
	err := filepath.Walk(vol, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("%s is %v on the host", p, fi.Mode())
		}
		if fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
			t.Errorf("%s is a device node on the host", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chmod-setuid refused", "chmod-setgid refused", "mknod-char refused"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("guest says %q; want %q", r.stdout, want)
		}
	}
}

// TestSecurityBridgeNetwork: a guest on a bridge network cannot fetch a
// page from any of the host's addresses (the bridge's gateway, another
// interface's), while it reaches the outside through the host.
func TestSecurityBridgeNetwork(t *testing.T) {
	if !inNetns(t) {
		return
	}
	if links := arrowLinks(t); len(links) > 0 || arrowTable(t) {
		t.Fatalf("before the test: Arrow links %v or table present: another arrowd runs here", links)
	}
	ns := outsideNet(t)
	anyAddr := serveSecret(t, "0.0.0.0:0", "any-address")
	outside := serveSecretIn(t, ns, "198.18.78.2", "outside")
	d := startDaemon(t)
	d.must("network", "create", "--subnet", "10.89.79.0/24", "secnet")
	defer d.arrow("network", "rm", "secnet")
	urls := []string{
		fmt.Sprintf("http://10.89.79.1:%d/", anyAddr),  // the host on the bridge
		fmt.Sprintf("http://198.18.78.1:%d/", anyAddr), // the host on another interface
		fmt.Sprintf("http://198.18.78.2:%d/", outside),
	}
	d.must(append([]string{"run", "-d", "--name", "probe", "--network", "secnet", "/usr/bin/python3", "-c", fetcher}, urls...)...)
	d.waitFor("probe", 2*time.Minute, "exited", func(a api.Arrow) bool { return a.State == api.Exited })
	checkFetches(t, d.must("logs", "probe"), map[string]string{urls[0]: "blocked", urls[1]: "blocked", urls[2]: "ok secret-outside"})
	d.must("rm", "probe")

	// A guest on the user network cannot reach a bridge network's arrow,
	// which the host would route to itself.
	d.must("run", "-d", "--name", "srv", "--network", "secnet", "--ready-port", "8000", "/usr/bin/python3", "-m", "http.server", "-d", "/", "8000")
	srv := d.inspect("srv")
	if srv.Endpoint == nil {
		t.Fatalf("srv has no endpoint: %+v", srv)
	}
	addr, _, _ := strings.Cut(srv.Endpoint.Address, "/")
	srvURL := "http://" + addr + ":8000/"
	root := t.TempDir()
	linkKernel(t, root)
	r := arrow(t, "", "--root", root, "run", "/usr/bin/python3", "-c", fetcher, srvURL)
	checkFetches(t, r.stdout, map[string]string{srvURL: "blocked"})
	// The control: unjailed, the same guest gets there.
	r = arrow(t, "", "--root", root, "run", "--no-jail", "/usr/bin/python3", "-c", fetcher, srvURL)
	checkFetches(t, r.stdout, map[string]string{srvURL: "ok"})
	d.must("rm", "-f", "srv")
}

// TestSecurityPublishedUDP: slirp sends a guest's datagrams from a
// published UDP port through that port's host socket, to whatever address
// the guest names; the guard must see them as the VM's. A guest with
// -p HOST:GUEST/udp sends from GUEST to the host's loopback: nothing
// arrives, unless the run asked for the host.
func TestSecurityPublishedUDP(t *testing.T) {
	root := t.TempDir()
	linkKernel(t, root)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	target := pc.LocalAddr().(*net.UDPAddr).Port
	send := fmt.Sprintf(`
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
for i in range(20):
    s.sendto(b"from-the-guest", ("10.0.2.2", %d))
    time.sleep(0.05)
print("sent", flush=True)
`, target)
	received := func() bool {
		_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		n, _, err := pc.ReadFrom(buf)
		return err == nil && string(buf[:n]) == "from-the-guest"
	}
	for _, tt := range []struct {
		name  string
		flags []string
		want  bool
	}{
		{"guarded", nil, false},
		{"with host access", []string{"--add-host", "host.arrow.internal:host-gateway"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"--root", root, "run", "-p", fmt.Sprintf("127.0.0.1:%d:5353/udp", freePort(t))}, tt.flags...),
				"/usr/bin/python3", "-c", send)
			r := arrow(t, "", args...)
			if r.code != 0 || !strings.Contains(r.stdout, "sent") {
				t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
			}
			if got := received(); got != tt.want {
				t.Errorf("a datagram from the guest's published port reached the host's loopback: %v, want %v", got, tt.want)
			}
		})
	}
}
