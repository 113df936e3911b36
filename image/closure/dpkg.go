package closure

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"unsafe"
)

// dpkgDir is the dpkg database's directory in the guest path space.
const dpkgDir = "/var/lib/dpkg"

// dpkgPkg is one package stanza of /var/lib/dpkg/status, reduced to the
// fields the resolver uses. Strings alias the status file's bytes.
type dpkgPkg struct {
	name, arch, multiArch, priority, status string
	essential                               bool
	depends, preDepends, recommends         string
	provides                                string
}

// installed reports whether the package's files are on disk: its status
// is unpacked or further (config-files and not-installed have none).
func (p *dpkgPkg) installed() bool {
	f := strings.Fields(p.status)
	if len(f) != 3 {
		return false
	}
	switch f[2] {
	case "installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending":
		return true
	}
	return false
}

// required reports whether dpkg treats the package as part of every
// Debian system.
func (p *dpkgPkg) required() bool { return p.essential || p.priority == "required" }

// String is the package's name and architecture, as dpkg writes them.
func (p *dpkgPkg) String() string {
	if p.arch == "" {
		return p.name
	}
	return p.name + ":" + p.arch
}

// parseDpkgStatus parses dpkg's status file: stanzas of "Field: value"
// lines (continued by lines starting with a space or tab) separated by
// empty lines. Only the fields the resolver needs are kept; malformed lines
// are skipped, as are stanzas without a Package field. It never fails on
// content, and never panics.
func parseDpkgStatus(data []byte) []*dpkgPkg {
	var pkgs []*dpkgPkg
	s := string(data)
	for _, st := range splitStanzas(s) {
		if p := parseStanza(s[st.start:st.end]); p != nil {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// span is the byte range of one stanza.
type span struct{ start, end int }

// splitStanzas returns the non-empty stanzas of s: the runs of lines
// between empty lines.
func splitStanzas(s string) []span {
	var out []span
	pos := 0
	for pos < len(s) {
		// Skip empty lines.
		for pos < len(s) && (s[pos] == '\n' || s[pos] == '\r' && pos+1 < len(s) && s[pos+1] == '\n') {
			pos++
		}
		if pos >= len(s) {
			break
		}
		end := strings.Index(s[pos:], "\n\n")
		if end < 0 {
			end = len(s)
		} else {
			end += pos + 1
		}
		out = append(out, span{pos, end})
		pos = end
	}
	return out
}

// parseStanza parses one stanza; nil when it has no Package field. A kept
// field continued over several lines is the raw text of those lines,
// newlines included (parseDeps treats them as spaces), so that parsing stays
// linear in the stanza's size.
func parseStanza(text string) *dpkgPkg {
	var (
		cur        dpkgPkg
		field      *string // the field a continuation line extends
		fieldStart int     // where its value starts in text
	)
	for pos := 0; pos < len(text); {
		lineEnd := len(text)
		next := len(text)
		if i := strings.IndexByte(text[pos:], '\n'); i >= 0 {
			lineEnd, next = pos+i, pos+i+1
		}
		line := text[pos:lineEnd]
		start := pos
		pos = next
		line = strings.TrimSuffix(line, "\r")
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Continuation lines are mostly descriptions and
			// conffiles: only look further for fields kept.
			if field != nil {
				*field = strings.TrimSpace(text[fieldStart : start+len(line)])
			}
			continue
		}
		field = nil
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := line[:colon]
		switch len(name) {
		case 6, 7, 8, 9, 10, 11, 12: // the lengths of the fields kept
		default:
			continue
		}
		value := strings.TrimSpace(line[colon+1:])
		switch {
		case strings.EqualFold(name, "Package"):
			cur.name = value
		case strings.EqualFold(name, "Architecture"):
			cur.arch = value
		case strings.EqualFold(name, "Multi-Arch"):
			cur.multiArch = value
		case strings.EqualFold(name, "Priority"):
			cur.priority = value
		case strings.EqualFold(name, "Status"):
			cur.status = value
		case strings.EqualFold(name, "Essential"):
			cur.essential = value == "yes"
		case strings.EqualFold(name, "Depends"):
			cur.depends, field = value, &cur.depends
		case strings.EqualFold(name, "Pre-Depends"):
			cur.preDepends, field = value, &cur.preDepends
		case strings.EqualFold(name, "Recommends"):
			cur.recommends, field = value, &cur.recommends
		case strings.EqualFold(name, "Provides"):
			cur.provides, field = value, &cur.provides
		}
		if field != nil {
			fieldStart = start + colon + 1
		}
	}
	if cur.name == "" {
		return nil
	}
	return &cur
}

// depAlt is one alternative of a dependency: a package name and its
// architecture qualifier ("", "any", "native" or an architecture).
type depAlt struct {
	name, arch string
}

// parseDeps parses a Depends-style field into its dependencies, each a
// list of alternatives. Version constraints "(>= 1)", architecture
// restrictions "[amd64]" and build profiles "<!nocheck>" are dropped.
func parseDeps(s string) [][]depAlt {
	var out [][]depAlt
	for len(s) > 0 {
		dep := s
		if i := strings.IndexByte(s, ','); i >= 0 {
			dep, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		var alts []depAlt
		for len(dep) > 0 {
			alt := dep
			if i := strings.IndexByte(dep, '|'); i >= 0 {
				alt, dep = dep[:i], dep[i+1:]
			} else {
				dep = ""
			}
			alt = strings.TrimLeft(alt, " \t\r\n")
			end := strings.IndexAny(alt, " \t\r\n([<")
			if end < 0 {
				end = len(alt)
			}
			name, arch, _ := strings.Cut(alt[:end], ":")
			if name != "" {
				alts = append(alts, depAlt{name, arch})
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// dpkgDB is the dpkg database, parsed lazily: the status file is split
// into stanzas and indexed by package name up front, and a stanza is parsed
// only when the resolver asks for that package. Of nearly a thousand
// packages, a program's closure looks at a few dozen.
type dpkgDB struct {
	data      string
	stanzas   []span
	names     []string         // package name of each stanza ("" if unknown)
	byName    map[string][]int // stanza indices by package name
	parsed    []*dpkgPkg       // parsed stanzas, nil until needed
	done      []bool           // which stanzas were parsed
	providers map[string][]*dpkgPkg
	required  []int // stanzas of Essential and required packages
	native    string
	base      map[*dpkgPkg]bool
}

// loadDpkg maps the dpkg status file of the host tree. It returns nil and
// no error when the tree has no dpkg database. The database's strings share
// the mapped file's memory: call release when done with it, and let none of
// them escape (copy them).
func loadDpkg(h *hostFS) (db *dpkgDB, release func(), err error) {
	data, unmap, err := h.mapFile(dpkgDir + "/status")
	if err != nil {
		if isNotExist(err) {
			return nil, func() {}, nil
		}
		return nil, nil, fmt.Errorf("read the dpkg database: %w", err)
	}
	// A megabyte the resolver only reads, mapped rather than copied.
	return newDpkgDB(unsafe.String(unsafe.SliceData(data), len(data))), unmap, nil
}

func newDpkgDB(data string) *dpkgDB {
	db := &dpkgDB{data: data, stanzas: splitStanzas(data)}
	n := len(db.stanzas)
	db.names = make([]string, n)
	db.byName = make(map[string][]int, n)
	db.parsed = make([]*dpkgPkg, n)
	db.done = make([]bool, n)
	for i, st := range db.stanzas {
		text := data[st.start:st.end]
		name := ""
		if rest, ok := strings.CutPrefix(text, "Package:"); ok {
			// dpkg always writes Package first.
			if j := strings.IndexByte(rest, '\n'); j >= 0 {
				rest = rest[:j]
			}
			name = strings.TrimSpace(rest)
		} else if p := db.pkg(i); p != nil {
			name = p.name
		}
		if name != "" {
			db.names[i] = name
			db.byName[name] = append(db.byName[name], i)
		}
	}
	for _, i := range db.byName["dpkg"] {
		if p := db.pkg(i); p != nil && p.installed() {
			db.native = p.arch
		}
	}
	return db
}

// pkg returns stanza i parsed, or nil when it is no package.
func (db *dpkgDB) pkg(i int) *dpkgPkg {
	if !db.done[i] {
		db.done[i] = true
		st := db.stanzas[i]
		db.parsed[i] = parseStanza(db.data[st.start:st.end])
	}
	return db.parsed[i]
}

// installedNamed returns the installed packages named name.
func (db *dpkgDB) installedNamed(name string) []*dpkgPkg {
	var out []*dpkgPkg
	for _, i := range db.byName[name] {
		if p := db.pkg(i); p != nil && p.installed() && p.name == name {
			out = append(out, p)
		}
	}
	return out
}

// stanzasWith returns the indices of the stanzas holding line (a whole
// line, such as "Priority: required"), found by a fast scan of the file.
func (db *dpkgDB) stanzasWith(line string) []int {
	var out []int
	for _, at := range db.lineOffsets(line, true) {
		k := db.stanzaAt(at)
		if k >= 0 && (len(out) == 0 || out[len(out)-1] != k) {
			out = append(out, k)
		}
	}
	return out
}

// lineOffsets returns the offsets of the lines starting with prefix (the
// whole line when whole is set).
func (db *dpkgDB) lineOffsets(prefix string, whole bool) []int {
	var out []int
	for pos := 0; pos < len(db.data); {
		j := strings.Index(db.data[pos:], prefix)
		if j < 0 {
			break
		}
		at := pos + j
		pos = at + len(prefix)
		if at > 0 && db.data[at-1] != '\n' {
			continue
		}
		if whole && pos < len(db.data) && db.data[pos] != '\n' {
			continue
		}
		out = append(out, at)
	}
	return out
}

// stanzaAt returns the index of the stanza holding byte offset at, or -1.
func (db *dpkgDB) stanzaAt(at int) int {
	k := sort.Search(len(db.stanzas), func(k int) bool { return db.stanzas[k].end > at })
	if k < len(db.stanzas) && db.stanzas[k].start <= at {
		return k
	}
	return -1
}

// requiredStanzas returns the stanzas that say Essential: yes or Priority:
// required.
func (db *dpkgDB) requiredStanzas() []int {
	if db.required == nil {
		db.required = append(db.stanzasWith("Priority: required"), db.stanzasWith("Essential: yes")...)
	}
	return db.required
}

// provided returns the installed packages providing virtual package name.
func (db *dpkgDB) provided(name string) []*dpkgPkg {
	if db.providers == nil {
		db.providers = make(map[string][]*dpkgPkg)
		seen := make(map[int]bool)
		for _, at := range db.lineOffsets("Provides:", false) {
			k := db.stanzaAt(at)
			if k < 0 || seen[k] {
				continue
			}
			seen[k] = true
			p := db.pkg(k)
			if p == nil || !p.installed() {
				continue
			}
			for _, d := range parseDeps(p.provides) {
				db.providers[d[0].name] = append(db.providers[d[0].name], p)
			}
		}
	}
	return db.providers[name]
}

// find returns the installed package satisfying alternative a for a
// package of architecture fromArch: a real package of that name in the
// best architecture, else a package providing it.
func (db *dpkgDB) find(a depAlt, fromArch string) *dpkgPkg {
	if p := db.pick(db.installedNamed(a.name), a.arch, fromArch); p != nil {
		return p
	}
	return db.pick(db.provided(a.name), a.arch, fromArch)
}

func (db *dpkgDB) pick(cands []*dpkgPkg, qual, fromArch string) *dpkgPkg {
	if len(cands) == 0 {
		return nil
	}
	want := fromArch
	switch qual {
	case "", "any":
	case "native":
		want = db.native
	default:
		want = qual
	}
	if want == "all" || want == "" {
		want = db.native
	}
	for _, p := range cands {
		if p.arch == want {
			return p
		}
	}
	for _, p := range cands {
		if p.arch == "all" {
			return p
		}
	}
	return cands[0]
}

// resolveDeps returns, for each dependency in field, the first installed
// alternative (dependencies with none installed are left out).
func (db *dpkgDB) resolveDeps(field string, from *dpkgPkg) []*dpkgPkg {
	var out []*dpkgPkg
	for _, dep := range parseDeps(field) {
		for _, a := range dep {
			if p := db.find(a, from.arch); p != nil {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// isBase reports whether p is part of the base system: Essential, of
// Priority required, or a dependency (recursively) of such a package. Every
// Debian system has these, the ELF closure brings the libraries among them
// that a program really uses, and their other files (libc6's gconv
// modules, coreutils' programs) would only bloat the guest.
func (db *dpkgDB) isBase(p *dpkgPkg) bool {
	if db.base == nil {
		db.base = make(map[*dpkgPkg]bool)
		var queue []*dpkgPkg
		for _, i := range db.requiredStanzas() {
			if q := db.pkg(i); q != nil && q.installed() && q.required() && !db.base[q] {
				db.base[q] = true
				queue = append(queue, q)
			}
		}
		for len(queue) > 0 {
			q := queue[0]
			queue = queue[1:]
			for _, field := range []string{q.preDepends, q.depends} {
				for _, d := range db.resolveDeps(field, q) {
					if !db.base[d] {
						db.base[d] = true
						queue = append(queue, d)
					}
				}
			}
		}
	}
	return db.base[p]
}

// listNames returns the candidate names of p's file list in the info
// directory, the likelier first.
func (p *dpkgPkg) listNames() []string {
	plain := dpkgDir + "/info/" + p.name + ".list"
	if p.arch == "" {
		return []string{plain}
	}
	qual := dpkgDir + "/info/" + p.name + ":" + p.arch + ".list"
	if p.multiArch == "same" {
		return []string{qual, plain}
	}
	return []string{plain, qual}
}

// scriptNames are the paths p's maintainer script of the given kind
// ("postinst") may have, named as its file list is.
func (p *dpkgPkg) scriptNames(kind string) []string {
	var out []string
	for _, n := range p.listNames() {
		out = append(out, strings.TrimSuffix(n, ".list")+"."+kind)
	}
	return out
}

// readList reads p's file list.
func (db *dpkgDB) readList(h *hostFS, p *dpkgPkg) ([]byte, error) {
	return db.readListInto(h, p, nil)
}

// owners returns the package owning each group of paths: the first
// package whose file list holds any path of the group (the names of one
// file, /bin/echo and /usr/bin/echo). A group no package owns is absent
// from the result, which is keyed by the group's index. The lists most
// likely to hold the paths are read first (see byLikelyOwner) and the
// search stops once every group is found, so that the common case reads a
// few lists rather than all of them.
func (db *dpkgDB) owners(h *hostFS, groups [][]string) (map[int]*dpkgPkg, error) {
	found := make(map[int]*dpkgPkg)
	var (
		needles [][]byte
		group   []int
		names   []string
	)
	for i, g := range groups {
		for _, p := range g {
			needles = append(needles, []byte("\n"+p+"\n"))
			group = append(group, i)
			names = append(names, p)
		}
	}
	if len(needles) == 0 {
		return found, nil
	}
	var buf []byte
	for _, i := range db.byLikelyOwner(names) {
		pkg := db.pkg(i)
		if pkg == nil || !pkg.installed() {
			continue
		}
		var err error
		buf, err = db.readListInto(h, pkg, buf[:0])
		if err != nil {
			if pathError(err) {
				continue
			}
			return nil, err
		}
		for i, n := range needles {
			if _, ok := found[group[i]]; ok {
				continue
			}
			if bytes.HasPrefix(buf, n[1:]) || bytes.Contains(buf, n) {
				found[group[i]] = pkg
			}
		}
		if len(found) == len(groups) {
			break
		}
	}
	return found, nil
}

// readListInto reads p's file list into buf, reusing its storage.
func (db *dpkgDB) readListInto(h *hostFS, p *dpkgPkg, buf []byte) ([]byte, error) {
	var firstErr error
	for _, name := range p.listNames() {
		data, err := h.readFileInto(name, buf)
		if err == nil {
			return data, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return buf, fmt.Errorf("file list of %s: %w", p, firstErr)
}

// byLikelyOwner orders the stanzas by how likely their packages are to own
// one of paths: first those whose names start with the leading letters of
// a path's base name ("python3.11" and python3.11-minimal, "perl" and
// perl-base), then those whose names contain them, then the base system's
// Essential and required packages (which own echo, env and sh), then the
// rest.
func (db *dpkgDB) byLikelyOwner(paths []string) []int {
	var stems []string
	for _, p := range paths {
		b := path.Base(p)
		n := 0
		for n < len(b) && (b[n] >= 'a' && b[n] <= 'z' || b[n] >= 'A' && b[n] <= 'Z') {
			n++
		}
		if n >= 2 {
			stems = append(stems, strings.ToLower(b[:n]))
		}
	}
	required := make(map[int]bool)
	for _, i := range db.requiredStanzas() {
		required[i] = true
	}
	score := func(i int) int {
		name := db.names[i]
		for _, s := range stems {
			if strings.HasPrefix(name, s) || strings.HasPrefix(name, "lib"+s) {
				return 0
			}
		}
		for _, s := range stems {
			if strings.Contains(name, s) {
				return 1
			}
		}
		if required[i] {
			return 2
		}
		return 3
	}
	var buckets [4][]int
	for i, name := range db.names {
		if name != "" {
			k := score(i)
			buckets[k] = append(buckets[k], i)
		}
	}
	order := make([]int, 0, len(db.names))
	for _, b := range buckets {
		order = append(order, b...)
	}
	return order
}

// unpackaged are directories Debian packages do not install files into:
// looking for an owner of a program there would read every file list for
// nothing.
var unpackaged = []string{"/usr/local", "/home", "/root", "/tmp", "/var/tmp", "/srv", "/run", "/mnt", "/media"}

// skippedDirs are package contents no program needs at run time.
var skippedDirs = []string{
	"/usr/share/doc",
	"/usr/share/doc-base",
	"/usr/share/man",
	"/usr/share/info",
	"/usr/share/locale",
	"/usr/share/lintian",
	"/usr/share/bug",
}

// binDirs hold programs; see [Resolver] for when they are skipped.
var binDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/games", "/usr/local/bin", "/usr/local/sbin"}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// listPaths returns the paths of a file list, one per line.
func listPaths(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line == "/." || line[0] != '/' {
			continue
		}
		out = append(out, path.Clean(line))
	}
	return out
}

// pathError reports whether err is a file system error worth skipping a
// listed file for (it is gone, or the tree has something unexpected).
func pathError(err error) bool {
	var pe *fs.PathError
	return isNotExist(err) || errors.As(err, &pe) || errors.Is(err, os.ErrPermission)
}
