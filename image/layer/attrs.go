package layer

import (
	"maps"
	"strings"
	"time"
)

// Attr is an entry's metadata as its layer states it.
type Attr struct {
	// Mode holds the permission bits with setuid, setgid and sticky
	// (07777).
	Mode uint32
	// UID and GID own the entry.
	UID, GID int
	// ModTime is the modification time.
	ModTime time.Time
	// Xattrs holds the extended attributes Apply keeps (user.* and
	// security.capability), by name.
	Xattrs map[string][]byte
	// Implicit reports a directory that no entry named: Apply created it
	// as the parent of one (mode 0755, owned by root, time zero).
	Implicit bool
}

// Attrs records, for every path in a tree built by Apply, the metadata its
// layer states, whether or not the file system could keep it. Paths are
// relative to the root, slash-separated and resolved (symbolic links in
// parent paths followed), "" being the root itself. Use one Attrs for all the
// layers of an image, in order. The zero value is not usable: call NewAttrs.
type Attrs struct {
	root *attrNode
}

type attrNode struct {
	attr Attr
	set  bool
	kids map[string]*attrNode
}

// NewAttrs returns an empty Attrs.
func NewAttrs() *Attrs { return &Attrs{root: &attrNode{}} }

// Get returns the metadata recorded for path.
func (a *Attrs) Get(path string) (Attr, bool) {
	n := a.find(path, false)
	if n == nil || !n.set {
		return Attr{}, false
	}
	at := n.attr
	at.Xattrs = maps.Clone(at.Xattrs)
	return at, true
}

// Len returns how many paths have metadata recorded.
func (a *Attrs) Len() int {
	var count func(*attrNode) int
	count = func(n *attrNode) int {
		c := 0
		if n.set {
			c = 1
		}
		for _, k := range n.kids {
			c += count(k)
		}
		return c
	}
	return count(a.root)
}

// set records at for path, keeping what is recorded below it.
func (a *Attrs) set(path string, at Attr) {
	n := a.find(path, true)
	n.attr, n.set = at, true
}

// setIfMissing records at for path unless something is recorded already.
func (a *Attrs) setIfMissing(path string, at Attr) {
	if n := a.find(path, true); !n.set {
		n.attr, n.set = at, true
	}
}

// remove forgets path and everything below it.
func (a *Attrs) remove(path string) {
	if path == "" {
		a.root = &attrNode{}
		return
	}
	dir, base := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, base = path[:i], path[i+1:]
	}
	if p := a.find(dir, false); p != nil {
		delete(p.kids, base)
	}
}

func (a *Attrs) find(path string, create bool) *attrNode {
	n := a.root
	if path == "" {
		return n
	}
	for c := range strings.SplitSeq(path, "/") {
		k := n.kids[c]
		if k == nil {
			if !create {
				return nil
			}
			if n.kids == nil {
				n.kids = make(map[string]*attrNode)
			}
			k = &attrNode{}
			n.kids[c] = k
		}
		n = k
	}
	return n
}
