package containerdshim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// Topics of the task events containerd expects from a shim.
const (
	topicCreate      = "/tasks/create"
	topicStart       = "/tasks/start"
	topicExit        = "/tasks/exit"
	topicDelete      = "/tasks/delete"
	topicExecAdded   = "/tasks/exec-added"
	topicExecStarted = "/tasks/exec-started"
	topicPaused      = "/tasks/paused"
	topicResumed     = "/tasks/resumed"
	topicOOM         = "/tasks/oom"
)

// service is the shim daemon's task service: one per shim process, which
// containerd starts per container; it keeps a map nonetheless, as a pod's
// containers may one day share a shim (see sandbox.go).
type service struct {
	ctx      context.Context // the daemon's: VMs live as long as it does
	f        flags
	root     string // Arrow's data root
	log      io.Writer
	pub      *publisher
	shutdown context.CancelFunc

	mu    sync.Mutex
	tasks map[string]*container
}

var _ taskapi.TTRPCTaskService = (*service)(nil)

func newService(ctx context.Context, f flags, log io.Writer, shutdown context.CancelFunc) (*service, error) {
	root, err := dataRoot()
	if err != nil {
		return nil, err
	}
	return &service{
		ctx: ctx, f: f, root: root, log: log, shutdown: shutdown,
		pub:   newPublisher(ctx, os.Getenv("TTRPC_ADDRESS"), f.namespace, log),
		tasks: make(map[string]*container),
	}, nil
}

// dataRoot is Arrow's data root for the shim's VMs: $ARROW_ROOT, else
// root's default, /var/lib/arrow (the shim runs as root, as containerd
// does), so that the kernel, templates and root disks are shared with
// `arrow run`. It is made private (0700) as the arrow command makes it.
func dataRoot() (string, error) {
	root := os.Getenv("ARROW_ROOT")
	if root == "" {
		root = "/var/lib/arrow"
	}
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("ARROW_ROOT %q: want an absolute path", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("data root: %w", err)
	}
	return root, nil
}

// validID is what a task or exec ID may be: containerd's own rule for
// identifiers, which also keeps them safe in paths and cgroup names.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$`)

func checkID(kind, id string) error {
	if !validID.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "%s %.80q: want letters, digits, '_', '.' and '-', at most 76", kind, id)
	}
	return nil
}

// get finds a task's process: the init process for an empty execID.
func (s *service) get(id, execID string) (*container, *process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tasks[id]
	if c == nil {
		return nil, nil, status.Errorf(codes.NotFound, "task %.80q not found", id)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p := c.execs[execID]
	if p == nil {
		return nil, nil, status.Errorf(codes.NotFound, "exec %.80q of task %.80q not found", execID, id)
	}
	return c, p, nil
}

// Create mounts the task's root file system, translates its OCI spec and
// launches its VM (the process exists, the application does not run yet:
// Start runs it). Whatever cannot be applied fails it, and nothing is
// left behind then.
func (s *service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	if err := checkID("task", r.ID); err != nil {
		return nil, err
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, status.Error(codes.Unimplemented, "the arrow runtime cannot restore checkpoints")
	}
	if !filepath.IsAbs(r.Bundle) {
		return nil, status.Errorf(codes.InvalidArgument, "bundle %.200q: want an absolute path", r.Bundle)
	}
	s.mu.Lock()
	if _, ok := s.tasks[r.ID]; ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "task %s exists", r.ID)
	}
	s.tasks[r.ID] = nil // reserved while it is created
	s.mu.Unlock()
	c, err := s.create(ctx, r)
	s.mu.Lock()
	if err != nil {
		delete(s.tasks, r.ID)
	} else {
		s.tasks[r.ID] = c
	}
	s.mu.Unlock()
	if err != nil {
		fmt.Fprintf(s.log, "containerd-shim-arrow: create %s: %v\n", r.ID, err)
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.FailedPrecondition, "arrow: %v", err)
	}
	s.pub.publish(topicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: uint32(c.pid),
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskapi.CreateTaskResponse{Pid: uint32(c.pid)}, nil
}

func (s *service) create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *container, err error) {
	spec, err := ReadSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	c := &container{id: r.ID, bundle: r.Bundle, execs: make(map[string]*process)}
	defer func() {
		if err != nil {
			c.stop()
			c.release(s.log)
		}
	}()
	if isSandbox(spec) {
		// No VM, no root file system: a pause process (sandbox.go).
		if err := s.createSandbox(ctx, c, spec); err != nil {
			return nil, err
		}
		c.init = newProcess(c, "", r.Terminal, r.Stdin, r.Stdout, r.Stderr)
		if err := recordVM(r.Bundle, c.pid); err != nil {
			return nil, fmt.Errorf("record the sandbox's process: %w", err)
		}
		return c, nil
	}
	root := rootfsDir(r.Bundle)
	if spec.Root != nil && spec.Root.Path != "" {
		root = spec.Root.Path
		if !filepath.IsAbs(root) {
			root = filepath.Join(r.Bundle, root)
		}
	}
	if len(r.Rootfs) > 0 {
		if err := mountRootfs(r.Rootfs, root); err != nil {
			return nil, err
		}
		c.mounted = root
	}
	cfg, notes, err := Config(spec, root)
	if err != nil {
		return nil, err
	}
	for _, n := range notes {
		fmt.Fprintf(s.log, "containerd-shim-arrow: %s: %s\n", r.ID, n)
	}
	if cfg.Program, err = lookPath(root, cfg.Program, cfg.Env); err != nil {
		return nil, err
	}
	cfg.TTY = r.Terminal
	cfg.Stdin = r.Stdin != ""
	cfg.Network = run.NetworkUser
	var o run.Options
	if ns := NetNSPath(spec); ns != "" {
		if err := s.podNetwork(ctx, c, spec, ns, &o); err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", ns, err)
		}
		cfg.Network, cfg.Ports = podNetworkName, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := s.makeCgroup(c, spec, &cfg); err != nil {
		return nil, err
	}
	c.init = newProcess(c, "", r.Terminal, r.Stdin, r.Stdout, r.Stderr)
	if err := c.init.openStdio(s.ctx); err != nil {
		return nil, err
	}
	if cfg.RootFS == c.mounted {
		if o.RootFSKey, err = snapshotKey(ctx, r.Rootfs); err != nil {
			return nil, err
		}
	}
	o.Config = cfg
	o.Root = s.root
	o.Log = s.log
	o.Cgroup = c.group
	c.init.initOptions(&o)
	h, err := run.Launch(s.ctx, o)
	if err != nil {
		return nil, err
	}
	c.h, c.pid = h, h.Pid()
	if err := recordVM(r.Bundle, c.pid); err != nil {
		return nil, fmt.Errorf("record the VM's process: %w", err)
	}
	return c, nil
}

// State reports a process.
func (s *service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	c, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.snapshot()
	resp := &taskapi.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.bundle, Pid: uint32(c.pid), Status: st.status,
		Stdin: p.stdinPath, Stdout: p.stdoutPath, Stderr: p.stderrPath, Terminal: p.terminal,
		ExitStatus: st.exit,
	}
	if !st.exitedAt.IsZero() {
		resp.ExitedAt = timestamppb.New(st.exitedAt)
	}
	if r.ExecID == "" && st.status == task.Status_RUNNING && c.isPaused() {
		resp.Status = task.Status_PAUSED
	}
	return resp, nil
}

// Start runs the init process's application (booting the VM, or handing
// it to a clone's arrow-init) or an exec process.
func (s *service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	c, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		if err := s.startExec(c, p); err != nil {
			return nil, err
		}
		s.pub.publish(topicExecStarted, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: uint32(c.pid)})
		return &taskapi.StartResponse{Pid: uint32(c.pid)}, nil
	}
	if !p.setState(task.Status_CREATED, task.Status_RUNNING) {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s: not in the created state", r.ID)
	}
	if c.isSandboxTask() {
		s.pub.publish(topicStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(c.pid)})
		go s.waitSandbox(c, p)
		return &taskapi.StartResponse{Pid: uint32(c.pid)}, nil
	}
	if _, err := c.h.Start(s.ctx); err != nil {
		code := run.ExitCode(err)
		p.message("arrow: %v\n", err)
		c.stop()
		s.exited(c, p, uint32(code))
		return nil, status.Errorf(codes.Unknown, "arrow: start %s: %v", r.ID, err)
	}
	s.pub.publish(topicStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(c.pid)})
	go s.waitInit(c, p)
	return &taskapi.StartResponse{Pid: uint32(c.pid)}, nil
}

// waitInit relays the application to its end and records its status.
func (s *service) waitInit(c *container, p *process) {
	res, err := c.h.Wait(s.ctx)
	code := res.ExitCode()
	if err != nil {
		code = run.ExitCode(err)
		p.message("arrow: %v\n", err)
	} else if res.Status.Message != "" && code != 0 {
		// Why the guest could not run it (not found, not executable),
		// or how it ended: the user's only way to learn it.
		p.message("arrow: %s\n", res.Status.Message)
	}
	if c.group != nil {
		if st, serr := c.group.Stats(); serr == nil && st.OOMKills > 0 {
			code = 128 + int(syscall.SIGKILL)
			p.message("arrow: the VM exceeded its memory limit and was killed by the host\n")
			// CRI reports the container's end as OOMKilled on it.
			s.pub.publish(topicOOM, &eventstypes.TaskOOM{ContainerID: c.id})
		}
	}
	s.exited(c, p, uint32(code))
}

// exited records a process's end, closes its streams and tells
// containerd. The init process's end ends its execs: they die with the VM.
func (s *service) exited(c *container, p *process, code uint32) {
	if !p.finish(code) {
		return
	}
	if p.execID == "" {
		c.mu.Lock()
		execs := make([]*process, 0, len(c.execs))
		for _, e := range c.execs {
			execs = append(execs, e)
		}
		c.mu.Unlock()
		for _, e := range execs {
			if e.snapshot().status == task.Status_RUNNING {
				e.waitDone(2 * time.Second)
			}
			s.exited(c, e, 128+uint32(syscall.SIGKILL))
		}
	}
	st := p.snapshot()
	id := c.id
	if p.execID != "" {
		id = p.execID
	}
	s.pub.publish(topicExit, &eventstypes.TaskExit{ContainerID: c.id, ID: id, Pid: uint32(c.pid),
		ExitStatus: st.exit, ExitedAt: timestamppb.New(st.exitedAt)})
}

// Delete removes a process that ended (or never started). For the init
// process it releases everything the task held: the VM, the root file
// system's mount, the cgroup, the pod network.
func (s *service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	c, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.snapshot()
	switch st.status {
	case task.Status_RUNNING:
		return nil, status.Errorf(codes.FailedPrecondition, "task %s: process %q is running: kill it first", r.ID, r.ExecID)
	case task.Status_CREATED:
		if r.ExecID == "" {
			c.stop()
		}
		s.exited(c, p, 128+uint32(syscall.SIGKILL))
		st = p.snapshot()
	}
	if r.ExecID != "" {
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
	} else {
		c.stop()
		c.release(s.log)
		s.mu.Lock()
		delete(s.tasks, r.ID)
		s.mu.Unlock()
		s.pub.publish(topicDelete, &eventstypes.TaskDelete{ContainerID: c.id, Pid: uint32(c.pid),
			ExitStatus: st.exit, ExitedAt: timestamppb.New(st.exitedAt)})
	}
	return &taskapi.DeleteResponse{Pid: uint32(c.pid), ExitStatus: st.exit, ExitedAt: timestamppb.New(st.exitedAt)}, nil
}

// Pids lists the task's host processes: its VM's (every process of the
// task runs inside that one QEMU process).
func (s *service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	c, _, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	var pids []int
	if c.group != nil {
		pids, _ = c.group.Procs()
	}
	if len(pids) == 0 && c.pid > 0 {
		pids = []int{c.pid}
	}
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: uint32(pid)})
	}
	return resp, nil
}

// Pause stops the VM's virtual CPUs; Resume runs them again.
func (s *service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	c, p, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	if p.snapshot().status != task.Status_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s is not running", r.ID)
	}
	if err := c.pause(ctx, true); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "pause %s: %v", r.ID, err)
	}
	s.pub.publish(topicPaused, &eventstypes.TaskPaused{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

func (s *service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	c, _, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	if err := c.pause(ctx, false); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "resume %s: %v", r.ID, err)
	}
	s.pub.publish(topicResumed, &eventstypes.TaskResumed{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported: a VM's state is not a CRIU image.
func (s *service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, status.Error(codes.Unimplemented, "the arrow runtime does not checkpoint tasks")
}

// Kill signals a process. The init process's SIGKILL is made sure of: a
// guest that does not report the end in time has its VM killed.
func (s *service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	c, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Signal < 1 || r.Signal > 64 {
		return nil, status.Errorf(codes.InvalidArgument, "signal %d: want 1 to 64", r.Signal)
	}
	sig := syscall.Signal(r.Signal)
	switch p.snapshot().status {
	case task.Status_STOPPED:
		return nil, status.Errorf(codes.NotFound, "process already finished")
	case task.Status_CREATED:
		// Nothing runs yet: the VM goes, the process ends by the signal.
		if r.ExecID == "" {
			c.stop()
		}
		s.exited(c, p, 128+uint32(sig))
		return &emptypb.Empty{}, nil
	}
	if c.isSandboxTask() {
		if err := c.signalSandbox(sig); err != nil {
			return nil, status.Errorf(codes.NotFound, "%v", err)
		}
		return &emptypb.Empty{}, nil
	}
	if r.ExecID != "" {
		p.mu.Lock()
		proc := p.proc
		p.mu.Unlock()
		if proc == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "exec %s is starting", r.ExecID)
		}
		if err := proc.Signal(int(sig)); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "signal exec %s: %v", r.ExecID, err)
		}
		return &emptypb.Empty{}, nil
	}
	if c.isPaused() {
		// A paused guest cannot act on it: run its CPUs first.
		if err := c.pause(ctx, false); err == nil {
			s.pub.publish(topicResumed, &eventstypes.TaskResumed{ContainerID: c.id})
		}
	}
	p.signal(sig)
	if sig == syscall.SIGKILL {
		go func() {
			// run kills the VM on a repeated signal; Close is the last
			// resort.
			if !p.waitDone(killGrace) {
				p.signal(sig)
				if !p.waitDone(killGrace) {
					c.stop()
				}
			}
		}()
	}
	return &emptypb.Empty{}, nil
}

// killGrace is how long a guest has to report a SIGKILL's result.
const killGrace = 2 * time.Second

// maxExecSpec bounds an exec's process spec.
const maxExecSpec = 1 << 20

// Exec adds an exec process (started by Start).
func (s *service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := checkID("exec", r.ExecID); err != nil {
		return nil, err
	}
	c, init, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	if c.isSandboxTask() {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s is a pod sandbox: it has no VM to run a process in", r.ID)
	}
	if init.snapshot().status != task.Status_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s is not running", r.ID)
	}
	if r.Spec == nil || len(r.Spec.Value) > maxExecSpec {
		return nil, status.Errorf(codes.InvalidArgument, "exec %s: no process spec, or one over %d bytes", r.ExecID, maxExecSpec)
	}
	var ps specs.Process
	if err := json.Unmarshal(r.Spec.Value, &ps); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "exec %s: process spec: %v", r.ExecID, err)
	}
	eo, err := execOptions(&ps, r.Terminal, r.Stdin != "")
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "exec %s: %v", r.ExecID, err)
	}
	p := newProcess(c, r.ExecID, r.Terminal, r.Stdin, r.Stdout, r.Stderr)
	p.eo = eo
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "exec %s exists", r.ExecID)
	}
	if len(c.execs) >= maxExecs {
		c.mu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "task %s has %d execs: delete some first", r.ID, maxExecs)
	}
	c.execs[r.ExecID] = p
	c.mu.Unlock()
	s.pub.publish(topicExecAdded, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return &emptypb.Empty{}, nil
}

// maxExecs bounds the exec records a task keeps (running or not yet
// deleted); the guest runs at most 16 at once itself.
const maxExecs = 64

// ResizePty sizes a process's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Width == 0 || r.Height == 0 || r.Width > 65535 || r.Height > 65535 {
		return nil, status.Errorf(codes.InvalidArgument, "size %dx%d: want 1 to 65535 each", r.Width, r.Height)
	}
	if !p.terminal {
		return nil, status.Errorf(codes.FailedPrecondition, "process has no terminal")
	}
	if err := p.resizeTo(uint16(r.Height), uint16(r.Width)); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "resize: %v", err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO ends a process's standard input.
func (s *service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.closeStdin()
	}
	return &emptypb.Empty{}, nil
}

// maxUpdateSpec bounds an update's resources.
const maxUpdateSpec = 64 << 10

// Update changes a running task's resources where its VM's cgroup can: the
// CPU quota. A VM's memory is fixed when it boots, so a different memory
// limit is refused (the cgroup's limit is the VM's memory plus its
// overhead: lowering it would OOM-kill the VM, raising it gives the
// guest nothing). What else the request carries (shares, cpusets, pids,
// block I/O) is logged and not applied.
func (s *service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, _, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	if r.Resources == nil || len(r.Resources.Value) > maxUpdateSpec {
		return nil, status.Errorf(codes.InvalidArgument, "update %s: no resources, or more than %d bytes", r.ID, maxUpdateSpec)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.Value, &res); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "update %s: resources: %v", r.ID, err)
	}
	var want api.Config
	var notes []string
	if err := resources(&want, &res, func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "update %s: %v", r.ID, err)
	}
	for _, n := range notes {
		fmt.Fprintf(s.log, "containerd-shim-arrow: update %s: %s\n", r.ID, n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if want.MemoryMiB != 0 && want.MemoryMiB != c.memoryMiB {
		return nil, status.Errorf(codes.FailedPrecondition, "update %s: the VM's memory is fixed at boot (%d MiB): a limit of %d MiB needs a new task",
			r.ID, c.memoryMiB, want.MemoryMiB)
	}
	if res.CPU == nil || res.CPU.Quota == nil || *res.CPU.Quota <= 0 || c.group == nil {
		return &emptypb.Empty{}, nil
	}
	period := uint64(100000)
	if res.CPU.Period != nil && *res.CPU.Period > 0 {
		period = *res.CPU.Period
	}
	l := c.limits
	l.CPUs = float64(*res.CPU.Quota) / float64(period)
	if err := c.group.SetLimits(l); err != nil {
		return nil, status.Errorf(codes.Internal, "update %s: %v", r.ID, err)
	}
	c.limits = l
	return &emptypb.Empty{}, nil
}

// Wait returns once a process ended, with its status.
func (s *service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	_, p, err := s.get(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st := p.snapshot()
	return &taskapi.WaitResponse{ExitStatus: st.exit, ExitedAt: timestamppb.New(st.exitedAt)}, nil
}

// Stats reports the task's cgroup usage as cgroups v2 metrics.
func (s *service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	c, _, err := s.get(r.ID, "")
	if err != nil {
		return nil, err
	}
	a, err := c.metrics()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "stats %s: %v", r.ID, err)
	}
	return &taskapi.StatsResponse{Stats: a}, nil
}

// Connect tells containerd (again, after a restart of its own) who serves.
func (s *service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: RuntimeName}
	if c, _, err := s.get(r.ID, ""); err == nil {
		resp.TaskPid = uint32(c.pid)
	}
	return resp, nil
}

// Shutdown ends the shim daemon once it serves no task.
func (s *service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n > 0 && !r.Now {
		return &emptypb.Empty{}, nil
	}
	if n > 0 {
		s.closeAll()
	}
	// After the reply has gone out.
	time.AfterFunc(100*time.Millisecond, s.shutdown)
	return &emptypb.Empty{}, nil
}

// closeAll kills every task's VM and releases what they held: the
// daemon is going.
func (s *service) closeAll() {
	s.mu.Lock()
	tasks := make([]*container, 0, len(s.tasks))
	for _, c := range s.tasks {
		if c != nil {
			tasks = append(tasks, c)
		}
	}
	s.tasks = make(map[string]*container)
	s.mu.Unlock()
	for _, c := range tasks {
		c.stop()
		c.release(s.log)
	}
}
