package unit

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Packages make their runtime directories through tmpfiles.d(5) more often
// than through RuntimeDirectory= (memcached's /run/memcached, which holds
// its PID file): systemd-tmpfiles creates them at boot, before any service
// starts. An arrow has no systemd-tmpfiles, so arrow-init makes the
// directories of those files, as it makes RuntimeDirectory='s.

// Limits of the tmpfiles.d configuration read for one service. Debian's
// files are a few lines each; these only bound a hostile image.
const (
	maxTmpfilesFile  = 1 << 20 // bytes of one file
	maxTmpfilesFiles = 256     // files read
	maxTmpfilesLine  = 4096    // bytes of one line
	// MaxTmpDirs bounds the directories created, which go to arrow-init
	// beside the unit's own.
	MaxTmpDirs = 128
	// maxTmpfilesNotes bounds the ignored lines listed for --debug.
	maxTmpfilesNotes = 64
)

// TmpfilesDirs are the directories tmpfiles.d files are read from, in
// precedence order: a file name in an earlier one hides the same name in
// a later one. /run/tmpfiles.d is left out: it is the running system's,
// which for a host unit is the host's, not the arrow's.
var TmpfilesDirs = []string{"/etc/tmpfiles.d", "/usr/local/lib/tmpfiles.d", "/usr/lib/tmpfiles.d", "/lib/tmpfiles.d"}

// TmpDir is a 'd' or 'D' line of a tmpfiles.d file: a directory to create.
type TmpDir struct {
	Path string
	// Mode is the mode to set; HasMode is false for '-' (a new
	// directory gets 0755, an existing one keeps its own).
	Mode    uint32
	HasMode bool
	// User and Group own it; "" is '-': not changed (root's, for a new
	// directory). They are names or numbers, to look up in the root's
	// /etc/passwd and /etc/group.
	User, Group string
	// Optional is the '-' modifier: failing to make it is no error.
	// Replace is '=': whatever else is at the path is removed first.
	Optional, Replace bool
	// Where is FILE:LINE, for errors.
	Where string
}

// Tmpfiles is the tmpfiles.d configuration read for a service.
type Tmpfiles struct {
	// Files are the files read, in the order their lines apply.
	Files []string
	// Dirs are the directories to create, in that order; the first line
	// for a path wins, as in systemd-tmpfiles.
	Dirs []TmpDir
	// Notes say which lines were ignored, and why, for --debug.
	Notes []string
}

// LoadTmpfiles reads the tmpfiles.d files of root: every name in
// [TmpfilesDirs] or, when names is not nil, only those names (the files
// a service's packages ship), each from the first directory that has it.
// A file linked to /dev/null masks its name. Files apply in the order of
// their names.
func LoadTmpfiles(root FS, names []string) (*Tmpfiles, error) {
	want := func(string) bool { return true }
	if names != nil {
		want = func(n string) bool { return slices.Contains(names, n) }
	}
	chosen := map[string]string{}
	for _, dir := range TmpfilesDirs {
		list, err := root.ReadDir(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("tmpfiles.d: %s: %w", dir, err)
		}
		for _, n := range list {
			if !strings.HasSuffix(n, ".conf") || !want(n) {
				continue
			}
			if _, ok := chosen[n]; !ok {
				chosen[n] = path.Join(dir, n)
			}
		}
		if len(chosen) > maxTmpfilesFiles {
			return nil, fmt.Errorf("tmpfiles.d: more than %d files", maxTmpfilesFiles)
		}
	}
	order := make([]string, 0, len(chosen))
	for n := range chosen {
		order = append(order, n)
	}
	slices.Sort(order)
	t := &Tmpfiles{}
	seen := map[string]string{}
	for _, n := range order {
		p := chosen[n]
		if target, err := root.Readlink(p); err == nil && target == "/dev/null" {
			t.note("%s: masked", p)
			continue
		}
		b, err := root.ReadFile(p, maxTmpfilesFile)
		if err != nil {
			return nil, fmt.Errorf("tmpfiles.d: %w", err)
		}
		t.Files = append(t.Files, p)
		dirs, notes, err := ParseTmpfiles(p, b)
		if err != nil {
			return nil, err
		}
		for _, note := range notes {
			t.note("%s", note)
		}
		for _, d := range dirs {
			if first, ok := seen[d.Path]; ok {
				t.note("%s: %s: already configured at %s: ignored", d.Where, d.Path, first)
				continue
			}
			seen[d.Path] = d.Where
			if len(t.Dirs) == MaxTmpDirs {
				return nil, fmt.Errorf("tmpfiles.d: more than %d directories", MaxTmpDirs)
			}
			t.Dirs = append(t.Dirs, d)
		}
	}
	return t, nil
}

func (t *Tmpfiles) note(format string, args ...any) {
	switch {
	case len(t.Notes) < maxTmpfilesNotes:
		t.Notes = append(t.Notes, fmt.Sprintf(format, args...))
	case len(t.Notes) == maxTmpfilesNotes:
		t.Notes = append(t.Notes, "(more lines ignored)")
	}
}

// ParseTmpfiles parses one tmpfiles.d file named file: its 'd' and 'D'
// lines, which create directories. Other types are not run (notes name
// them). 'D' is read as 'd': what the directory holds is not removed. A
// malformed line of a type that is run is an error naming the file and
// line; so is a specifier whose value only the running system knows.
func ParseTmpfiles(file string, data []byte) (dirs []TmpDir, notes []string, err error) {
	if len(data) > maxTmpfilesFile {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes", file, maxTmpfilesFile)
	}
	for i, line := range strings.Split(string(data), "\n") {
		where := file + ":" + strconv.Itoa(i+1)
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if len(line) > maxTmpfilesLine {
			return nil, nil, fmt.Errorf("%s: a line longer than %d bytes", where, maxTmpfilesLine)
		}
		fields, err := tmpfilesFields(line, 6)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(fields) == 0 || fields[0] == "" {
			return nil, nil, fmt.Errorf("%s: a line without a type", where)
		}
		typ := fields[0]
		if typ[0] != 'd' && typ[0] != 'D' {
			what := typ
			if len(fields) > 1 {
				what += " " + fields[1]
			}
			notes = append(notes, fmt.Sprintf("%s: %.240s: ignored (only d and D lines are run)", where, what))
			continue
		}
		if mods := strings.Trim(typ[1:], "!-="); mods != "" {
			return nil, nil, fmt.Errorf("%s: type %.40q: the modifier %q is not supported for a directory", where, typ, mods[0])
		}
		d, err := parseTmpDir(fields)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		d.Where = where
		d.Optional, d.Replace = strings.Contains(typ, "-"), strings.Contains(typ, "=")
		dirs = append(dirs, d)
	}
	return dirs, notes, nil
}

// parseTmpDir parses the fields of a 'd' line: type, path, mode, user,
// group, age (ignored: nothing ages in an arrow) and argument (none).
func parseTmpDir(f []string) (TmpDir, error) {
	var d TmpDir
	if len(f) < 2 || f[1] == "" {
		return d, errors.New("a directory without a path")
	}
	p, err := expandTmpfiles(f[1])
	if err != nil {
		return d, err
	}
	switch {
	case !path.IsAbs(p) || len(p) > 4096 || strings.ContainsAny(p, "\x00*?[") || slices.Contains(strings.Split(p, "/"), ".."):
		return d, fmt.Errorf("path %.200q: want an absolute path, with no '..' and no glob", p)
	case path.Clean(p) == "/":
		return d, errors.New("path /: not a directory tmpfiles.d can make")
	}
	d.Path = path.Clean(p)
	if len(f) > 2 {
		// ':' (only when created) and '~' (masked by the existing
		// mode) both amount to the mode itself in a new directory.
		m := strings.TrimLeft(f[2], ":~")
		if m != "-" && m != "" {
			v, err := strconv.ParseUint(m, 8, 32)
			if err != nil || v > 0o7777 {
				return d, fmt.Errorf("mode %.40q: want octal, at most 7777", f[2])
			}
			d.Mode, d.HasMode = uint32(v), true
		}
	}
	for i, dst := range []*string{&d.User, &d.Group} {
		if len(f) <= 3+i {
			break
		}
		v := strings.TrimPrefix(f[3+i], ":")
		if v == "-" || v == "" {
			continue
		}
		if v, err = expandTmpfiles(v); err != nil {
			return d, err
		}
		if len(v) > 256 || strings.ContainsAny(v, ":/\x00 \t\n") {
			return d, fmt.Errorf("%s %.80q: not a user or group name", [2]string{"user", "group"}[i], v)
		}
		*dst = v
	}
	return d, nil
}

// tmpfilesFields splits a line into at most n fields: words separated by
// white space, with systemd's quotes and C escapes; the last takes the
// rest of the line, as the argument field does.
func tmpfilesFields(line string, n int) ([]string, error) {
	var out []string
	rest := line
	for len(out) < n-1 {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return out, nil
		}
		end, quote := 0, byte(0)
		for ; end < len(rest); end++ {
			c := rest[end]
			if c == '\\' {
				end++
				continue
			}
			if quote != 0 {
				if c == quote {
					quote = 0
				}
				continue
			}
			if c == '\'' || c == '"' {
				quote = c
				continue
			}
			if c == ' ' || c == '\t' {
				break
			}
		}
		words, err := SplitWords(rest[:min(end, len(rest))])
		if err != nil {
			return nil, err
		}
		if len(words) != 1 {
			return nil, fmt.Errorf("field %.80q: want one word", rest[:min(end, len(rest))])
		}
		out = append(out, words[0])
		rest = rest[min(end, len(rest)):]
	}
	if rest = strings.TrimLeft(rest, " \t"); rest != "" {
		out = append(out, rest)
	}
	return out, nil
}

// expandTmpfiles expands tmpfiles.d's specifiers with the system
// manager's values (the guest's, which are the standard ones). One only
// the running system knows (machine and boot IDs, host name, the OS
// release) is refused, as in unit files.
func expandTmpfiles(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i++; i >= len(v) {
			return "", fmt.Errorf("%.100q ends in a lone %%", v)
		}
		switch c := v[i]; c {
		case '%':
			b.WriteByte('%')
		case 't', 'S', 'C', 'L', 'E', 'T', 'V', 'a':
			r, err := specifiers{}.value(c, "")
			if err != nil {
				return "", err
			}
			b.WriteString(r)
		case 'u', 'g':
			b.WriteString("root")
		case 'U', 'G':
			b.WriteString("0")
		case 'h':
			b.WriteString("/root")
		default:
			if _, err := (specifiers{}).value(c, ""); err != nil {
				return "", fmt.Errorf("%.100q: %w", v, err)
			}
			return "", fmt.Errorf("%.100q: the specifier %%%c is not one of tmpfiles.d's", v, c)
		}
	}
	return b.String(), nil
}
