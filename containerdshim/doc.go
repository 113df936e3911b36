// Package containerdshim is containerd's runtime v2 shim for Arrow,
// `containerd-shim-arrow-v1` (runtime io.containerd.arrow.v1): it lets
// containerd (ctr, nerdctl, and through CRI the kubelet) run each
// container as an Arrow microVM, as containerd-shim-runc-v2 runs it
// as a runc container.
//
// Why a shim of Arrow's own rather than arrowd behind containerd:
// containerd's model is one supervisor process per task that outlives
// containerd and answers its ttrpc task service; Arrow's per-arrow
// supervisor (package shim) has the same shape, so this package is that
// supervisor speaking containerd's protocol. Each task's VM is launched
// by the shim process itself with run.Launch, jailed as every root run
// is, in a cgroup of its own under arrow-containerd/.
//
// The protocol, as containerd 1.6 drives it (cli.go):
//   - `start` spawns the shim daemon (the same binary, no action) in a
//     session of its own, with its listening socket (under
//     /run/containerd/s) as fd 3; it writes the socket's address to the
//     bundle's `address` file, where containerd finds it again after a
//     restart of its own, and prints it.
//   - the daemon serves containerd.task.v2.Task (service.go) and
//     publishes task events to $TTRPC_ADDRESS (events.go).
//   - `delete` cleans up after a daemon that died: kills the VM it left,
//     unmounts the root file system, and reports exit status 137.
//
// It is written on containerd's API types, ttrpc and typeurl only, not
// on containerd's shim library, whose bootstrap output containerd 1.6
// does not read.
//
// A task's OCI spec is translated into api.Config by Config (config.go),
// a pure function; its root file system is the snapshot containerd
// mounts at bundle/rootfs (mount.go), which run turns into a cached
// erofs disk.
//
// Under containerd's CRI plugin a pod's sandbox task boots no VM: it is
// a pause process holding the pod's network namespace (sandbox.go). Each
// of the pod's containers is a VM of its own, attached to that
// namespace by a tap (podnet.go, package podnet).
package containerdshim
