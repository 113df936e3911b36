package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestFDTable(t *testing.T) {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr, nil}
	var tab fdTable
	for i, f := range files {
		if got, want := tab.add(f), 3+i; got != want {
			t.Fatalf("file %d registered as descriptor %d, want %d", i, got, want)
		}
	}
	list := tab.list()
	if len(list) != len(files) {
		t.Fatalf("list has %d files, want %d", len(list), len(files))
	}
	for i, f := range files {
		if list[i] != f {
			t.Errorf("list[%d] is not the file registered %dth", i, i)
		}
	}
}

// fdConfig is a config with every kind of inherited file: two drives, two
// virtiofs shares around a 9p one, a tap, a user-mode card and a
// placeholder, and a memory file. (Validate refuses a memory file with
// virtiofs; numbering does not care, and this way one config has all.)
func fdConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	share := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tap, err := os.Open(file("tap"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	self, err := os.Executable() // any regular file passes for virtiofsd
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Kernel, c.Initrd = file("vmlinux"), file("initrd")
	c.Drives = []Drive{{Path: file("root.img"), ReadOnly: true}, {Path: file("data.img")}}
	c.Virtiofsd = self
	c.Shares = []Share{
		{Tag: "a", Path: share("a"), FS: ShareVirtiofs},
		{Tag: "nine", Path: share("nine"), FS: Share9P},
		{Tag: "b", Path: share("b"), FS: ShareVirtiofs},
	}
	c.NICs = []NIC{
		{MAC: "02:00:00:00:00:01", Tap: tap},
		{MAC: "02:00:00:00:00:02", User: &UserNet{}},
		{MAC: "02:00:00:00:00:03", Placeholder: true},
	}
	c.Memory = &MemoryFile{Path: file("mem")}
	return c
}

// fdRef matches a descriptor named in a QEMU argument.
var fdRef = regexp.MustCompile(`(?:\bfd=|/proc/self/fd/)(\d+)`)

// namedFDs returns, for each descriptor args name, what names it: the
// option and the id it is for (-chardev console, -netdev net2, ...).
func namedFDs(t *testing.T, args []string) map[int]string {
	t.Helper()
	named := make(map[int]string)
	for i := 1; i < len(args); i++ {
		m := fdRef.FindStringSubmatch(args[i])
		if m == nil {
			continue
		}
		fd, _ := strconv.Atoi(m[1])
		what := args[i-1]
		if id := regexp.MustCompile(`\b(?:id|set)=([^,]+)`).FindStringSubmatch(args[i]); id != nil {
			what += " " + id[1]
		}
		if prev, ok := named[fd]; ok {
			t.Errorf("descriptor %d named twice: by %s and %s", fd, prev, what)
		}
		named[fd] = what
	}
	return named
}

// TestNumberedFiles opens the files of a config with every kind of
// inherited file, as Start does, and checks that each descriptor the
// command line names is, in the table's list (ExtraFiles), the file it
// is meant to be, and that no file is inherited unnamed.
func TestNumberedFiles(t *testing.T) {
	cfg := fdConfig(t)
	f, err := openFiles(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.guest.close()
		f.closeHost()
	})
	table, fds := cfg.number(f.guest)
	args := cfg.args(fds)
	list := table.list()
	g := f.guest
	want := map[string]*os.File{
		"-chardev console": g.console,
		"-chardev control": g.control,
		"-chardev qmp":     g.qmp,
		"-kernel":          g.kernel,
		"-initrd":          g.initrd,
		"-add-fd 1":        g.drives[0],
		"-add-fd 2":        g.drives[1],
		"-chardev share0":  g.shares[0],
		"-chardev share2":  g.shares[2],
		"-netdev net0":     g.nics[0],
		"-netdev net2":     g.nics[2],
		"-object mem":      g.memory,
	}
	named := namedFDs(t, args)
	if len(named) != len(list) || len(list) != len(want) {
		t.Fatalf("the command line names %d descriptors, the table holds %d files, the config has %d: %q", len(named), len(list), len(want), args)
	}
	for fd, what := range named {
		i := fd - 3
		if i < 0 || i >= len(list) {
			t.Errorf("%s names descriptor %d, outside the table's 3 to %d", what, fd, len(list)+2)
			continue
		}
		w, ok := want[what]
		if !ok {
			t.Errorf("%s names descriptor %d, for no file expected", what, fd)
			continue
		}
		if w == nil || list[i] != w {
			t.Errorf("%s names descriptor %d, whose file is %v, want %v", what, fd, list[i], w)
		}
	}
	// The files are those the config names, opened by openFiles.
	for _, c := range []struct {
		f    *os.File
		path string
	}{
		{g.kernel, cfg.Kernel}, {g.initrd, cfg.Initrd},
		{g.drives[0], cfg.Drives[0].Path}, {g.drives[1], cfg.Drives[1].Path},
		{g.nics[0], filepath.Join(filepath.Dir(cfg.Kernel), "tap")},
		{g.memory, cfg.Memory.Path},
	} {
		fi, err := c.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		pi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(fi, pi) {
			t.Errorf("descriptor opened for %s is another file", c.path)
		}
	}
	if g.shares[1] != nil || g.nics[1] != nil {
		t.Error("a 9p share or user-mode card got a descriptor")
	}
	// Templates and clones compare Args, which numbers no files: it must
	// be the command line Start runs.
	if dry := cfg.Args(); strings.Join(dry, " ") != strings.Join(args, " ") {
		t.Errorf("Args() differs from the command line of the opened files:\n%q\n%q", dry, args)
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestOpenFilesFailure checks that openFiles reports why it failed and
// leaves no descriptor open, whichever file it fails on.
func TestOpenFilesFailure(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"kernel", func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }, "boot files"},
		{"drive", func(c *Config) { c.Drives[1].Path = "/nonexistent/data.img" }, "drive"},
		{"share", func(c *Config) { c.Shares[2].Path = "/nonexistent/b" }, "share b"},
		{"virtiofsd", func(c *Config) { c.Virtiofsd = "/nonexistent/virtiofsd" }, "share a: virtiofsd not found"},
		{"memory", func(c *Config) { c.Memory.Path = "/nonexistent/mem" }, "guest memory file"},
	}
	// Open and close one full set first, so that descriptors the runtime
	// keeps once (its poller's) are not counted as leaks.
	warm := fdConfig(t)
	if f, err := openFiles(&warm); err != nil {
		t.Fatal(err)
	} else {
		f.guest.close()
		f.closeHost()
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fdConfig(t)
			tt.mutate(&cfg)
			before := openFDs(t)
			f, err := openFiles(&cfg)
			if err == nil {
				f.guest.close()
				f.closeHost()
				t.Fatal("openFiles succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to say %q", err, tt.want)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after the failure, %d before", after, before)
			}
		})
	}
}
