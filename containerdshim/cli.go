package containerdshim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RuntimeName is the runtime containerd knows this shim by: containerd
// turns io.containerd.arrow.v1 into the binary's name,
// containerd-shim-arrow-v1, and finds it in its PATH.
const RuntimeName = "io.containerd.arrow.v1"

// flags are the shim's command line, as containerd 1.6 passes it.
type flags struct {
	namespace, address, publishBinary, id, bundle string
	debug                                         bool
	action                                        string
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("containerd-shim-arrow-v1", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.namespace, "namespace", "", "containerd namespace of the task")
	fs.StringVar(&f.address, "address", "", "containerd's grpc address")
	fs.StringVar(&f.publishBinary, "publish-binary", "", "containerd's binary (unused: events go to $TTRPC_ADDRESS)")
	fs.StringVar(&f.id, "id", "", "the task's ID")
	fs.StringVar(&f.bundle, "bundle", "", "the task's bundle (default: the working directory)")
	fs.BoolVar(&f.debug, "debug", false, "log debug messages")
	// runc's shim takes these too; containerd passes them in some versions.
	fs.String("socket", "", "unused")
	fs.Bool("v", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.Lookup("v").Value.String() == "true" {
		f.action = "version"
		return f, nil
	}
	switch fs.NArg() {
	case 0:
	case 1:
		f.action = fs.Arg(0)
	default:
		return f, fmt.Errorf("want at most one action (start, delete), got %q", fs.Args())
	}
	if f.action != "version" && (f.namespace == "" || f.id == "") {
		return f, errors.New("-namespace and -id are required")
	}
	if f.action != "version" && (!validID.MatchString(f.namespace) || !validID.MatchString(f.id)) {
		return f, fmt.Errorf("-namespace %.80q, -id %.80q: want letters, digits, '_', '.' and '-'", f.namespace, f.id)
	}
	if f.bundle == "" {
		wd, err := os.Getwd()
		if err != nil {
			return f, err
		}
		f.bundle = wd
	}
	return f, nil
}

// Main is the shim's command: `start` spawns the long-lived shim daemon
// and prints its address; `delete` cleans up after a dead one; with no
// action the process is that daemon (started by `start`, never by
// containerd). It returns the process's exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "containerd-shim-arrow-v1: %v\n", err)
		return 2
	}
	switch f.action {
	case "version":
		fmt.Fprintf(stdout, "containerd-shim-arrow-v1 (runtime %s)\n", RuntimeName)
		return 0
	case "start":
		// containerd writes the runtime's options to stdin; Arrow
		// takes none, and reads them only so that the writer is done.
		_, _ = io.Copy(io.Discard, io.LimitReader(stdin, 1<<20))
		addr, err := start(f)
		if err != nil {
			fmt.Fprintf(stderr, "containerd-shim-arrow-v1 start: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, addr)
		return 0
	case "delete":
		b, err := deleteDead(ctx, f, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "containerd-shim-arrow-v1 delete: %v\n", err)
			return 1
		}
		_, _ = stdout.Write(b)
		return 0
	case "":
		if err := daemon(ctx, f); err != nil {
			fmt.Fprintf(stderr, "containerd-shim-arrow-v1: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "containerd-shim-arrow-v1: unknown action %q: want start or delete\n", f.action)
	return 2
}

// socketDir holds the shims' sockets, where containerd's own shims keep
// theirs: a bundle's path may be too long for a socket's address (108
// bytes), a hash of 32 hex digits under it is not.
const socketDir = "/run/containerd/s"

// socketPath is the shim's socket: named by a hash of containerd's
// address, the namespace and the task, so that shims of two containerds
// (a test's beside the host's) never share one.
func socketPath(f flags) string {
	h := sha256.Sum256([]byte(f.address + "\x00" + f.namespace + "\x00" + f.id))
	return filepath.Join(socketDir, "arrow-"+hex.EncodeToString(h[:16]))
}

// Files of the bundle the shim writes.
const (
	addressFile = "address" // the socket's address: containerd reconnects by it
	shimPidFile = "shim.pid"
	vmFile      = "arrow-vm" // the VM's QEMU: "PID STARTTIME", for delete
)

// start spawns the shim daemon in a session of its own, with the
// listening socket as its fd 3, writes the bundle's address file and
// returns the address to print.
func start(f flags) (string, error) {
	sock := socketPath(f)
	if err := os.MkdirAll(socketDir, 0o711); err != nil {
		return "", err
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		// A live shim of this very task (containerd retried a start).
		c.Close()
		return "unix://" + sock, nil
	}
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	// The daemon serves it: closing start's copy must not unlink it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	defer ln.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		return "", err
	}
	lf, err := ln.(*net.UnixListener).File()
	if err != nil {
		return "", err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	args := []string{"-namespace", f.namespace, "-id", f.id, "-address", f.address, "-bundle", f.bundle}
	if f.publishBinary != "" {
		args = append(args, "-publish-binary", f.publishBinary)
	}
	if f.debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = f.bundle
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The daemon's stderr (its diagnostics, a panic's trace) is the
	// bundle's log fifo, which containerd opened for reading before it
	// ran start and copies into its own log.
	if lw, err := os.OpenFile(filepath.Join(f.bundle, "log"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		defer lw.Close()
		cmd.Stderr = lw
	}
	if err := cmd.Start(); err != nil {
		_ = os.Remove(sock)
		return "", fmt.Errorf("spawn the shim daemon: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(filepath.Join(f.bundle, shimPidFile), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return "", err
	}
	addr := "unix://" + sock
	if err := os.WriteFile(filepath.Join(f.bundle, addressFile), []byte(addr), 0o600); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return "", err
	}
	return addr, nil
}

// daemon serves the task service on the socket inherited as fd 3 until
// Shutdown, or a SIGTERM once no task is left.
func daemon(ctx context.Context, f flags) error {
	lf := os.NewFile(3, "socket")
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return fmt.Errorf("the socket (fd 3, from start): %w", err)
	}
	var log io.Writer = os.Stderr
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The daemon outlives containerd: a hangup or interrupt of the
	// session containerd ran in must not end it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	svc, err := newService(ctx, f, log, cancel)
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(recoverer(log)))
	if err != nil {
		return err
	}
	taskapi.RegisterTTRPCTaskService(srv, svc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
		svc.closeAll()
	}
	svc.pub.drain(3 * time.Second)
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(socketPath(f))
	if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// deleteDead cleans up after a shim daemon that died (containerd calls
// `delete` when it cannot reach it): kills the VM it left, if the kernel
// did not already (the jail's helper dies with its parent), unmounts the
// root file system, and returns the DeleteResponse to print: exit status
// 137, as runc's shim reports a task it could not see end.
func deleteDead(ctx context.Context, f flags, log io.Writer) ([]byte, error) {
	if b, err := os.ReadFile(filepath.Join(f.bundle, vmFile)); err == nil {
		killRecorded(string(b))
	}
	if err := unmountAll(rootfsDir(f.bundle)); err != nil {
		fmt.Fprintf(log, "containerd-shim-arrow-v1 delete: %v\n", err)
	}
	// The group is where Create made it: the bundle's spec says where.
	spec, _ := ReadSpec(f.bundle)
	if parent, name, err := cgroupLocation(spec, f.namespace, f.id); err == nil {
		if err := removeCgroup(ctx, parent, name); err != nil {
			fmt.Fprintf(log, "containerd-shim-arrow-v1 delete: %v\n", err)
		}
	}
	_ = os.Remove(socketPath(f))
	return proto.Marshal(&taskapi.DeleteResponse{ExitStatus: 128 + uint32(syscall.SIGKILL), ExitedAt: timestamppb.Now()})
}

// recordVM writes "PID STARTTIME" of the VM's process to the bundle, so
// that delete kills that process and never another that reused the PID.
func recordVM(bundle string, pid int) error {
	st, err := startTime(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, vmFile), fmt.Appendf(nil, "%d %d", pid, st), 0o600)
}

// killRecorded kills the process a vmFile names, if it is still that one.
func killRecorded(rec string) {
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(rec, "%d %d", &pid, &st); err != nil || pid <= 1 {
		return
	}
	if now, err := startTime(pid); err == nil && now == st {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// startTime is a process's start time in clock ticks since boot
// (/proc/PID/stat's 22nd field).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command (field 2) may hold spaces and parentheses: fields
	// are counted after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// recoverer turns a panic in a request's handler into that request's
// error: one bad request must not end the daemon, and every VM with it.
func recoverer(log io.Writer) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (_ any, err error) {
		defer func() {
			if p := recover(); p != nil {
				fmt.Fprintf(log, "containerd-shim-arrow: panic in %s: %v\n%s", info.FullMethod, p, debug.Stack())
				err = status.Errorf(codes.Internal, "containerd-shim-arrow: %s: internal error: %v", info.FullMethod, p)
			}
		}()
		return m(ctx, u)
	}
}
