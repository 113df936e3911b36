package closure

import (
	"debug/elf"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const sampleStatus = `Package: tool
Status: install ok installed
Priority: optional
Architecture: amd64
Pre-Depends: pre
Depends: libtool-data (>= 1.0), alt1 | alt2, virt, base-lib:any, missing-pkg
Recommends: rec1
Description: a tool
 with a long
 .
 description
Conffiles:
 /etc/tool.conf 0123456789abcdef

Package: pre
Status: install ok installed
Architecture: all

Package: libtool-data
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Depends: libssl-thing

Package: alt1
Status: deinstall ok config-files
Architecture: amd64

Package: alt2
Status: install ok installed
Architecture: amd64

Package: provider-pkg
Status: install ok installed
Architecture: amd64
Provides: virt (= 2), other-virt

Package: base-lib
Status: install ok installed
Priority: optional
Architecture: amd64

Package: basepkg
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Depends: base-lib

Package: rec1
Status: install ok installed
Architecture: amd64
Depends: rec1-dep
Recommends: rec2

Package: rec1-dep
Status: install ok installed
Architecture: amd64

Package: rec2
Status: install ok installed
Architecture: amd64

Package: libssl-thing
Status: install ok installed
Architecture: amd64

Package: dpkg
Status: install ok installed
Priority: required
Essential: yes
Architecture: amd64
`

func TestParseDpkgStatus(t *testing.T) {
	pkgs := parseDpkgStatus([]byte(sampleStatus))
	if len(pkgs) != 13 {
		t.Fatalf("%d packages, want 13", len(pkgs))
	}
	tool := pkgs[0]
	if tool.name != "tool" || !tool.installed() || tool.required() || tool.arch != "amd64" ||
		!strings.HasPrefix(tool.depends, "libtool-data (>= 1.0), alt1 | alt2") || tool.recommends != "rec1" || tool.preDepends != "pre" {
		t.Errorf("tool: %+v", tool)
	}
	if pkgs[3].installed() {
		t.Errorf("alt1 (config-files) is installed")
	}
	if bp := pkgs[7]; !bp.required() || !bp.essential {
		t.Errorf("basepkg: %+v", bp)
	}
	// Continuation lines extend kept fields; CRs and odd lines are harmless.
	got := parseDpkgStatus([]byte("Package: a\r\nDepends: b,\r\n c\r\nbogus line\n:\nStatus: install ok installed\n\n\n\nPackage: d\n"))
	if len(got) != 2 || !got[0].installed() || got[1].name != "d" {
		t.Errorf("got %+v", got)
	}
	if deps := parseDeps(got[0].depends); !reflect.DeepEqual(deps, [][]depAlt{{{"b", ""}}, {{"c", ""}}}) {
		t.Errorf("continued Depends %q parses as %v", got[0].depends, deps)
	}
}

func TestParseStanzaLinear(t *testing.T) {
	// A field continued over many lines is not copied line by line.
	text := "Package: big\nDepends: a" + strings.Repeat(",\n b", 200000) + "\n"
	allocs := testing.AllocsPerRun(1, func() { parseStanza(text) })
	if allocs > 10 {
		t.Errorf("%v allocations", allocs)
	}
	if p := parseStanza(text); len(parseDeps(p.depends)) != 200001 {
		t.Errorf("%d dependencies", len(parseDeps(p.depends)))
	}
}

func TestParseDeps(t *testing.T) {
	got := parseDeps("a (>= 1:2.3), b:any | c [amd64], d:native (<< 2) <!nocheck>, , |, e")
	want := [][]depAlt{{{"a", ""}}, {{"b", "any"}, {"c", ""}}, {{"d", "native"}}, {{"e", ""}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDpkgDB(t *testing.T) {
	db := newDpkgDB(sampleStatus)
	byName := func(n string) *dpkgPkg { return db.installedNamed(n)[0] }
	tool := byName("tool")
	var names []string
	for _, p := range db.resolveDeps(tool.depends, tool) {
		names = append(names, p.name)
	}
	if want := []string{"libtool-data", "alt2", "provider-pkg", "base-lib"}; !reflect.DeepEqual(names, want) {
		t.Errorf("deps %v, want %v", names, want)
	}
	for name, want := range map[string]bool{"basepkg": true, "base-lib": true, "dpkg": true, "tool": false, "alt2": false} {
		if got := db.isBase(byName(name)); got != want {
			t.Errorf("isBase(%s) = %v", name, got)
		}
	}
	if got := byName("libtool-data").listNames()[0]; got != "/var/lib/dpkg/info/libtool-data:amd64.list" {
		t.Errorf("list of a Multi-Arch: same package: %s", got)
	}
	if db.native != "amd64" {
		t.Errorf("native %q", db.native)
	}
}

// dpkgTree is a fake root with the packages of sampleStatus installed.
func dpkgTree(t *testing.T) *tree {
	tr := newTree(t)
	tr.merged()
	tr.file("/var/lib/dpkg/status", []byte(sampleStatus), 0o644)
	list := func(pkg string, files ...string) {
		tr.file("/var/lib/dpkg/info/"+pkg+".list", []byte("/.\n/usr\n/usr/bin\n"+strings.Join(files, "\n")+"\n"), 0o644)
	}
	tr.elf("/usr/bin/tool", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.file("/usr/share/doc/tool/copyright", []byte("c"), 0o644)
	tr.file("/usr/share/man/man1/tool.1.gz", []byte("m"), 0o644)
	tr.file("/usr/lib/tool/plugin.so", mkELF(elfSpec{needed: []string{"libplugdep.so.1", "libabsent.so"}}), 0o644)
	tr.elf("/usr/lib/x86_64-linux-gnu/libplugdep.so.1", elfSpec{})
	list("tool", "/bin/tool", "/usr/share/doc/tool/copyright", "/usr/share/man/man1/tool.1.gz", "/usr/lib/tool", "/usr/lib/tool/plugin.so")
	tr.file("/usr/share/pre/p", []byte("p"), 0o644)
	list("pre", "/usr/share/pre/p")
	tr.file("/usr/share/tool/data.txt", []byte("d"), 0o644)
	tr.link("data.txt", "/usr/share/tool/current")
	tr.link("/nonexistent", "/usr/share/tool/dangling")
	list("libtool-data:amd64", "/usr/share/tool", "/usr/share/tool/data.txt", "/usr/share/tool/current", "/usr/share/tool/dangling", "/usr/share/tool/gone")
	tr.file("/usr/share/alt2/x", []byte("x"), 0o644)
	list("alt2", "/usr/share/alt2/x")
	tr.file("/usr/share/alt1/x", []byte("x"), 0o644)
	list("alt1", "/usr/share/alt1/x")
	tr.file("/usr/share/provider/x", []byte("x"), 0o644)
	list("provider-pkg", "/usr/share/provider/x")
	tr.file("/usr/share/base-lib/x", []byte("x"), 0o644)
	list("base-lib", "/usr/share/base-lib/x")
	tr.elf("/usr/bin/basetool", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.elf("/usr/bin/other", elfSpec{interp: interp, needed: []string{"libc.so.6"}})
	tr.file("/usr/lib/basepkg/data", []byte("x"), 0o644)
	list("basepkg", "/bin/basetool", "/bin/other", "/usr/lib/basepkg/data")
	tr.file("/usr/share/rec1/x", []byte("x"), 0o644)
	list("rec1", "/usr/share/rec1/x")
	tr.file("/usr/share/rec1-dep/x", []byte("x"), 0o644)
	list("rec1-dep", "/usr/share/rec1-dep/x")
	tr.file("/usr/share/rec2/x", []byte("x"), 0o644)
	list("rec2", "/usr/share/rec2/x")
	tr.file("/etc/ssl/private/thing.pem", []byte("KEY"), 0o600)
	tr.file("/etc/ssl/certs/thing.pem", []byte("CERT"), 0o644)
	list("libssl-thing", "/etc/ssl/private/thing.pem", "/etc/ssl/certs/thing.pem")
	list("dpkg")
	return tr
}

func TestResolveDpkg(t *testing.T) {
	tr := dpkgTree(t)
	common := map[string]string{
		"/usr/bin/tool":                             "f",
		"/usr/lib/tool/plugin.so":                   "f",
		"/usr/lib/x86_64-linux-gnu/libplugdep.so.1": "f", // the plugin's library
		"/usr/share/pre/p":                          "f",
		"/usr/share/tool/data.txt":                  "f",
		"/usr/share/tool/current":                   "l data.txt",
		"/usr/share/tool/dangling":                  "l /nonexistent",
		"/usr/share/alt2/x":                         "f",
		"/usr/share/provider/x":                     "f",
		"/etc/ssl/certs/thing.pem":                  "f",
	}
	never := []string{
		"/usr/share/doc", "/usr/share/man", "/usr/share/alt1/x", "/usr/share/base-lib/x",
		"/etc/ssl/private", "/etc/ssl/private/thing.pem", "/usr/lib/basepkg/data",
	}
	tests := []struct {
		name   string
		rec    Recommends
		want   map[string]string
		absent []string
	}{
		{"owners' recommends", RecommendsOwners,
			merge(common, map[string]string{"/usr/share/rec1/x": "f", "/usr/share/rec1-dep/x": "f"}),
			append(never, "/usr/share/rec2/x")},
		{"no recommends", RecommendsNone, common,
			append(never, "/usr/share/rec1/x", "/usr/share/rec1-dep/x", "/usr/share/rec2/x")},
		{"all recommends", RecommendsAll,
			merge(common, map[string]string{"/usr/share/rec1/x": "f", "/usr/share/rec1-dep/x": "f", "/usr/share/rec2/x": "f"}),
			never},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := resolveIn(t, tr, &Resolver{Recommends: tc.rec}, "/usr/bin/tool")
			if err != nil {
				t.Fatal(err)
			}
			wantPaths(t, s, tc.want, tc.absent...)
		})
	}
	t.Run("NoDpkg", func(t *testing.T) {
		s, err := resolveIn(t, tr, &Resolver{NoDpkg: true}, "/usr/bin/tool")
		if err != nil {
			t.Fatal(err)
		}
		wantPaths(t, s, map[string]string{"/usr/bin/tool": "f"}, "/usr/share/pre/p", "/usr/lib/tool/plugin.so")
	})
	t.Run("a base package owning the program", func(t *testing.T) {
		// Owned under its /bin name: found through the /bin -> usr/bin alias.
		s, err := resolveIn(t, tr, nil, "/usr/bin/basetool")
		if err != nil {
			t.Fatal(err)
		}
		wantPaths(t, s, map[string]string{"/usr/bin/basetool": "f", "/usr/lib/basepkg/data": "f"},
			"/usr/bin/other", "/usr/share/base-lib/x")
	})
	t.Run("an unpackaged program", func(t *testing.T) {
		tr.elf("/usr/local/bin/mine", elfSpec{static: true})
		s, err := resolveIn(t, tr, nil, "/usr/local/bin/mine")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for p, k := range paths(s) {
			if k != "d" {
				got = append(got, p)
			}
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, []string{"/usr/local/bin/mine"}) {
			t.Errorf("got %v", got)
		}
	})
}

func TestResolveNoDpkgDatabase(t *testing.T) {
	tr := newTree(t)
	tr.merged()
	tr.elf("/usr/bin/x", elfSpec{typ: elf.ET_EXEC, static: true})
	if _, err := resolveIn(t, tr, nil, "/usr/bin/x"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseDpkgStatus(f *testing.F) {
	f.Add([]byte(sampleStatus))
	f.Add([]byte("Package: a\nDepends: b (>= 1) | c:any [amd64], d\n continued\n\nPackage: e\n"))
	f.Add([]byte("\n\n\r\n: \n \n\t\nPackage:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range parseDpkgStatus(data) {
			if p.name == "" {
				t.Fatal("package without a name")
			}
			for _, f := range []string{p.depends, p.preDepends, p.recommends, p.provides} {
				for _, dep := range parseDeps(f) {
					if len(dep) == 0 {
						t.Fatal("empty dependency")
					}
					for _, a := range dep {
						if a.name == "" {
							t.Fatal("empty alternative")
						}
					}
				}
			}
			_ = p.installed()
		}
		// The lazy database agrees with the full parse.
		db := newDpkgDB(string(data))
		for i := range db.stanzas {
			db.pkg(i)
		}
		_ = db.isBase(&dpkgPkg{})
		_ = db.provided("x")
	})
}
