package vm

import (
	"os"
	"strconv"
)

// fdTable is the list of files a child process inherits, each numbered
// when it is registered: the first file is the child's descriptor 3, the
// next 4, and so on, as exec.Cmd.ExtraFiles hands them out. The jail's
// helper passes its own descriptors 3 and up on to QEMU unchanged
// (jail.Command), so the numbers hold in a jail as well.
//
// Numbering at registration is what keeps QEMU's command line and its
// descriptors in step: the command line is built from the numbers add
// returned, never from a second account of the order.
type fdTable struct {
	files []*os.File
}

// firstFD is the descriptor of a child's first inherited file: 0 to 2 are
// its standard streams.
const firstFD = 3

// add registers f and returns the descriptor the child inherits it on. f
// is nil only in a table that numbers a command line and is never handed
// to a child (see [Config.Args]).
func (t *fdTable) add(f *os.File) int {
	t.files = append(t.files, f)
	return firstFD + len(t.files) - 1
}

// list returns the registered files in descriptor order, for
// exec.Cmd.ExtraFiles or jail.Command.
func (t *fdTable) list() []*os.File { return t.files }

// fdPath names an inherited descriptor as a path QEMU can open.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// guestFiles are the files QEMU inherits, by what they are for: its ends
// of the channels to Arrow, and the files Arrow opens with its own
// credentials so that a jailed QEMU needs no access to their paths.
type guestFiles struct {
	console, control, qmp *os.File // QEMU's ends of the channels
	kernel, initrd        *os.File
	drives                []*os.File // by Config.Drives
	shares                []*os.File // by Config.Shares; nil where !Share.hasFD
	nics                  []*os.File // by Config.NICs; nil where !NIC.hasFD
	memory                *os.File   // with Config.Memory
}

// close closes every file of g that is open.
func (g *guestFiles) close() {
	all := []*os.File{g.console, g.control, g.qmp, g.kernel, g.initrd, g.memory}
	all = append(all, g.drives...)
	all = append(all, g.shares...)
	all = append(all, g.nics...)
	closeFiles(all)
}

// closeFiles closes the files of fs that are not nil.
func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// qemuFDs are the descriptors QEMU's command line names its inherited
// files by; 0 where a device has none.
type qemuFDs struct {
	console, control, qmp int
	kernel, initrd        int
	drives                []int // by Config.Drives
	shares                []int // by Config.Shares
	nics                  []int // by Config.NICs
	memory                int
}

// hasFD reports whether QEMU inherits a descriptor for s: the vhost-user
// socket of a virtiofs share. QEMU serves a 9p share itself.
func (s Share) hasFD() bool { return s.FS == ShareVirtiofs }

// hasFD reports whether QEMU inherits a descriptor for n: a tap device or
// a placeholder's socket. QEMU opens a user-mode card's sockets itself.
func (n NIC) hasFD() bool { return n.Tap != nil || n.Placeholder }

// number registers g's files in a new table, in the order QEMU inherits
// them, and returns the table and the descriptors they got. Only the
// devices of c that have a descriptor are registered; g may be empty, for
// a command line that is only printed or compared (see [Config.Args]).
func (c Config) number(g guestFiles) (*fdTable, qemuFDs) {
	var t fdTable
	var n qemuFDs
	n.console = t.add(g.console)
	n.control = t.add(g.control)
	n.qmp = t.add(g.qmp)
	n.kernel = t.add(g.kernel)
	n.initrd = t.add(g.initrd)
	n.drives = make([]int, len(c.Drives))
	for i := range c.Drives {
		n.drives[i] = t.add(fileAt(g.drives, i))
	}
	n.shares = make([]int, len(c.Shares))
	for i, s := range c.Shares {
		if s.hasFD() {
			n.shares[i] = t.add(fileAt(g.shares, i))
		}
	}
	n.nics = make([]int, len(c.NICs))
	for i, nic := range c.NICs {
		if nic.hasFD() {
			n.nics[i] = t.add(fileAt(g.nics, i))
		}
	}
	if c.Memory != nil {
		n.memory = t.add(g.memory)
	}
	return &t, n
}

// fileAt returns fs[i], or nil past fs's end (an empty guestFiles).
func fileAt(fs []*os.File, i int) *os.File {
	if i < len(fs) {
		return fs[i]
	}
	return nil
}
