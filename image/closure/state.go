package closure

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// stateDirs are where Debian packages keep what they write at run time:
// their maintainer scripts make directories there (redis-server's postinst
// makes /var/lib/redis and /var/log/redis) that the daemon expects to find.
// Only the directories go into the guest, empty: what the host keeps there
// (logs, databases) is the host's, and private.
var stateDirs = []string{"/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/www"}

// maxScript bounds a maintainer script read for state directories: the
// largest in Debian are tens of KiB.
const maxScript = 1 << 20

// maxScriptPaths bounds the paths taken from one script.
const maxScriptPaths = 256

// scriptPaths returns what a maintainer script names: the absolute paths
// below stateDirs or /run (or /var/run, its old name) it mentions, which may be directories it
// makes, and the "cp SRC DST" lines with absolute, literal paths, which
// install one of the package's files at another place (nginx's postinst
// copies its welcome page to /var/www/html). Paths with shell expansions
// are not knowable without running the script and are skipped.
func scriptPaths(script []byte) (dirs []string, copies [][2]string) {
	if len(script) > maxScript {
		script = script[:maxScript]
	}
	seen := make(map[string]bool)
	for _, line := range bytes.Split(script, []byte("\n")) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		words := strings.FieldsFunc(string(line), func(r rune) bool {
			return r == ' ' || r == '\t' || r == ';' || r == '"' || r == '\'' || r == '|' || r == '&' || r == '(' || r == ')' || r == '`' || r == '<' || r == '>'
		})
		for i, w := range words {
			if w == "cp" && i+2 < len(words) && len(copies) < maxScriptPaths {
				src, dst := words[i+1], words[i+2]
				if literalPath(src) && literalPath(dst) {
					copies = append(copies, [2]string{path.Clean(src), path.Clean(dst)})
				}
			}
			if !literalPath(w) || len(dirs) >= maxScriptPaths {
				continue
			}
			// /run too (PostgreSQL's socket directory): arrow-init
			// keeps what the root file system has there instead of
			// mounting a tmpfs over it. A path is kept as written:
			// /var/run/postgresql brings the /var/run link with it.
			p := path.Clean(w)
			if !under(p, stateDirs) && !strings.HasPrefix(p, "/run/") && !strings.HasPrefix(p, "/var/run/") {
				continue
			}
			if !seen[p] && !isStateRoot(p) {
				seen[p] = true
				dirs = append(dirs, p)
			}
		}
	}
	return dirs, copies
}

// isStateRoot reports whether p is one of stateDirs itself: a script
// naming /var/lib says nothing of its own.
func isStateRoot(p string) bool {
	for _, d := range stateDirs {
		if p == d {
			return true
		}
	}
	return false
}

// literalPath reports whether w is an absolute path with no shell
// expansion or pattern in it.
func literalPath(w string) bool {
	return len(w) > 1 && w[0] == '/' && len(w) < 4096 && !strings.ContainsAny(w, "$*?[]{}~\\=,")
}

// addPackageDirs adds, for package p whose file list holds paths, what it
// needs beyond its files (see [Resolver]): its directories, empty unless
// files are listed in them; the files the host has in its directories
// under /etc that its list does not hold (configuration its maintainer
// scripts or the administrator made: nginx's sites-enabled/default); and,
// from its postinst, the state directories it makes, empty, and the files
// it copies from its own.
func (c *resolution) addPackageDirs(p *dpkgPkg, paths []string, listed map[string]bool) error {
	keep := c.keeper(false)
	for _, lp := range paths {
		if !keep(lp) || under(lp, virtualDirs) {
			continue
		}
		real, _, err := c.h.resolve(lp, false)
		if err != nil {
			continue
		}
		st, err := c.h.lstat(real)
		if err != nil || !st.mode.IsDir() {
			continue
		}
		if _, _, err := c.h.addPath(c.set, lp); err != nil {
			return fmt.Errorf("%s of %s: %w", lp, p, err)
		}
		if ownConfigDir(p.name, real) && c.rd.canRead(st) {
			if err := c.addConfig(real, listed); err != nil {
				return fmt.Errorf("%s of %s: %w", lp, p, err)
			}
		}
	}
	var script []byte
	for _, name := range p.scriptNames("postinst") {
		if b, err := c.h.readFile(name); err == nil {
			script = b
			break
		}
	}
	if script == nil {
		return nil // no postinst, or unreadable: nothing it made is known
	}
	c.set.AddScriptNames(script)
	dirs, copies := scriptPaths(script)
	for _, d := range dirs {
		real, _, err := c.h.resolve(d, true)
		if err != nil {
			continue
		}
		if st, err := c.h.lstat(real); err != nil || !st.mode.IsDir() || !keep(real) {
			continue
		}
		if _, _, err := c.h.addPath(c.set, d); err != nil {
			return fmt.Errorf("%s made by %s: %w", d, p, err)
		}
	}
	for _, cp := range copies {
		src, dst := cp[0], cp[1]
		if !listed[src] || !keep(dst) || under(dst, virtualDirs) {
			continue
		}
		real, _, err := c.h.resolve(src, true)
		if err != nil {
			continue
		}
		st, err := c.h.lstat(real)
		if err != nil || !st.mode.IsRegular() || !c.rd.canRead(st) {
			continue
		}
		// The destination's directory as the host has it, the file as
		// the package ships it: never the host's copy, which is data.
		ddir, _, err := c.h.resolve(path.Dir(dst), true)
		if err != nil {
			continue
		}
		if err := c.h.addDirs(c.set, ddir); err != nil {
			return fmt.Errorf("%s copied by %s: %w", dst, p, err)
		}
		f := c.h.fileOf(real, st)
		f.Path = path.Join(ddir, path.Base(dst))
		if err := c.set.Add(f); err != nil {
			return fmt.Errorf("%s copied by %s: %w", dst, p, err)
		}
	}
	return nil
}

// ownConfigDir reports whether dir is in package pkg's own configuration
// directory, /etc/NAME where NAME is the package's name or its part
// before the first "-" (nginx-common's /etc/nginx, redis-server's
// /etc/redis): the unlisted files there are the package's configuration.
// Directories packages share (/etc itself, /etc/default, /etc/init.d)
// hold every package's files and the host's own (/etc/passwd): none of
// theirs is taken.
func ownConfigDir(pkg, dir string) bool {
	rest, ok := strings.CutPrefix(dir, "/etc/")
	if !ok {
		return false
	}
	top, _, _ := strings.Cut(rest, "/")
	stem, _, _ := strings.Cut(pkg, "-")
	return top != "" && (top == pkg || top == stem)
}

// maxConfigEntries bounds the entries read from one configuration
// directory.
const maxConfigEntries = 4096

// addConfig adds the regular files and symlinks the host has directly in
// configuration directory dir that no package lists.
func (c *resolution) addConfig(dir string, listed map[string]bool) error {
	f, err := os.Open(c.h.host(dir))
	if err != nil {
		return nil
	}
	names, err := f.Readdirnames(maxConfigEntries)
	f.Close()
	if err != nil {
		return nil
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if listed[p] || !allowedSecret(p, "") {
			continue
		}
		st, err := c.h.lstat(p)
		if err != nil {
			continue
		}
		switch {
		case st.mode.IsRegular():
			if c.rd.canRead(st) {
				if err := c.h.addReal(c.set, p); err != nil {
					return err
				}
			}
		case st.mode&fs.ModeSymlink != 0:
			if err := c.addListed(p); err != nil {
				return err
			}
		}
	}
	return nil
}
