// Package jail confines the host processes of a VM, QEMU and its virtiofsd
// helpers, the way Firecracker's jailer confines Firecracker: a QEMU that a
// guest takes over holds nothing on the host worth having.
//
// A jailed QEMU:
//
//   - runs as a uid and gid of its own, leased from a range Arrow reserves
//     ([Range], [Acquire]): never root, never a user another VM shares, so
//     one escaped QEMU cannot signal, trace or read another's memory;
//   - lives in new mount, pid, ipc and uts namespaces, and a new network
//     namespace when its network needs none of the host's (no network, or
//     a tap device it inherits open);
//   - sees a root file system of its own: a tmpfs holding read-only binds
//     of /usr (QEMU, its libraries and firmware), /dev/null and /dev/kvm,
//     and a /proc of its pid namespace, which the helper pivot_roots into
//     before QEMU starts; once QEMU opened its files it chroots into an
//     empty directory of that tmpfs and drops to its uid (QEMU's -chroot
//     and -runas), so it ends with no capabilities in a directory that
//     holds nothing;
//   - runs under an allowlist seccomp filter (seccomp.go) installed before
//     exec, on top of QEMU's own -sandbox, and with rlimits set;
//   - starts in the arrow's cgroup (memory, CPU, pids), placed there before
//     it exists, so no part of its life is unconfined.
//
// The jail is set up by a small helper, arrow-jailer (cmd/arrow-jailer),
// started as root with the namespaces already new. It is the pid
// namespace's init: QEMU is its child, so when the helper dies, killed with
// the process that started it (a parent-death signal), the kernel kills
// QEMU too. QEMU cannot carry a parent-death signal itself: its -runas
// clears it, and QEMU must open its files as root before it drops
// privileges (the files are 0600 root, see package template).
//
// Every step fails closed: a jail that cannot be set up up is an error that
// names what is missing, and QEMU never starts without it.
package jail
