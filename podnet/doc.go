// Package podnet connects the VMs of a Kubernetes pod's containers to the
// pod's network namespace, under containerd's CRI plugin.
//
// The CRI plugin makes each pod a network namespace with CNI: an
// interface (eth0) with the pod's IP address and a default route. Every
// container of the pod is meant to share it. Kata Containers runs a pod in
// one VM and hands it the pod interface whole, with tc mirred redirects
// between eth0 and a tap: the VM holds the pod IP itself. Arrow runs each
// container in a VM of its own, and two VMs cannot both hold the pod IP
// and still reach each other at it (a guest's own address never leaves
// it). So the pod IP stays in the namespace, and the namespace routes:
//
//   - Each container gets a persistent tap in the pod's namespace (named
//     arwp + a hash of the container ID) and a /30 of 169.254.77.0/24, a
//     link-local range the pod's network never routes: the tap holds the
//     first address (the guest's gateway), the guest the second. IPv4
//     forwarding is turned on in that namespace only.
//   - The nftables table inet arrow-pod of the namespace masquerades what
//     the containers send out of the pod interface, so it leaves from the
//     pod IP as from a container's process, and DNATs new TCP and UDP
//     connections to the pod IP to the container that declared the port
//     (kubelet's io.kubernetes.container.ports annotation), and every
//     other port to the pod's first container. A container reaches
//     another one, or itself, at the pod IP: such hairpin connections are
//     masqueraded to the gateway of the tap they leave by, so that the
//     reply comes back through the namespace. A tap accepts only its
//     guest's source address, and nothing but replies and DNATed
//     connections is forwarded into the taps: the pod does not become a
//     router for its neighbours.
//
// The trade-offs against Kata's redirect: a guest does not see the pod IP
// as its own address (an application that reports its address reports the
// link address), containers do not share localhost, and a port two
// containers both listen on is reached at only one of them (Attach refuses
// to let two containers declare the same port). What is gained: a VM per
// container, as Arrow runs every application, with the pod's usual
// addressing seen from outside.
//
// The state that more than one container's attachment needs (which link
// addresses are taken, which container came first, what ip_forward was)
// is kept in a small file per namespace under a run directory, behind a
// lock, since the shims of a pod's containers attach concurrently; it is
// checked against the taps the namespace holds. Every change rebuilds the
// table whole in one nftables transaction. The last Detach leaves the
// namespace as CNI left it.
//
// The CRI plugin also runs a sandbox ("pause") container for every pod
// and names /proc/<its pid>/ns/net as the network namespace of the pod's
// containers. Arrow boots no VM for it: [StartPause] starts a small
// process inside the pod's namespace instead, whose entry point is
// [Pause].
package podnet
