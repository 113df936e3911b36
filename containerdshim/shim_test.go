package containerdshim

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/arrowsys/arrow/internal/mountinfo"
)

func TestParseFlags(t *testing.T) {
	var errb bytes.Buffer
	f, err := parseFlags([]string{"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
		"-publish-binary", "/usr/bin/containerd", "-id", "abc", "-bundle", "/b", "-debug", "start"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if f.namespace != "k8s.io" || f.id != "abc" || f.bundle != "/b" || !f.debug || f.action != "start" {
		t.Errorf("flags %+v", f)
	}
	for _, args := range [][]string{
		{"-id", "x", "start"},                        // no namespace
		{"-namespace", "n", "-id", "../x", "delete"}, // an ID that is a path
		{"-namespace", "n", "-id", "x", "start", "more"},
	} {
		if _, err := parseFlags(args, &errb); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestSocketPath(t *testing.T) {
	a := socketPath(flags{address: "/run/containerd/containerd.sock", namespace: "default", id: strings.Repeat("x", 76)})
	b := socketPath(flags{address: "/tmp/other/c.sock", namespace: "default", id: strings.Repeat("x", 76)})
	if a == b {
		t.Error("two containerds' shims of the same task share a socket")
	}
	if len(a) >= 108 || !strings.HasPrefix(a, socketDir+"/") {
		t.Errorf("socket %q: too long for a socket address, or outside %s", a, socketDir)
	}
}

func TestDeleteDead(t *testing.T) {
	bundle := t.TempDir()
	// A record of a process that is not the recorded one (its start time
	// differs) must not be killed.
	if err := os.WriteFile(filepath.Join(bundle, vmFile), []byte("1 12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	b, err := deleteDead(context.Background(), flags{namespace: "n", id: "x", bundle: bundle}, &log)
	if err != nil {
		t.Fatal(err)
	}
	var resp taskapi.DeleteResponse
	if err := proto.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != 137 || resp.ExitedAt == nil {
		t.Errorf("delete: %v, want exit status 137 and a time", &resp)
	}
}

func TestStartTime(t *testing.T) {
	st, err := startTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("startTime: %d, %v", st, err)
	}
	// killRecorded of our own PID with a wrong start time does nothing
	// (this test would die otherwise).
	killRecorded(fmt.Sprintf("%d %d", os.Getpid(), st+1))
}

func TestMountRootfsRefuses(t *testing.T) {
	target := filepath.Join(t.TempDir(), "rootfs")
	for _, ms := range [][]*types.Mount{
		nil,
		{{Type: "overlay"}, {Type: "overlay"}},
		{{Type: "nfs", Source: "x:/y"}},
		{{Type: "overlay", Options: []string{strings.Repeat("l", maxMountData+1)}}},
	} {
		if err := mountRootfs(ms, target); err == nil {
			_ = unmountAll(target)
			t.Errorf("mountRootfs(%v) accepted", ms)
		}
	}
}

// TestMountRootfsBind mounts a directory as containerd's native
// snapshotter hands it (a bind mount), read-only, and unmounts it.
func TestMountRootfsBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	src, dir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "rootfs")
	if err := mountRootfs([]*types.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
		t.Errorf("through the mount: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644); err == nil {
		t.Error("a read-only mount took a write")
	}
	if err := unmountAll(target); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountinfo.Under(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Errorf("the source lost its file: %v", err)
	}
}

// fakeEvents is containerd's ttrpc events service, recording envelopes.
type fakeEvents struct {
	mu  sync.Mutex
	got []*types.Envelope
}

func (f *fakeEvents) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, r.Envelope)
	return &emptypb.Empty{}, nil
}

func (f *fakeEvents) envelopes() []*types.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*types.Envelope(nil), f.got...)
}

func TestPublisher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(t.TempDir(), "ttrpc.sock")
	var log bytes.Buffer
	// Events published before containerd answers wait in the queue.
	p := newPublisher(ctx, "unix://"+sock, "ns1", &log)
	p.publish(topicExit, &eventstypes.TaskExit{ContainerID: "c1", ID: "c1", ExitStatus: 3})

	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeEvents{}
	eventsapi.RegisterTTRPCEventsService(srv, fe)
	go func() { _ = srv.Serve(ctx, ln) }()
	defer srv.Close()
	p.publish(topicStart, &eventstypes.TaskStart{ContainerID: "c2", Pid: 42})

	deadline := time.Now().Add(10 * time.Second)
	for len(fe.envelopes()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := fe.envelopes()
	if len(got) != 2 {
		t.Fatalf("forwarded %d events, want 2; log: %s", len(got), log.String())
	}
	if got[0].Namespace != "ns1" || got[0].Topic != "/tasks/exit" {
		t.Errorf("envelope %v", got[0])
	}
	v, err := typeurl.UnmarshalAny(got[0].Event)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.(*eventstypes.TaskExit); !ok || e.ContainerID != "c1" || e.ExitStatus != 3 {
		t.Errorf("event %#v", v)
	}
	if got[0].Event.TypeUrl != "containerd.events.TaskExit" {
		t.Errorf("type URL %q: containerd 1.6 looks events up by containerd.events.TaskExit", got[0].Event.TypeUrl)
	}
}

// TestPublisherNeverBlocks: with no containerd to hear them, publishing
// returns at once, and a full queue drops events.
func TestPublisherNeverBlocks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log bytes.Buffer
	p := newPublisher(ctx, "unix:///nonexistent/ttrpc.sock", "ns", &syncWriter{w: &log})
	t0 := time.Now()
	for i := 0; i < publishQueue*2; i++ {
		p.publish(topicStart, &eventstypes.TaskStart{ContainerID: "c"})
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("publishing took %v", d)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func newTestService(t *testing.T) (*service, *bool) {
	t.Helper()
	t.Setenv("ARROW_ROOT", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	down := false
	var log bytes.Buffer
	s, err := newService(ctx, flags{namespace: "ns", id: "t1"}, &syncWriter{w: &log}, func() { down = true; cancel() })
	if err != nil {
		t.Fatal(err)
	}
	return s, &down
}

func code(err error) codes.Code { return status.Code(err) }

// TestServiceRequests: what the task service answers without a VM:
// unknown tasks, refused requests, a create that fails leaving nothing.
func TestServiceRequests(t *testing.T) {
	s, down := newTestService(t)
	ctx := context.Background()
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "nope"}); code(err) != codes.NotFound {
		t.Errorf("State of an unknown task: %v", err)
	}
	if _, err := s.Checkpoint(ctx, &taskapi.CheckpointTaskRequest{ID: "t1"}); code(err) != codes.Unimplemented {
		t.Errorf("Checkpoint: %v", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "../x", Bundle: "/b"}); code(err) != codes.InvalidArgument {
		t.Errorf("Create with a path for an ID: %v", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "t1", Bundle: "rel"}); code(err) != codes.InvalidArgument {
		t.Errorf("Create with a relative bundle: %v", err)
	}
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"process":{"args":["/bin/sh"]},"hooks":{"prestart":[{"path":"/x"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "t1", Bundle: bundle})
	if err == nil || !strings.Contains(err.Error(), "hooks") {
		t.Errorf("Create with hooks: %v", err)
	}
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "t1"}); code(err) != codes.NotFound {
		t.Errorf("a failed create left a task: %v", err)
	}
	if _, err := s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if !*down {
		t.Error("Shutdown with no task left did not end the daemon")
	}
}

func TestExecOptions(t *testing.T) {
	if _, err := execOptions(&specs.Process{}, false, false); err == nil {
		t.Error("an exec with no args accepted")
	}
}

func TestSnapshotKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk := func(names ...string) {
		for _, n := range names {
			if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("1/fs", "2/fs", "3/fs", "4/fs", "3/work", "4/work")
	overlay := func(upper string) []*types.Mount {
		return []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"index=off", "workdir=" + filepath.Join(dir, upper, "..", "work"), "upperdir=" + filepath.Join(dir, upper),
			"lowerdir=" + filepath.Join(dir, "2/fs") + ":" + filepath.Join(dir, "1/fs")}}}
	}
	key := func(ms []*types.Mount) string {
		t.Helper()
		k, err := snapshotKey(ctx, ms)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := key(overlay("3/fs")), key(overlay("4/fs"))
	if a == "" || a != b {
		t.Errorf("two containers of one image (empty uppers): keys %q and %q, want one", a, b)
	}
	if err := os.WriteFile(filepath.Join(dir, "4/fs/volume-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := key(overlay("4/fs")); c == a {
		t.Error("an upper directory with content shares the empty one's key")
	}
	// The snapshotter's tree made anew: the same paths, other directories.
	if err := os.RemoveAll(filepath.Join(dir, "1")); err != nil {
		t.Fatal(err)
	}
	mk("1/fs")
	if c := key(overlay("3/fs")); c == a {
		t.Error("a recreated lower directory keeps its key")
	}
	if k := key([]*types.Mount{{Type: "bind", Source: dir}}); k != "" {
		t.Errorf("a bind mount (a copied, mutable tree) got key %q", k)
	}
}

// TestUpdateRefusesMemory: a VM's memory is fixed at boot: an update
// that asks for another limit is refused with the reason, one that keeps
// it (CRI sends the whole set) passes.
func TestUpdateRefusesMemory(t *testing.T) {
	s, _ := newTestService(t)
	c := &container{id: "t1", memoryMiB: 256, execs: map[string]*process{}}
	c.init = newProcess(c, "", false, "", "", "")
	s.tasks["t1"] = c
	update := func(res string) error {
		_, err := s.Update(context.Background(), &taskapi.UpdateTaskRequest{ID: "t1", Resources: &anypb.Any{Value: []byte(res)}})
		return err
	}
	if err := update(`{"memory":{"limit":536870912}}`); code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "fixed at boot") {
		t.Errorf("a new memory limit: %v", err)
	}
	if err := update(`{"memory":{"limit":268435456},"cpu":{"shares":2}}`); err != nil {
		t.Errorf("the same memory limit: %v", err)
	}
	if err := update(`{`); code(err) != codes.InvalidArgument {
		t.Errorf("malformed resources: %v", err)
	}
}
