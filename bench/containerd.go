//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arrowsys/arrow/e2e/fixture"
	"github.com/arrowsys/arrow/internal/mountinfo"
)

// The image every contender of benchContainerd runs, and the pod sandbox
// image CRI asks for (busybox sleeping: runc runs it, Arrow does not).
const (
	ctrBenchImage   = "docker.io/arrow-bench/busybox:1"
	ctrBenchPause   = "docker.io/arrow-bench/pause:1"
	ctrBenchNS      = "arrowbench"
	benchCNIBinDir  = "/usr/lib/cni"
	benchCrictlPath = "/usr/local/bin/crictl"
)

// benchContainerd measures Arrow as containerd's runtime (`go run ./bench
// -containerd`), against runc measured alongside:
//
//   - `ctr run --rm IMAGE ID true` with the runtime io.containerd.arrow.v1,
//     with runc (io.containerd.runc.v2), and `arrow run IMAGE true` of the
//     same image without containerd: what containerd's path adds to a
//     run, and what a VM costs against a container there;
//   - a CRI pod and its container, as kubelet starts them (crictl runp,
//     create, start), with the runtime handler arrow and with runc: the
//     time until crictl start returns and until the container's first
//     line is in its log.
//
// Each containerd is private (root, state, sockets, and for CRI a network
// namespace with a CNI bridge, made here and removed at the end). The VMs
// use a data root of the benchmark's own that shares the user's kernels
// and initramfs, as -docker's does: the warm-up round builds its template
// and the image's root disks, and none of these (keyed by the private
// containerds' snapshots, of no use afterwards) is left in the user's.
// Runs are interleaved after a warm-up round.
func benchContainerd(ctx context.Context, arrowBin string, runs int) (err error) {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one", runs)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	binDir := filepath.Dir(su.arrow)
	for _, bin := range []string{filepath.Join(binDir, "containerd-shim-arrow-v1"), "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", benchCrictlPath} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (run `make all` and setup.sh)", bin, err)
		}
	}
	work, err := os.MkdirTemp("", "ctrb")
	if err != nil {
		return err
	}
	b := &ctrBench{work: work, binDir: binDir, arrowBin: su.arrow}
	defer func() {
		if cerr := b.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err := b.prepare(); err != nil {
		return err
	}

	ctrRows, err := b.benchCtr(ctx, runs)
	if err != nil {
		return b.failed(ctx, err, b.plain)
	}
	criRows, err := b.benchCRI(ctx, runs)
	if err != nil {
		return b.failed(ctx, err, b.cri)
	}

	fmt.Printf("%s: true, median of %d interleaved runs after a warm-up; accelerator %s (%s)\n\n",
		ctrBenchImage, runs, su.accel.Name, su.accel.Reason)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| way\t| wall time (median)\t| min – max\t| this ÷ ctr run (Arrow)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|")
	base := medianDuration(ctrRows[0].samples)
	for _, r := range ctrRows {
		med := medianDuration(r.samples)
		lo, hi := minMax(r.samples)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", r.name, med.Seconds(), lo.Seconds(), hi.Seconds(), float64(med)/float64(base))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("\nctr run with Arrow ÷ `arrow run` of the same image: %.2f× (what containerd's path costs); ctr run with Arrow ÷ with runc: %.2f× (a VM against a container).\n\n",
		float64(base)/float64(medianDuration(ctrRows[2].samples)),
		float64(base)/float64(medianDuration(ctrRows[1].samples)))

	fmt.Printf("CRI: a pod (crictl runp) and its container (create, start) whose command prints a line, median of %d interleaved runs after a warm-up\n\n", runs)
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| runtime handler\t| to `crictl start` returned (median)\t| min – max\t| to the first line in the log (median)\t| min – max\t| this ÷ runc (first line)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|---\t|")
	runcLog := medianDuration(criRows[1].toLog)
	for _, r := range criRows {
		slo, shi := minMax(r.toStart)
		llo, lhi := minMax(r.toLog)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", r.handler,
			medianDuration(r.toStart).Seconds(), slo.Seconds(), shi.Seconds(),
			medianDuration(r.toLog).Seconds(), llo.Seconds(), lhi.Seconds(), float64(medianDuration(r.toLog))/float64(runcLog))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("\nA pod with its container, to its first output: arrow ÷ runc %.2f×; to `crictl start` returned: %.2f×.\n",
		float64(medianDuration(criRows[0].toLog))/float64(runcLog),
		float64(medianDuration(criRows[0].toStart))/float64(medianDuration(criRows[1].toStart)))
	return nil
}

// ctrBench is the benchmark's state: its directory, its containerds,
// the network namespace and cgroups it made, for cleanup.
type ctrBench struct {
	work, binDir, arrowBin string
	root                   string   // the VMs' data root
	env                    []string // containerd's and arrow's
	plain, cri             *benchContainerdProc
	netns                  string
	cgroups                []string // parents the tasks' cgroups went under
}

// benchContainerdProc is one private containerd.
type benchContainerdProc struct {
	dir, address string
	cmd          *exec.Cmd
	log          string
}

// prepare makes the data root (the user's kernels and initramfs shared)
// and the environment: the arrow binaries first in PATH, for containerd
// to find the shim, and a marker that every process it starts inherits.
func (b *ctrBench) prepare() error {
	b.root = filepath.Join(b.work, "arrow")
	if err := os.Mkdir(b.root, 0o700); err != nil {
		return err
	}
	for _, shared := range []string{"kernels", "initramfs"} {
		if err := os.Symlink(filepath.Join(dataRoot(), shared), filepath.Join(b.root, shared)); err != nil {
			return err
		}
	}
	b.env = append(os.Environ(), "PATH="+b.binDir+":"+os.Getenv("PATH"), "ARROW_ROOT="+b.root,
		"ARROW_BENCH_CONTAINERD="+b.work)
	return nil
}

// startContainerd starts a containerd with its own root, state and
// sockets under dir, the CRI plugin configured by cri (disabled when
// empty), in the network namespace netns ("" for the host's).
func (b *ctrBench) startContainerd(ctx context.Context, dir, cri, netns string) (*benchContainerdProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &benchContainerdProc{dir: dir, address: filepath.Join(dir, "c.sock"), log: filepath.Join(dir, "containerd.log")}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if cri != "" {
		disabled = ""
	}
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\n%s\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n"+
		"[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n%s",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, p.address, p.address+".ttrpc", filepath.Join(dir, "opt"), cri)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	argv := []string{"/usr/bin/containerd", "--config", filepath.Join(dir, "config.toml")}
	if netns != "" {
		// nsenter, not ip netns exec, which remounts /sys without
		// the cgroup hierarchies.
		argv = append([]string{"nsenter", "--net=/var/run/netns/" + netns}, argv...)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = b.env
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		if _, err := b.ctr(ctx, p, "default", "version"); err == nil {
			return p, nil
		}
		if i == 150 {
			return p, errors.New("containerd did not answer `ctr version`")
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return p, err
		}
	}
}

func (p *benchContainerdProc) logTail() string {
	data, _ := os.ReadFile(p.log)
	return tail(data, 4000)
}

// failed is the error a part of the benchmark ended with: interrupted, or
// with the tail of the log of p, the containerd it ran on (read before
// cleanup removes it).
func (b *ctrBench) failed(ctx context.Context, err error, p *benchContainerdProc) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted (%w); cleaning up", err)
	}
	if p == nil {
		return err
	}
	return fmt.Errorf("%w\ncontainerd's log (%s), its end:\n%s", err, p.log, p.logTail())
}

func (b *ctrBench) ctr(ctx context.Context, p *benchContainerdProc, ns string, args ...string) (string, error) {
	return runEnv(ctx, b.env, append([]string{"/usr/bin/ctr", "--address", p.address, "-n", ns}, args...)...)
}

// ctrRow is one way of running the image.
type ctrRow struct {
	name    string
	run     func(ctx context.Context, id string) error
	samples []time.Duration
}

// benchCtr measures ctr run --rm with each runtime and arrow run.
func (b *ctrBench) benchCtr(ctx context.Context, runs int) ([]*ctrRow, error) {
	p, err := b.startContainerd(ctx, filepath.Join(b.work, "ctr"), "", "")
	b.plain = p
	if err != nil {
		return nil, err
	}
	b.cgroups = append(b.cgroups, "/"+ctrBenchNS) // ctr's /NAMESPACE/ID
	archive := filepath.Join(b.work, "busybox.tar")
	if err := fixture.BusyboxArchive(archive, ctrBenchImage); err != nil {
		return nil, err
	}
	// Into containerd's default snapshotter, overlayfs, as a node has it
	// (the e2e tests use native, which any file system holds): the shim
	// keys a root disk by an overlay's committed lower directories, so
	// every task of the image shares one; a native snapshot is a fresh
	// copy each time, which would have each task build a disk of its own.
	if _, err := b.ctr(ctx, p, ctrBenchNS, "images", "import", archive); err != nil {
		return nil, err
	}
	arrow := func(ctx context.Context, args ...string) (string, error) {
		return runEnv(ctx, b.env, append([]string{b.arrowBin}, args...)...)
	}
	if _, err := arrow(ctx, "image", "import", archive); err != nil {
		return nil, err
	}
	// Arrow's store names it by the tarball's tag, as ctr does.
	arrowImage := ctrBenchImage
	ctrRun := func(runtime string) func(ctx context.Context, id string) error {
		return func(ctx context.Context, id string) error {
			_, err := b.ctr(ctx, p, ctrBenchNS, "run", "--rm", "--runtime", runtime, ctrBenchImage, id, "true")
			return err
		}
	}
	rows := []*ctrRow{
		{name: "`ctr run --rm --runtime io.containerd.arrow.v1 IMAGE ID true`", run: ctrRun("io.containerd.arrow.v1")},
		{name: "`ctr run --rm --runtime io.containerd.runc.v2 IMAGE ID true`", run: ctrRun("io.containerd.runc.v2")},
		{name: "`arrow run IMAGE true` (no containerd)", run: func(ctx context.Context, _ string) error {
			_, err := arrow(ctx, "run", arrowImage, "true")
			return err
		}},
	}
	// A broken path must not pass for a fast one: each way runs the
	// image's shell, and its exit status comes back.
	for i, args := range [][]string{
		{"run", "--rm", "--runtime", "io.containerd.arrow.v1", ctrBenchImage, "check-arrow", "sh", "-c", "exit 7"},
		{"run", "--rm", "--runtime", "io.containerd.runc.v2", ctrBenchImage, "check-runc", "sh", "-c", "exit 7"},
	} {
		if _, err := b.ctr(ctx, p, ctrBenchNS, args...); wantExit(err, 7) != nil {
			return nil, fmt.Errorf("%s: %v, want exit status 7", rows[i].name, err)
		}
	}
	if _, err := arrow(ctx, "run", arrowImage, "sh", "-c", "exit 7"); wantExit(err, 7) != nil {
		return nil, fmt.Errorf("arrow run: %v, want exit status 7", err)
	}
	for round := 0; round <= runs; round++ {
		for i, r := range rows {
			t0 := time.Now()
			if err := r.run(ctx, fmt.Sprintf("b%d-%d", round, i)); err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			if round > 0 {
				r.samples = append(r.samples, time.Since(t0))
			}
		}
	}
	if out, err := b.ctr(ctx, p, ctrBenchNS, "containers", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("containers left after ctr run --rm: %q, %v", out, err)
	}
	return rows, nil
}

// criRow is one runtime handler's pod starts.
type criRow struct {
	handler        string
	toStart, toLog []time.Duration
}

// criBenchConfig is the CRI plugin's section: the handlers arrow and
// runc, a CNI bridge network.
const criBenchConfig = `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[1]q
  disable_apparmor = true
  # CRI gives a sandbox oom_score_adj -998, which runc cannot set where
  # the calling process may not lower its own (as on this kind of
  # machine); restricted, it stays at containerd's.
  restrict_oom_score_adj = true
  # The snapshotter is the default, overlayfs (see benchCtr).
  # The pods' network namespaces under containerd's state directory, not
  # in /var/run/netns: what a failed run leaves is unmounted with it.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.arrow]
      runtime_type = "io.containerd.arrow.v1"
      pod_annotations = ["*"]
      container_annotations = ["io.kubernetes.*"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[2]q
    conf_dir = %[3]q
    max_conf_num = 1
`

// benchCRI measures a pod and its container started through CRI with
// each runtime handler.
func (b *ctrBench) benchCRI(ctx context.Context, runs int) ([]*criRow, error) {
	rnd := make([]byte, 3)
	if _, err := rand.Read(rnd); err != nil {
		return nil, err
	}
	suffix := hex.EncodeToString(rnd)
	b.netns = "arrowbench-" + suffix
	if out, err := exec.Command("ip", "netns", "add", b.netns).CombinedOutput(); err != nil {
		b.netns = ""
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", b.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	dir := filepath.Join(b.work, "cri")
	cniConf := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return nil, err
	}
	conflist, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "arrow-bench",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": "arwbench" + suffix[:4], "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{"type": "host-local",
				"ranges":  [][]map[string]string{{{"subnet": fmt.Sprintf("10.88.%d.0/24", rnd[2])}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(dir, "ipam")},
		}},
	})
	if err := os.WriteFile(filepath.Join(cniConf, "10-arrow-bench.conflist"), conflist, 0o644); err != nil {
		return nil, err
	}
	p, err := b.startContainerd(ctx, dir, fmt.Sprintf(criBenchConfig, ctrBenchPause, benchCNIBinDir, cniConf), b.netns)
	b.cri = p
	if err != nil {
		return nil, err
	}
	crictlConf := filepath.Join(dir, "crictl.yaml")
	if err := os.WriteFile(crictlConf, []byte(fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\n", p.address, p.address)), 0o644); err != nil {
		return nil, err
	}
	crictl := func(ctx context.Context, args ...string) (string, error) {
		out, err := runEnv(ctx, b.env, append([]string{benchCrictlPath, "--config", crictlConf}, args...)...)
		return strings.TrimSpace(out), err
	}
	for i := 0; ; i++ {
		if _, err := crictl(ctx, "info"); err == nil {
			break
		} else if i == 100 {
			return nil, fmt.Errorf("containerd's CRI did not come up: %w", err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	// The images: the busybox fixture, and a pause image made of it that
	// sleeps (runc runs the sandbox image; Arrow starts a pause process).
	images := filepath.Join(dir, "images.tar")
	if err := criImages(images); err != nil {
		return nil, err
	}
	if _, err := b.ctr(ctx, p, "k8s.io", "images", "import", images); err != nil {
		return nil, err
	}
	podCgroup := "/arrow-bench-" + suffix
	b.cgroups = append(b.cgroups, podCgroup)

	rows := []*criRow{{handler: "arrow"}, {handler: "runc"}}
	for round := 0; round <= runs; round++ {
		for _, r := range rows {
			name := fmt.Sprintf("%s-%d", r.handler, round)
			logDir := filepath.Join(dir, "logs", name)
			pod := filepath.Join(dir, name+"-pod.json")
			ctrCfg := filepath.Join(dir, name+"-ctr.json")
			podJSON, _ := json.Marshal(map[string]any{
				"metadata":      map[string]any{"name": name, "namespace": "bench", "uid": name + "-uid", "attempt": 1},
				"log_directory": logDir,
				"linux":         map[string]any{"cgroup_parent": podCgroup},
			})
			ctrJSON, _ := json.Marshal(map[string]any{
				"metadata": map[string]any{"name": "app"},
				"image":    map[string]any{"image": ctrBenchImage},
				"command":  []string{"sh", "-c", "echo ready; exec sleep 3600"},
				"log_path": "app.log",
				"linux":    map[string]any{},
			})
			if err := errors.Join(os.WriteFile(pod, podJSON, 0o644), os.WriteFile(ctrCfg, ctrJSON, 0o644)); err != nil {
				return nil, err
			}
			t0 := time.Now()
			podID, err := crictl(ctx, "runp", "--runtime", r.handler, pod)
			if err != nil {
				return nil, fmt.Errorf("crictl runp (%s): %w", r.handler, err)
			}
			cid, err := crictl(ctx, "create", podID, ctrCfg, pod)
			if err == nil {
				_, err = crictl(ctx, "start", cid)
			}
			started := time.Since(t0)
			if err == nil {
				err = waitLogLine(ctx, filepath.Join(logDir, "app.log"), "ready")
			}
			logged := time.Since(t0)
			if err != nil {
				return nil, fmt.Errorf("pod %s (%s): %w", name, r.handler, err)
			}
			if _, err := crictl(ctx, "stopp", podID); err != nil {
				return nil, err
			}
			if _, err := crictl(ctx, "rmp", podID); err != nil {
				return nil, err
			}
			if round > 0 {
				r.toStart = append(r.toStart, started)
				r.toLog = append(r.toLog, logged)
			}
		}
	}
	if out, err := crictl(ctx, "pods", "-q"); err != nil || out != "" {
		return nil, fmt.Errorf("pods left: %q, %v", out, err)
	}
	return rows, nil
}

// criImages writes the busybox image and the pause image, both tagged,
// to one docker-save archive.
func criImages(file string) error {
	img, err := fixture.BusyboxImage()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg := cf.Config
	cfg.Cmd = []string{"sleep", "2147483647"}
	pause, err := mutate.Config(img, cfg)
	if err != nil {
		return err
	}
	bb, err := name.NewTag(ctrBenchImage)
	if err != nil {
		return err
	}
	pt, err := name.NewTag(ctrBenchPause)
	if err != nil {
		return err
	}
	return tarball.MultiRefWriteToFile(file, map[name.Reference]v1.Image{bb: img, pt: pause})
}

// waitLogLine waits until the CRI log file holds a line whose message is
// want (CRI's lines: TIME STREAM TAG MESSAGE).
func waitLogLine(ctx context.Context, file, want string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if data, err := os.ReadFile(file); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.SplitN(line, " ", 4); len(f) == 4 && f[3] == want {
					return nil
				}
			}
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return fmt.Errorf("no %q in %s: %w", want, file, err)
		}
	}
}

// cleanup removes the pods and containers, stops the containerds, kills
// what they left (shims and pause processes outlive containerd by
// design: found by the marker in their environment), unmounts what is
// left under the directory, and removes the namespace, the cgroups'
// parents and the directory.
func (b *ctrBench) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if b.cri != nil && b.cri.cmd != nil {
		conf := filepath.Join(b.cri.dir, "crictl.yaml")
		_, _ = runEnv(ctx, b.env, benchCrictlPath, "--config", conf, "rmp", "-fa")
	}
	if b.plain != nil && b.plain.cmd != nil {
		out, _ := b.ctr(ctx, b.plain, ctrBenchNS, "containers", "ls", "-q")
		for _, id := range strings.Fields(out) {
			_, _ = b.ctr(ctx, b.plain, ctrBenchNS, "tasks", "rm", "-f", id)
			_, _ = b.ctr(ctx, b.plain, ctrBenchNS, "containers", "rm", id)
		}
	}
	for _, p := range []*benchContainerdProc{b.plain, b.cri} {
		if p == nil || p.cmd == nil || p.cmd.Process == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
	marker := []byte("ARROW_BENCH_CONTAINERD=" + b.work + "\x00")
	for i := 0; i < 50; i++ {
		left := markedProcesses(marker)
		if len(left) == 0 {
			break
		}
		if i == 49 {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			errs = append(errs, fmt.Errorf("processes outlived the benchmark's containerds (killed): %v", left))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, parent := range b.cgroups {
		if err := removeCgroups(parent); err != nil {
			errs = append(errs, err)
		}
	}
	mounts, _ := mountinfo.Under(b.work)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	if b.netns != "" {
		if out, err := exec.Command("ip", "netns", "delete", b.netns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", b.netns, err, out))
		}
	}
	if m, err := mountinfo.Under(b.work); err != nil || len(m) > 0 {
		errs = append(errs, fmt.Errorf("%s left in place: mounts under it %v, %v", b.work, m, err))
	} else if err := os.RemoveAll(b.work); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeCgroups removes the cgroup parent (a path such as /arrowbench)
// in every hierarchy, with the cgroups under it, deepest first. What is
// left in them is killed first: a runc container's processes do not
// inherit the marker (their environment is the OCI spec's), and outlive
// a killed shim.
func removeCgroups(parent string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	roots = append(roots, "/sys/fs/cgroup"+parent)
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	var killed []int
	seen := map[int]bool{} // each process is in every hierarchy
	for _, dir := range dirs {
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && !seen[pid] {
				seen[pid] = true
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = append(killed, pid)
				}
			}
		}
	}
	var errs []error
	if len(killed) > 0 {
		errs = append(errs, fmt.Errorf("processes left in cgroup %s (killed): %v", parent, killed))
	}
	// Deepest first; a killed process leaves its cgroup a moment later.
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; ; try++ {
			err := os.Remove(dirs[i])
			if err == nil || os.IsNotExist(err) {
				break
			}
			if try == 30 {
				errs = append(errs, fmt.Errorf("cgroup %s: %w", dirs[i], err))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// markedProcesses lists the processes whose environment holds marker.
func markedProcesses(marker []byte) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}
