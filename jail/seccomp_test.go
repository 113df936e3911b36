package jail

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompData is struct seccomp_data for a call (nr, arch, ip, args) as
// x/net/bpf's interpreter must see it: the kernel loads the 32-bit words
// of seccomp_data in the host's order (little-endian here, an argument's
// low word first), the interpreter in network order, so each word is laid
// out big-endian at the offset the kernel reads it from.
func seccompData(arch uint32, nr uintptr, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], uint32(nr))
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

// verdict runs f on a call, in x/net/bpf's interpreter, which executes
// classic BPF as the kernel does.
func verdict(t *testing.T, f Filter, arch uint32, nr uintptr, args ...uint64) uint32 {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(f))
	for i, ins := range f {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	// The interpreter returns the program's 32-bit verdict as an int.
	out, err := vm.Run(seccompData(arch, nr, args...))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

const (
	allow  = unix.SECCOMP_RET_ALLOW
	eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	kill   = unix.SECCOMP_RET_KILL_PROCESS
)

func TestQEMUFilter(t *testing.T) {
	f, err := QEMUFilter()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		arch uint32
		nr   uintptr
		args []uint64
		want uint32
	}{
		{"read", auditArchX86_64, unix.SYS_READ, nil, allow},
		{"ioctl (KVM and tap)", auditArchX86_64, unix.SYS_IOCTL, nil, allow},
		{"sendmsg (QMP fd passing)", auditArchX86_64, unix.SYS_SENDMSG, nil, allow},
		{"threads: clone without namespaces", auditArchX86_64, unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, allow},
		{"clone into a new user namespace", auditArchX86_64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER}, eperm},
		{"clone into a new net namespace", auditArchX86_64, unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_NEWNET}, eperm},
		{"clone3: its flags are out of reach, so the C library falls back", auditArchX86_64, unix.SYS_CLONE3, nil, enosys},
		{"ptrace", auditArchX86_64, unix.SYS_PTRACE, nil, eperm},
		{"socket AF_INET (slirp)", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_STREAM}, allow},
		{"socket AF_INET6", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_INET6, unix.SOCK_DGRAM}, allow},
		{"socket AF_UNIX (abstract sockets of the host)", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, eperm},
		{"socket AF_NETLINK", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW}, eperm},
		{"socket AF_VSOCK", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, eperm},
		{"socket AF_ALG", auditArchX86_64, unix.SYS_SOCKET, []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET}, eperm},
		{"process_vm_readv", auditArchX86_64, unix.SYS_PROCESS_VM_READV, nil, eperm},
		{"kill (another process)", auditArchX86_64, unix.SYS_KILL, nil, eperm},
		{"mount", auditArchX86_64, unix.SYS_MOUNT, nil, eperm},
		{"unshare", auditArchX86_64, unix.SYS_UNSHARE, nil, eperm},
		{"setns", auditArchX86_64, unix.SYS_SETNS, nil, eperm},
		{"bpf", auditArchX86_64, unix.SYS_BPF, nil, eperm},
		{"perf_event_open", auditArchX86_64, unix.SYS_PERF_EVENT_OPEN, nil, eperm},
		{"userfaultfd", auditArchX86_64, unix.SYS_USERFAULTFD, nil, eperm},
		{"io_uring_setup", auditArchX86_64, unix.SYS_IO_URING_SETUP, nil, eperm},
		{"keyctl", auditArchX86_64, unix.SYS_KEYCTL, nil, eperm},
		{"init_module", auditArchX86_64, unix.SYS_INIT_MODULE, nil, eperm},
		{"open_by_handle_at", auditArchX86_64, unix.SYS_OPEN_BY_HANDLE_AT, nil, eperm},
		{"mknod", auditArchX86_64, unix.SYS_MKNOD, nil, eperm},
		{"chmod", auditArchX86_64, unix.SYS_CHMOD, nil, eperm},
		{"x32 ABI", auditArchX86_64, x32Bit | unix.SYS_READ, nil, enosys},
		{"i386 ABI", 0x40000003, unix.SYS_READ, nil, kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdict(t, f, tt.arch, tt.nr, tt.args...); got != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
}

func TestVirtiofsdFilter(t *testing.T) {
	f, err := VirtiofsdFilter()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		nr   uintptr
		args []uint64
		want uint32
	}{
		{"chmod 0755", unix.SYS_CHMOD, []uint64{0, 0o755}, allow},
		{"chmod setuid", unix.SYS_CHMOD, []uint64{0, 0o4755}, eperm},
		{"fchmod setgid", unix.SYS_FCHMOD, []uint64{3, 0o2755}, eperm},
		{"fchmod 0644", unix.SYS_FCHMOD, []uint64{3, 0o644}, allow},
		{"fchmodat setuid", unix.SYS_FCHMODAT, []uint64{3, 0, 0o4711}, eperm},
		{"fchmodat 0600", unix.SYS_FCHMODAT, []uint64{3, 0, 0o600}, allow},
		{"fchmodat2 setuid", sysFchmodat2, []uint64{3, 0, 0o6755, 0}, eperm},
		{"openat creating a setuid file", unix.SYS_OPENAT, []uint64{3, 0, unix.O_CREAT | unix.O_WRONLY, 0o4755}, eperm},
		{"openat creating a plain file", unix.SYS_OPENAT, []uint64{3, 0, unix.O_CREAT | unix.O_WRONLY, 0o644}, allow},
		{"openat reading", unix.SYS_OPENAT, []uint64{3, 0, unix.O_RDONLY, 0}, allow},
		{"mknodat a character device", unix.SYS_MKNODAT, []uint64{3, 0, unix.S_IFCHR | 0o666, 0x0103}, eperm},
		{"mknodat a block device", unix.SYS_MKNODAT, []uint64{3, 0, unix.S_IFBLK | 0o600, 0x0800}, eperm},
		{"mknodat a fifo", unix.SYS_MKNODAT, []uint64{3, 0, unix.S_IFIFO | 0o644, 0}, allow},
		{"mknod a setuid regular file", unix.SYS_MKNOD, []uint64{0, unix.S_IFREG | 0o4755, 0}, eperm},
		{"setxattr (file capabilities)", unix.SYS_SETXATTR, nil, eperm},
		{"fsetxattr", unix.SYS_FSETXATTR, nil, eperm},
		{"setxattrat", sysSetxattrat, nil, eperm},
		{"openat2: its mode is out of reach", unix.SYS_OPENAT2, nil, enosys},
		{"unshare: virtiofsd sandboxes itself", unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWNS}, allow},
		{"write", unix.SYS_WRITE, nil, allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdict(t, f, auditArchX86_64, tt.nr, tt.args...); got != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
}
