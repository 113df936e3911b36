package jail

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filters: an allowlist for QEMU, and for virtiofsd, which
// has an allowlist of its own, a filter that refuses the calls that would
// leave a guest's setuid, setgid or device file on the host.
//
// The filter is installed by the helper on itself (all threads) just
// before it starts the process, which inherits it: so the allowlist covers
// what the helper's own runtime does from then on (forking, waiting,
// forwarding signals) as well as what QEMU does. Both kinds of QEMU calls
// are in it: those of TCG and those of KVM (which adds only ioctls on
// /dev/kvm and its VM and vCPU descriptors). A call outside the list fails
// with EPERM; it does not kill the process, so a call QEMU makes only on
// a rare path degrades that path instead of killing the VM.
//
// QEMU's own -sandbox then adds its denylist on top (the kernel applies
// every filter and takes the strictest answer).

// auditArchX86_64 is AUDIT_ARCH_X86_64: a filter for x86-64 system call
// numbers must refuse every other calling convention.
const auditArchX86_64 = 0xc000003e

// x32Bit marks the x32 ABI's system call numbers, which reuse the x86-64
// table with that bit set.
const x32Bit = 0x40000000

// cloneNamespaces are the clone flags that create namespaces: none of them
// has a use in QEMU, and a new user namespace would give an escaped QEMU
// capabilities there.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// qemuAllowed lists what QEMU (and the helper's runtime) may call, found by
// tracing QEMU 7.2 (strace, and this filter with $ARROW_JAIL_LOG_DENIED)
// through every kind of run Arrow makes (cold boots with
// and without disks and networks, templates saved, clones restored and
// their disks swapped, published ports) and by reading its KVM paths. Left
// out on purpose, among others: ptrace, process_vm_readv/writev, kill (the
// helper forwards signals with tgkill), mount and every new mount API,
// pivot_root, unshare, setns, bpf, perf_event_open, userfaultfd, io_uring,
// keyctl, add_key, request_key, init_module, kexec_load, open_by_handle_at,
// mknod, reboot, swapon, settimeofday, clock_settime, chown, chmod, unlink.
// QEMU probes io_uring_setup at start-up and does without it when refused.
var qemuAllowed = []uintptr{
	// I/O on descriptors.
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV, unix.SYS_PREAD64, unix.SYS_PWRITE64,
	unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_LSEEK, unix.SYS_CLOSE,
	unix.SYS_CLOSE_RANGE, unix.SYS_DUP, unix.SYS_DUP2, unix.SYS_DUP3, unix.SYS_FCNTL, unix.SYS_IOCTL,
	unix.SYS_PIPE, unix.SYS_PIPE2, unix.SYS_EVENTFD, unix.SYS_EVENTFD2, unix.SYS_SIGNALFD, unix.SYS_SIGNALFD4,
	unix.SYS_TIMERFD_CREATE, unix.SYS_TIMERFD_SETTIME, unix.SYS_TIMERFD_GETTIME, unix.SYS_POLL, unix.SYS_PPOLL,
	unix.SYS_SELECT, unix.SYS_PSELECT6, unix.SYS_EPOLL_CREATE, unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL,
	unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_FSYNC, unix.SYS_FDATASYNC,
	unix.SYS_FALLOCATE, unix.SYS_FTRUNCATE, unix.SYS_SYNC_FILE_RANGE, unix.SYS_FADVISE64, unix.SYS_FLOCK,
	unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_SUBMIT, unix.SYS_IO_GETEVENTS, unix.SYS_IO_CANCEL,
	unix.SYS_IO_PGETEVENTS, unix.SYS_SENDFILE, unix.SYS_COPY_FILE_RANGE,
	// Files by name: start-up only (libraries, modules, firmware,
	// /proc/self/fd); afterwards QEMU is chrooted in an empty directory.
	unix.SYS_OPEN, unix.SYS_OPENAT, unix.SYS_STAT, unix.SYS_FSTAT, unix.SYS_LSTAT, unix.SYS_NEWFSTATAT,
	unix.SYS_STATX, unix.SYS_ACCESS, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2, unix.SYS_READLINK,
	unix.SYS_READLINKAT, unix.SYS_GETDENTS64, unix.SYS_GETCWD, unix.SYS_CHDIR, unix.SYS_FCHDIR,
	unix.SYS_STATFS, unix.SYS_FSTATFS,
	// Memory.
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_MREMAP, unix.SYS_BRK,
	unix.SYS_MINCORE, unix.SYS_MEMFD_CREATE, unix.SYS_MEMBARRIER, unix.SYS_GET_MEMPOLICY, unix.SYS_SET_MEMPOLICY, unix.SYS_MBIND,
	unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MSYNC,
	// Threads, time and scheduling.
	unix.SYS_FUTEX, unix.SYS_SET_ROBUST_LIST, unix.SYS_GET_ROBUST_LIST, unix.SYS_RSEQ, unix.SYS_SET_TID_ADDRESS,
	unix.SYS_GETTID, unix.SYS_GETPID, unix.SYS_GETPPID, unix.SYS_TGKILL, unix.SYS_TKILL, unix.SYS_SCHED_YIELD,
	unix.SYS_SCHED_GETAFFINITY, unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_GETPARAM, unix.SYS_SCHED_GETSCHEDULER,
	unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_CLOCK_GETRES,
	unix.SYS_GETTIMEOFDAY, unix.SYS_TIME, unix.SYS_GETRUSAGE, unix.SYS_TIMES, unix.SYS_GETCPU,
	unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_GETTIME, unix.SYS_TIMER_DELETE,
	unix.SYS_TIMER_GETOVERRUN, unix.SYS_SETITIMER, unix.SYS_GETITIMER,
	// Signals (to its own threads only: tgkill, not kill).
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_RT_SIGTIMEDWAIT,
	unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGPENDING, unix.SYS_SIGALTSTACK, unix.SYS_RESTART_SYSCALL,
	unix.SYS_PAUSE,
	// The process: the helper starts QEMU (execve, wait4); QEMU drops to
	// its uid and chroots (-runas, -chroot) and installs its own filter.
	unix.SYS_EXECVE, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_PRCTL,
	unix.SYS_ARCH_PRCTL, unix.SYS_UNAME, unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
	unix.SYS_GETGROUPS, unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_SETUID, unix.SYS_SETGID,
	unix.SYS_SETGROUPS, unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETFSUID, unix.SYS_SETFSGID,
	unix.SYS_CAPGET, unix.SYS_CHROOT, unix.SYS_SECCOMP, unix.SYS_GETRANDOM, unix.SYS_GETRLIMIT,
	unix.SYS_PRLIMIT64, unix.SYS_UMASK, unix.SYS_SYSINFO, unix.SYS_GETPRIORITY, unix.SYS_GETPGRP,
	unix.SYS_GETPGID, unix.SYS_GETSID,
	// Sockets: chardevs, QMP (descriptors passed with SCM_RIGHTS), the
	// user-mode network, published ports.
	unix.SYS_SOCKETPAIR, unix.SYS_CONNECT, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT,
	unix.SYS_ACCEPT4, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_SENDTO, unix.SYS_RECVFROM,
	unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG, unix.SYS_RECVMMSG, unix.SYS_SHUTDOWN,
	unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT,
}

// Filter is a compiled seccomp program.
type Filter []unix.SockFilter

// QEMUFilter is the allowlist for QEMU: qemuAllowed, clone without
// namespace flags, and clone3 answered ENOSYS (its flags sit in memory a
// filter cannot read), which makes the C library fall back to clone.
func QEMUFilter() (Filter, error) {
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	prog := prologue()
	for _, nr := range qemuAllowed {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(nr), SkipTrue: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	}
	// socket: IPv4 and IPv6 only, what slirp opens for the guest. Unix
	// sockets QEMU gets open (its channels are socket pairs); a new one
	// could reach the abstract Unix sockets of the host's network
	// namespace, which a user-network QEMU shares, and vsock, netlink,
	// AF_ALG and the rarer families are kernel surface QEMU never uses.
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_SOCKET, SkipTrue: 5},
		loadArgLow(0),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.AF_INET6, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: eperm})
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_CLONE3, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_CLONE, SkipTrue: 4},
		loadArgLow(0),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cloneNamespaces, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: eperm},
		bpf.RetConstant{Val: eperm})
	return assemble(prog)
}

// modeRule refuses syscall nr when its argument arg, a file mode, has
// bits set (mask, with value 0) or equals value under mask.
type modeRule struct {
	nr          uintptr
	arg         int
	mask, value uint32
}

// virtiofsdRules refuse what would make a file the guest created carry
// privilege on the host: setuid and setgid bits (by chmod or at creation),
// and device nodes. virtiofsd runs as root and creates files as the
// guest's uid, root's included, so without this guest root could plant a
// setuid-root binary in a volume.
func virtiofsdRules() []modeRule {
	const suid = unix.S_ISUID | unix.S_ISGID
	var rules []modeRule
	for _, r := range []struct {
		nr  uintptr
		arg int
	}{
		{unix.SYS_CHMOD, 1}, {unix.SYS_FCHMOD, 1}, {unix.SYS_FCHMODAT, 2}, {sysFchmodat2, 2},
		{unix.SYS_OPEN, 2}, {unix.SYS_OPENAT, 3}, {unix.SYS_CREAT, 1},
		{unix.SYS_MKNOD, 1}, {unix.SYS_MKNODAT, 2},
	} {
		rules = append(rules, modeRule{nr: r.nr, arg: r.arg, mask: suid})
	}
	for _, r := range []struct {
		nr  uintptr
		arg int
	}{{unix.SYS_MKNOD, 1}, {unix.SYS_MKNODAT, 2}} {
		rules = append(rules,
			modeRule{nr: r.nr, arg: r.arg, mask: unix.S_IFMT, value: unix.S_IFCHR},
			modeRule{nr: r.nr, arg: r.arg, mask: unix.S_IFMT, value: unix.S_IFBLK})
	}
	return rules
}

// sysFchmodat2 is fchmodat2 (Linux 6.6) and sysSetxattrat setxattrat
// (Linux 6.13), which x/sys may not name yet.
const (
	sysFchmodat2  = 452
	sysSetxattrat = 463
)

// VirtiofsdFilter allows everything but what virtiofsdRules refuse, and
// extended attributes, which would let a guest set file capabilities
// (security.capability) that work like a setuid bit: Arrow's virtiofsd
// runs without xattr support, so it never makes those calls itself.
func VirtiofsdFilter() (Filter, error) {
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	prog := prologue()
	for _, nr := range []uintptr{unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, sysSetxattrat} {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(nr), SkipTrue: 1},
			bpf.RetConstant{Val: eperm})
	}
	// openat2 keeps its mode in memory a filter cannot read: ENOSYS, so
	// that a caller falls back to openat, whose mode is checked below.
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_OPENAT2, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	for _, r := range virtiofsdRules() {
		// nr matches: load the mode, test it, refuse or reload nr and go on.
		test := bpf.Instruction(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: r.mask, SkipFalse: 1})
		prelude := []bpf.Instruction{}
		if r.value != 0 {
			prelude = []bpf.Instruction{bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: r.mask}}
			test = bpf.JumpIf{Cond: bpf.JumpEqual, Val: r.value, SkipFalse: 1}
		}
		body := append(append([]bpf.Instruction{loadArgLow(r.arg)}, prelude...), test, bpf.RetConstant{Val: eperm}, loadNr())
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(r.nr), SkipTrue: uint8(len(body))})
		prog = append(prog, body...)
	}
	prog = append(prog, bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	return assemble(prog)
}

// prologue refuses a foreign architecture or the x32 ABI and leaves the
// system call number in the accumulator.
func prologue() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		loadNr(),
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	}
}

func loadNr() bpf.Instruction { return bpf.LoadAbsolute{Off: 0, Size: 4} }

// loadArgLow loads the low 32 bits of argument i (little-endian).
func loadArgLow(i int) bpf.Instruction { return bpf.LoadAbsolute{Off: uint32(16 + 8*i), Size: 4} }

func assemble(prog []bpf.Instruction) (Filter, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("seccomp: the filters are written for x86-64, not %s", runtime.GOARCH)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	if len(raw) > 4096 {
		return nil, errors.New("seccomp: filter too long")
	}
	f := make(Filter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return f, nil
}

// Load installs f on every thread of the calling process, with
// no_new_privs set first, as an unprivileged filter requires. With
// logDenied, the kernel logs every call the filter refuses (an audit
// record of type SECCOMP, in dmesg): how to find a call QEMU needs on a
// path the allowlist missed.
func (f Filter) Load(logDenied bool) error {
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	if logDenied {
		flags |= unix.SECCOMP_FILTER_FLAG_LOG
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if errno != 0 {
		return fmt.Errorf("seccomp: install the filter: %w", errno)
	}
	return nil
}

// loadFilter installs p's filter.
func loadFilter(p Profile, logDenied bool) error {
	var f Filter
	var err error
	switch p {
	case ProfileQEMU:
		f, err = QEMUFilter()
	case ProfileVirtiofsd:
		f, err = VirtiofsdFilter()
	default:
		err = fmt.Errorf("unknown profile %q", p)
	}
	if err != nil {
		return err
	}
	return f.Load(logDenied)
}
