package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
	"github.com/google/go-containerregistry/pkg/name"
	"gopkg.in/yaml.v3"
)

// decoder walks a spec's nodes into a Spec, collecting every problem.
type decoder struct {
	file string
	dir  string
	errs []*Error
}

// field is one key: value entry of a mapping.
type field struct {
	key, value *yaml.Node
	name       string
}

// topFields are the fields of a spec, in the order doc.go lists them.
func topFields() []string {
	return []string{
		"version", "name", "image", "program", "rootfs", "args", "entrypoint",
		"env", "workdir", "user", "include", "volumes", "ports", "network", "cpus",
		"memory", "restart", "labels", "read_only", "stdin", "tty", "kernel",
	}
}

// volumeFields are the fields of a volume's long form.
func volumeFields() []string { return []string{"source", "target", "readonly"} }

// add records err at n.
func (d *decoder) add(n *yaml.Node, path string, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: max(n.Line, 1), Column: n.Column, Path: path, Err: err})
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.add(n, path, fmt.Errorf(format, args...))
}

// want reports that n is not the kind of value wanted.
func (d *decoder) want(n *yaml.Node, path, what string) {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, path, "aliases (*%s) are not supported", n.Value)
		return
	}
	d.errorf(n, path, "want %s, got %s", what, describe(n))
}

// describe names what n is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return n.Value
		case "!!int", "!!float":
			return "the number " + quote(n.Value)
		case "!!str":
			return "the string " + quote(n.Value)
		}
		return "a " + n.ShortTag() + " value"
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// keyPath is the path of key in the mapping at parent.
func keyPath(parent, key string) string {
	ident := key != ""
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			ident = false
			break
		}
	}
	switch {
	case !ident:
		return parent + "[" + quote(key) + "]"
	case parent == "":
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

// mapping returns the entries of the mapping n, reporting keys that are
// not plain, distinct strings.
func (d *decoder) mapping(n *yaml.Node, path string) ([]field, bool) {
	if n.Kind != yaml.MappingNode {
		d.want(n, path, "a mapping")
		return nil, false
	}
	if len(n.Content)/2 > MaxItems {
		d.errorf(n, path, "%d entries, at most %d", len(n.Content)/2, MaxItems)
		return nil, false
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	fields := make([]field, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			d.errorf(k, path, "merge keys (<<) are not supported")
			continue
		case k.Kind != yaml.ScalarNode:
			d.want(k, path, "a string key")
			continue
		case strings.IndexByte(k.Value, 0) >= 0:
			d.errorf(k, path, "key %s contains a NUL byte", quote(k.Value))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, path, "duplicate key %s (first at line %d)", quote(k.Value), first.Line)
			continue
		}
		seen[k.Value] = k
		fields = append(fields, field{key: k, value: v, name: k.Value})
	}
	return fields, true
}

// unknown reports a field that is not one of known.
func (d *decoder) unknown(f field, path string, known []string) {
	if s := suggest(f.name, known); s != "" {
		d.errorf(f.key, path, "unknown field %s (did you mean %q?)", quote(f.name), s)
		return
	}
	d.errorf(f.key, path, "unknown field %s", quote(f.name))
}

// seq returns the items of the list n.
func (d *decoder) seq(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.want(n, path, "a list")
		return nil, false
	}
	if len(n.Content) > MaxItems {
		d.errorf(n, path, "%d items, at most %d", len(n.Content), MaxItems)
		return nil, false
	}
	return n.Content, true
}

// str returns the text of the scalar n. Numbers and booleans count as
// strings, as written ("1000", "1.10", "true"); null does not.
func (d *decoder) str(n *yaml.Node, path, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.want(n, path, what)
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
	case "!!null":
		d.want(n, path, what)
		return "", false
	default:
		d.errorf(n, path, "unsupported tag %s", quote(n.Tag))
		return "", false
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		d.errorf(n, path, "%s contains a NUL byte", quote(n.Value))
		return "", false
	}
	return n.Value, true
}

// check reports err, if any, at n.
func (d *decoder) check(n *yaml.Node, path string, err error) bool {
	if err != nil {
		d.add(n, path, err)
		return false
	}
	return true
}

// strings returns a list of strings: non-nil, even when empty.
func (d *decoder) strings(n *yaml.Node, path string) ([]string, bool) {
	items, ok := d.seq(n, path)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		v, ok := d.str(it, indexPath(path, i), "a string")
		if ok {
			out = append(out, v)
		}
	}
	return out, len(out) == len(items)
}

// integer returns the integer n.
func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.want(n, path, "an integer")
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil {
		d.errorf(n, path, "%s is out of range", quote(n.Value))
		return 0, false
	}
	return v, true
}

// boolean returns the boolean n: true or false.
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		if v, err := strconv.ParseBool(n.Value); err == nil {
			return v, true
		}
	}
	d.want(n, path, "true or false")
	return false, false
}

// hostPath makes a host path absolute (and clean), relative to the spec
// file's directory.
func (d *decoder) hostPath(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

// isPathLike reports whether s is explicitly a path.
func isPathLike(s string) bool {
	return s == "." || s == ".." || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../")
}

// spec decodes the top-level mapping.
func (d *decoder) spec(root *yaml.Node) *Spec {
	if root == nil || isNull(root) {
		d.errs = append(d.errs, &Error{File: d.file, Line: 1, Err: errors.New("the spec is empty: want a mapping with version and one of image, program or rootfs")})
		return nil
	}
	all, ok := d.mapping(root, "")
	if !ok {
		return nil
	}
	fields := make(map[string]field, len(all))
	for _, f := range all {
		if !slices.Contains(topFields(), f.name) {
			d.unknown(f, "", topFields())
			continue
		}
		fields[f.name] = f
	}
	// get returns a field's value; null counts as absent.
	get := func(name string) (*yaml.Node, bool) {
		f, ok := fields[name]
		if !ok || isNull(f.value) {
			return nil, false
		}
		return f.value, true
	}

	// The version says what everything else means: with another one,
	// nothing else is worth reporting.
	if n, ok := get("version"); !ok {
		d.errorf(root, "version", "required (this is format version %d: write \"version: %d\")", FormatVersion, FormatVersion)
	} else if v, ok := d.integer(n, "version"); ok && v != FormatVersion {
		d.errs = []*Error{{File: d.file, Line: n.Line, Column: n.Column, Path: "version",
			Err: fmt.Errorf("unsupported version %d (this Arrow reads version %d)", v, FormatVersion)}}
		return nil
	}

	s := &Spec{Version: FormatVersion, Dir: d.dir}
	s.Config.Restart = api.RestartPolicy{Name: api.RestartNo}
	text := func(name, what string, check func(string) (string, error)) string {
		n, ok := get(name)
		if !ok {
			return ""
		}
		v, ok := d.str(n, name, what)
		if !ok {
			return ""
		}
		v, err := check(v)
		if !d.check(n, name, err) {
			return ""
		}
		return v
	}
	asIs := func(check func(string) error) func(string) (string, error) {
		return func(v string) (string, error) { return v, check(v) }
	}
	hostPath := func(v string) (string, error) {
		if err := checkPath(v); err != nil {
			return "", err
		}
		return d.hostPath(v), nil
	}
	_, hasRootfs := get("rootfs")

	s.Name = text("name", "a string", asIs(checkName))
	s.Config.Image = text("image", "a string", d.image)
	s.Config.Program = text("program", "a string", func(v string) (string, error) { return d.program(v, hasRootfs) })
	s.Config.RootFS = text("rootfs", "a string", hostPath)
	if n, ok := get("args"); ok {
		s.Config.Args, _ = d.strings(n, "args")
	}
	if n, ok := get("entrypoint"); ok {
		s.Config.Entrypoint, _ = d.strings(n, "entrypoint")
	}
	if n, ok := get("env"); ok {
		s.Config.Env = d.env(n)
	}
	s.Config.Dir = text("workdir", "a string", asIs(checkGuestPath))
	s.Config.User = text("user", "a string", asIs(checkUser))
	if n, ok := get("include"); ok {
		if items, ok := d.seq(n, "include"); ok {
			for i, it := range items {
				p := indexPath("include", i)
				if v, ok := d.str(it, p, "a string"); ok {
					if v, err := hostPath(v); d.check(it, p, err) {
						s.Config.Includes = append(s.Config.Includes, v)
					}
				}
			}
		}
	}
	if n, ok := get("volumes"); ok {
		s.Config.Volumes = d.volumes(n)
	}
	if n, ok := get("ports"); ok {
		s.Config.Ports = d.ports(n)
	}
	s.Config.Network = text("network", "a string", asIs(CheckNetwork))
	if n, ok := get("cpus"); ok {
		if v, ok := d.integer(n, "cpus"); ok {
			if v < 1 || v > MaxCPUs {
				d.errorf(n, "cpus", "%d is out of range (1 to %d)", v, MaxCPUs)
			} else {
				s.Config.CPUs = int(v)
			}
		}
	}
	if n, ok := get("memory"); ok {
		if v, ok := d.str(n, "memory", "a size such as 256M or 1G"); ok {
			mib, err := ParseMemory(v)
			if d.check(n, "memory", err) {
				s.Config.MemoryMiB = mib
			}
		}
	}
	if n, ok := get("restart"); ok {
		if v, ok := d.str(n, "restart", "a restart policy"); ok {
			r, err := ParseRestart(v)
			if d.check(n, "restart", err) {
				s.Config.Restart = r
			}
		}
	}
	if n, ok := get("labels"); ok {
		s.Config.Labels = d.labels(n)
	}
	for name, dst := range map[string]*bool{"read_only": &s.Config.ReadOnly, "stdin": &s.Config.Stdin, "tty": &s.Config.TTY} {
		if n, ok := get(name); ok {
			*dst, _ = d.boolean(n, name)
		}
	}
	s.Config.Kernel = text("kernel", "a string", hostPath)

	d.checkWhatRuns(root, fields, get)
	return s
}

// checkWhatRuns checks that the spec says what to run, once.
func (d *decoder) checkWhatRuns(root *yaml.Node, fields map[string]field, get func(string) (*yaml.Node, bool)) {
	_, image := get("image")
	_, program := get("program")
	_, rootfs := get("rootfs")
	_, entrypoint := get("entrypoint")
	_, args := get("args")
	switch {
	case !image && !program && !rootfs:
		d.errorf(root, "", "one of image, program or rootfs is required")
	case image:
		for _, other := range []string{"program", "rootfs"} {
			if _, ok := get(other); ok {
				d.errorf(fields[other].key, other, "cannot be used with image (use entrypoint and args to say what runs in an image)")
			}
		}
	case rootfs && !program && !entrypoint && !args:
		d.errorf(fields["rootfs"].key, "rootfs", "needs program, entrypoint or args: a root file system does not say what to run")
	}
	if program && entrypoint {
		d.errorf(fields["entrypoint"].key, "entrypoint", "cannot be used with program (the program's arguments go in args)")
	}
}

// image checks an image source and makes its path, if any, absolute.
func (d *decoder) image(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New(`"" is not an image`)
	case len(s) > maxPathLen:
		return "", fmt.Errorf("%s is longer than %d bytes", quote(s), maxPathLen)
	}
	for _, transport := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if rest, ok := strings.CutPrefix(s, transport); ok {
			if rest == "" || rest[0] == ':' {
				return "", fmt.Errorf("%s: want %sPATH[:TAG]", quote(s), transport)
			}
			return transport + d.hostPath(rest), nil
		}
	}
	ref, remote := strings.CutPrefix(s, "docker://")
	if !remote && isPathLike(s) {
		return d.hostPath(s), nil
	}
	if _, err := name.ParseReference(ref); err != nil {
		return "", &textError{msg: quote(s) + " is not an image reference (want NAME[:TAG] or NAME@DIGEST, in lowercase, or a path starting with /, ./ or ../)", err: err}
	}
	return s, nil
}

// program checks the program and makes a host path absolute.
func (d *decoder) program(s string, rootfs bool) (string, error) {
	if err := checkPath(s); err != nil {
		return "", err
	}
	switch {
	case !strings.Contains(s, "/"):
		return s, nil // looked up in PATH
	case rootfs && !path.IsAbs(s):
		return "", fmt.Errorf("%s: with rootfs, program is in the root file system: an absolute path, or a name looked up in its PATH", quote(s))
	case rootfs:
		return s, nil
	}
	return d.hostPath(s), nil
}

// env decodes a mapping of variables or a list of KEY=value.
func (d *decoder) env(n *yaml.Node) []string {
	var env []string
	switch n.Kind {
	case yaml.MappingNode:
		fields, _ := d.mapping(n, "env")
		for _, f := range fields {
			p := keyPath("env", f.name)
			switch {
			case f.name == "":
				d.errorf(f.key, "env", "empty variable name")
				continue
			case strings.Contains(f.name, "="):
				d.errorf(f.key, p, "variable name %s contains '='", quote(f.name))
				continue
			}
			if v, ok := d.str(f.value, p, `a string (write "" for an empty value)`); ok {
				env = append(env, f.name+"="+v)
			}
		}
	case yaml.SequenceNode:
		items, _ := d.seq(n, "env")
		seen := make(map[string]int, len(items))
		for i, it := range items {
			p := indexPath("env", i)
			v, ok := d.str(it, p, "KEY=value")
			if !ok {
				continue
			}
			k, _, hasValue := strings.Cut(v, "=")
			switch first, dup := seen[k]; {
			case !hasValue:
				d.errorf(it, p, "%s: want KEY=value (host variables are not passed through)", quote(v))
			case k == "":
				d.errorf(it, p, "%s: empty variable name", quote(v))
			case dup:
				d.errorf(it, p, "%s is already set by %s", quote(k), indexPath("env", first))
			default:
				seen[k] = i
				env = append(env, v)
			}
		}
	default:
		d.want(n, "env", "a mapping or a list of KEY=value")
	}
	return env
}

// labels decodes a mapping of strings.
func (d *decoder) labels(n *yaml.Node) map[string]string {
	fields, ok := d.mapping(n, "labels")
	if !ok {
		return nil
	}
	labels := make(map[string]string, len(fields))
	for _, f := range fields {
		p := keyPath("labels", f.name)
		if f.name == "" {
			d.errorf(f.key, "labels", "empty label name")
			continue
		}
		if v, ok := d.str(f.value, p, "a string"); ok {
			labels[f.name] = v
		}
	}
	return labels
}

// volumes decodes volumes in short form (a string, as ParseVolume reads
// it) or long form (a mapping), and checks that no two share a target.
func (d *decoder) volumes(n *yaml.Node) []api.Volume {
	items, ok := d.seq(n, "volumes")
	if !ok {
		return nil
	}
	var vols []api.Volume
	targets := make(map[string]string, len(items)) // target → path of the first volume
	for i, it := range items {
		p := indexPath("volumes", i)
		var v api.Volume
		where, wherePath := it, p
		switch it.Kind {
		case yaml.ScalarNode:
			s, ok := d.str(it, p, "SOURCE:TARGET[:ro|rw] or a mapping")
			if !ok {
				continue
			}
			var err error
			if v, err = ParseVolume(s); !d.check(it, p, err) {
				continue
			}
		case yaml.MappingNode:
			var ok bool
			if v, where, ok = d.volume(it, p); !ok {
				continue
			}
			wherePath = p + ".target"
		default:
			d.want(it, p, "SOURCE:TARGET[:ro|rw] or a mapping")
			continue
		}
		if !v.Named() {
			v.Source = d.hostPath(v.Source)
		}
		if first, dup := targets[v.Target]; dup {
			d.errorf(where, wherePath, "%s is already the target of %s", quote(v.Target), first)
			continue
		}
		targets[v.Target] = p
		vols = append(vols, v)
	}
	return vols
}

// volume decodes a volume's long form; where is its target's node.
func (d *decoder) volume(n *yaml.Node, p string) (v api.Volume, where *yaml.Node, ok bool) {
	fields, _ := d.mapping(n, p)
	ok = true
	var source, target bool
	for _, f := range fields {
		fp := p + "." + f.name
		switch f.name {
		case "source":
			source = true
			if s, good := d.str(f.value, fp, "a host path or a volume name"); good && d.check(f.value, fp, checkSource(s)) {
				v.Source = s
				continue
			}
		case "target":
			target, where = true, f.value
			if s, good := d.str(f.value, fp, "an absolute guest path"); good {
				t, err := checkTarget(s)
				if d.check(f.value, fp, err) {
					v.Target = t
					continue
				}
			}
		case "readonly":
			if b, good := d.boolean(f.value, fp); good {
				v.ReadOnly = b
				continue
			}
		default:
			d.unknown(f, p, volumeFields())
		}
		ok = false
	}
	if !source {
		d.errorf(n, p+".source", "required")
		ok = false
	}
	if !target {
		d.errorf(n, p+".target", "required")
		ok = false
	}
	return v, where, ok
}

// ports decodes published ports and checks that no two bind the same
// host address, port and protocol.
func (d *decoder) ports(n *yaml.Node) []api.Port {
	items, ok := d.seq(n, "ports")
	if !ok {
		return nil
	}
	type binding struct {
		port  int
		proto string
	}
	bound := make(map[binding][]int, len(items)) // indexes into ports
	var ports []api.Port
	var paths []string
	for i, it := range items {
		p := indexPath("ports", i)
		s, ok := d.str(it, p, "[IP:]HOST:GUEST[/tcp|udp]")
		if !ok {
			continue
		}
		port, err := ParsePort(s)
		if !d.check(it, p, err) {
			continue
		}
		b := binding{port.HostPort, port.Proto}
		conflict := ""
		for _, j := range bound[b] {
			if q := ports[j]; q.HostIP == port.HostIP || anyAddr(q.HostIP) || anyAddr(port.HostIP) {
				conflict = paths[j]
				break
			}
		}
		if conflict != "" {
			d.errorf(it, p, "host port %d/%s is already published by %s", port.HostPort, port.Proto, conflict)
			continue
		}
		bound[b] = append(bound[b], len(ports))
		ports = append(ports, port)
		paths = append(paths, p)
	}
	return ports
}

// anyAddr reports whether ip means every address.
func anyAddr(ip string) bool {
	if ip == "" {
		return true
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsUnspecified()
}

// suggest returns the entry of known closest to s, when close enough to
// be what was meant.
func suggest(s string, known []string) string {
	best, bestDist := "", 3
	ls := strings.ToLower(s)
	for _, k := range known {
		if k == s {
			return k
		}
		limit := 2 // edits allowed: one for short names
		if len(k) <= 4 {
			limit = 1
		}
		if dist := editDistance(ls, k); dist <= limit && dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b
// (edits and adjacent transpositions), capped: long strings are not
// field names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
