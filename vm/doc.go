// Package vm runs guests on QEMU's microvm machine: it picks the
// accelerator, builds the QEMU command line, starts and supervises the QEMU
// process, and speaks QMP to it.
//
// Arrow does not implement a VMM. QEMU is driven entirely from its command
// line and QMP, and every channel between host and guest is a socketpair
// handed to QEMU as an inherited file descriptor, so a VM leaves no socket
// files behind and no other process can connect to its channels.
package vm
