package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Linux's limits on names.
const (
	maxComponent = 255
	maxPath      = 4095
	// maxSymlinkHops is how many symbolic links one path may go through,
	// as the kernel's MAXSYMLINKS.
	maxSymlinkHops = 40
)

// errNotDir: a path's parent is not a directory.
var errNotDir = fmt.Errorf("%w: not a directory", ErrInvalidEntry)

// splitName cleans an archive name into its components relative to the
// root: leading slashes, "." and empty components go, ".." removes the
// component before it and may not climb above the root.
func splitName(name string) ([]string, error) {
	if len(name) > maxPath {
		return nil, fmt.Errorf("%w: %d bytes", ErrNameTooLong, len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("%w: name contains a NUL byte", ErrInvalidEntry)
	}
	var comps []string
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(comps) == 0 {
				return nil, ErrTraversal
			}
			comps = comps[:len(comps)-1]
		default:
			if len(c) > maxComponent {
				return nil, fmt.Errorf("%w: component of %d bytes", ErrNameTooLong, len(c))
			}
			comps = append(comps, c)
		}
	}
	return comps, nil
}

// joinPath joins a resolved relative path and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// resolveMode says how openDir treats what it meets on the way.
type resolveMode int

const (
	// lookup follows symbolic links inside the root and fails on a
	// missing directory.
	lookup resolveMode = iota
	// create follows symbolic links inside the root and creates missing
	// directories.
	create
	// strict follows no symbolic link and creates nothing.
	strict
)

// openDir opens the directory at comps below the root as an O_PATH
// descriptor, one component at a time and never following a symbolic link
// with the kernel: links met on the way are read and their targets walked
// in the same way, with the root as "/" (mode strict refuses them). It
// returns the descriptor and the directory's resolved path; the caller
// closes the descriptor. onCreate is called with the resolved path of every
// directory mode create makes.
func openDir(root int, comps []string, mode resolveMode, onCreate func(string)) (int, string, error) {
	type level struct {
		fd   int
		name string
	}
	var stack []level
	closeAll := func() {
		for _, l := range stack {
			unix.Close(l.fd)
		}
		stack = stack[:0]
	}
	cur := func() int {
		if len(stack) == 0 {
			return root
		}
		return stack[len(stack)-1].fd
	}
	resolved := func() string {
		names := make([]string, len(stack))
		for i, l := range stack {
			names[i] = l.name
		}
		return strings.Join(names, "/")
	}
	queue := append([]string(nil), comps...)
	hops := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return -1, "", ErrSymlinkEscape
			}
			unix.Close(stack[len(stack)-1].fd)
			stack = stack[:len(stack)-1]
			continue
		}
		if len(c) > maxComponent {
			closeAll()
			return -1, "", fmt.Errorf("%w: component of %d bytes", ErrNameTooLong, len(c))
		}
		fd, err := openPath(cur(), c)
		if err == nil {
			stack = append(stack, level{fd, c})
			continue
		}
		var st unix.Stat_t
		serr := unix.Fstatat(cur(), c, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(serr, unix.ENOENT) && mode == create:
			if err := unix.Mkdirat(cur(), c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				closeAll()
				return -1, "", &os.PathError{Op: "mkdir", Path: joinPath(resolved(), c), Err: err}
			}
			if onCreate != nil {
				onCreate(joinPath(resolved(), c))
			}
			fd, err := openPath(cur(), c)
			if err != nil {
				closeAll()
				return -1, "", &os.PathError{Op: "open", Path: joinPath(resolved(), c), Err: err}
			}
			stack = append(stack, level{fd, c})
		case errors.Is(serr, unix.ENOENT):
			p := joinPath(resolved(), c)
			closeAll()
			return -1, "", &os.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		case serr != nil:
			p := joinPath(resolved(), c)
			closeAll()
			return -1, "", &os.PathError{Op: "stat", Path: p, Err: serr}
		case st.Mode&unix.S_IFMT == unix.S_IFLNK && mode != strict:
			hops++
			if hops > maxSymlinkHops {
				closeAll()
				return -1, "", fmt.Errorf("%w: too many levels of symbolic links", ErrInvalidEntry)
			}
			target, err := readlinkat(cur(), c)
			if err != nil {
				p := joinPath(resolved(), c)
				closeAll()
				return -1, "", &os.PathError{Op: "readlink", Path: p, Err: err}
			}
			if target == "" {
				closeAll()
				return -1, "", fmt.Errorf("%w: empty symbolic link", ErrInvalidEntry)
			}
			if strings.HasPrefix(target, "/") {
				closeAll()
			}
			queue = append(strings.Split(target, "/"), queue...)
		default:
			p := joinPath(resolved(), c)
			closeAll()
			return -1, "", fmt.Errorf("%s: %w", p, errNotDir)
		}
	}
	path := resolved()
	if len(stack) == 0 {
		fd, err := openPath(root, ".")
		if err != nil {
			return -1, "", &os.PathError{Op: "open", Path: ".", Err: err}
		}
		return fd, "", nil
	}
	top := stack[len(stack)-1].fd
	stack = stack[:len(stack)-1]
	closeAll()
	return top, path, nil
}

// openPath opens the directory name in dir as an O_PATH descriptor without
// following a symbolic link.
func openPath(dir int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// openDirFile opens the directory name in dir for reading, without
// following a symbolic link.
func openDirFile(dir int, name string) (*os.File, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// readlinkat reads the symbolic link name in dir.
func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, maxPath+1)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	if n > maxPath {
		return "", fmt.Errorf("%w: symbolic link target", ErrNameTooLong)
	}
	return string(buf[:n]), nil
}
