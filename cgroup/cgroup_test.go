package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeTree is a cgroup file system imitated in a temporary directory: its
// mkdir fills a new group with the interface files the kernel would.
type fakeTree struct {
	t       *testing.T
	root    string
	version int
}

// newFake returns a Manager for parent "arrow" over a fake tree of the
// given version. Under v1 the hierarchies are those in v1Mounts, and an
// empty v2 hierarchy is mounted alongside as on a hybrid systemd machine.
func newFake(t *testing.T, version int, v1Mounts ...string) (*Manager, *fakeTree) {
	t.Helper()
	f := &fakeTree{t: t, root: t.TempDir(), version: version}
	var mi strings.Builder
	if version == 2 {
		f.write("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
		f.write("cgroup.subtree_control", "")
		fmt.Fprintf(&mi, "41 31 0:38 / %s rw,relatime - cgroup2 cgroup2 rw\n", f.root)
	} else {
		if len(v1Mounts) == 0 {
			v1Mounts = []string{"cpu", "cpuacct", "memory", "pids"}
		}
		for i, c := range v1Mounts {
			if err := os.Mkdir(filepath.Join(f.root, c), 0o755); err != nil {
				t.Fatal(err)
			}
			f.populate(filepath.Join(f.root, c))
			fmt.Fprintf(&mi, "%d 31 0:%d / %s/%s rw,relatime - cgroup cgroup rw,%s\n", 32+i, 29+i, f.root, c, c)
		}
		f.write("unified/cgroup.controllers", "")
		fmt.Fprintf(&mi, "41 31 0:38 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n", f.root)
	}
	m, err := newFromMountinfo(strings.NewReader(mi.String()), "arrow")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != version {
		t.Fatalf("detected v%d, want v%d", m.Version(), version)
	}
	m.mkdir = f.mkdir
	m.rmdir = f.rmdir
	return m, f
}

func (f *fakeTree) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fakeTree) mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	f.populate(p)
	return nil
}

// rmdir removes a group directory as the kernel does: interface files go
// with it, child groups keep it.
func (f *fakeTree) rmdir(p string) error {
	ents, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			return &fs.PathError{Op: "rmdir", Path: p, Err: unix.EBUSY}
		}
	}
	return os.RemoveAll(p)
}

// populate writes the interface files of a new group directory dir.
func (f *fakeTree) populate(dir string) {
	files := map[string]string{"cgroup.procs": ""}
	var ctrls []string
	if f.version == 2 {
		files["cgroup.threads"] = ""
		files["cgroup.subtree_control"] = ""
		files["cpu.stat"] = "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"
		on, err := readControllers(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
		if err != nil {
			f.t.Fatal(err)
		}
		ctrls = on
		files["cgroup.controllers"] = strings.Join(on, " ") + "\n"
	} else {
		rel, _ := filepath.Rel(f.root, dir)
		ctrls = []string{strings.Split(rel, string(filepath.Separator))[0]}
		files["tasks"] = ""
	}
	for _, c := range ctrls {
		switch {
		case c == "memory" && f.version == 2:
			files["memory.max"] = "max\n"
			files["memory.current"] = "0\n"
			files["memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
		case c == "memory":
			files["memory.limit_in_bytes"] = "9223372036854771712\n"
			files["memory.usage_in_bytes"] = "0\n"
			files["memory.oom_control"] = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
		case c == "cpu" && f.version == 2:
			files["cpu.max"] = "max 100000\n"
		case c == "cpu":
			files["cpu.cfs_quota_us"] = "-1\n"
			files["cpu.cfs_period_us"] = "100000\n"
		case c == "cpuacct":
			files["cpuacct.usage"] = "0\n"
		case c == "pids":
			files["pids.max"] = "max\n"
			files["pids.current"] = "0\n"
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

func TestDetect(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"v2full", "v2empty", "v2nomem", "with space"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel, s string) {
		if err := os.WriteFile(filepath.Join(root, rel), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("v2full/cgroup.controllers", "cpuset cpu io memory pids\n")
	write("v2empty/cgroup.controllers", "")
	write("v2nomem/cgroup.controllers", "cpu pids\n")

	line := func(point, fstype, super string) string {
		return fmt.Sprintf("30 23 0:27 / %s rw,nosuid,nodev,noexec,relatime shared:4 - %s %s %s\n", point, fstype, fstype, super)
	}
	tests := []struct {
		name      string
		mountinfo string
		version   int
		mounts    map[string]string // v1
		unified   string            // v2
		wantErr   error
	}{
		{
			name:      "pure v2",
			mountinfo: line("/proc", "proc", "rw") + line(root+"/v2full", "cgroup2", "rw,nsdelegate,memory_recursiveprot"),
			version:   2,
			unified:   root + "/v2full",
		},
		{
			name: "hybrid with empty v2",
			mountinfo: line(root+"/cpu", "cgroup", "rw,cpu") +
				line(root+"/cpuacct", "cgroup", "rw,cpuacct") +
				line(root+"/memory", "cgroup", "rw,memory") +
				line(root+"/v2empty", "cgroup2", "rw"),
			version: 1,
			mounts:  map[string]string{"cpu": root + "/cpu", "cpuacct": root + "/cpuacct", "memory": root + "/memory"},
		},
		{
			name: "comounted cpu,cpuacct and escaped path",
			mountinfo: line(root+"/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct") +
				line(root+`/with\040space`, "cgroup", "rw,memory") +
				line(root+"/pids", "cgroup", "rw,pids") +
				line(root+"/systemd", "cgroup", "rw,xattr,name=systemd"),
			version: 1,
			mounts: map[string]string{
				"cpu": root + "/cpu,cpuacct", "cpuacct": root + "/cpu,cpuacct",
				"memory": root + "/with space", "pids": root + "/pids",
			},
		},
		{
			name:      "v2 without memory",
			mountinfo: line(root+"/v2nomem", "cgroup2", "rw"),
			wantErr:   errors.ErrUnsupported,
		},
		{
			name:      "v1 without memory",
			mountinfo: line(root+"/cpu", "cgroup", "rw,cpu") + line(root+"/v2empty", "cgroup2", "rw"),
			wantErr:   errors.ErrUnsupported,
		},
		{
			name:      "no cgroups",
			mountinfo: line("/proc", "proc", "rw") + "garbage line\n",
			wantErr:   errors.ErrUnsupported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newFromMountinfo(strings.NewReader(tt.mountinfo), "arrow")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Version() != tt.version || m.unified != tt.unified {
				t.Errorf("v%d unified %q, want v%d %q", m.Version(), m.unified, tt.version, tt.unified)
			}
			if fmt.Sprint(m.mounts) != fmt.Sprint(tt.mounts) && !(len(m.mounts) == 0 && len(tt.mounts) == 0) {
				t.Errorf("mounts %v, want %v", m.mounts, tt.mounts)
			}
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web-1", true},
		{"a.b_c", true},
		{"...", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"/abs", false},
		{"../escape", false},
		{"nul\x00", false},
		{"new\nline", false},
		{strings.Repeat("x", 256), false},
	}
	m, _ := newFake(t, 2)
	for _, tt := range tests {
		_, err := m.Create(tt.name, Limits{})
		if (err == nil) != tt.ok {
			t.Errorf("Create(%q): err = %v, want ok %v", tt.name, err, tt.ok)
		}
		if _, err := m.Open(tt.name); !tt.ok && (err == nil || errors.Is(err, fs.ErrNotExist)) {
			t.Errorf("Open(%q): err = %v, want invalid name", tt.name, err)
		}
	}
	for _, p := range []string{"", "..", "a//b", "/arrow", "arrow/"} {
		if _, err := newFromMountinfo(strings.NewReader(""), p); err == nil || errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("parent %q: err = %v, want invalid", p, err)
		}
	}
}

func TestCreateV1(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		want   map[string]string // file under <controller>/arrow/web
	}{
		{
			name:   "all",
			limits: Limits{MemoryBytes: 64 << 20, CPUs: 1.5, Pids: 100},
			want: map[string]string{
				"memory/memory.limit_in_bytes": "67108864",
				"cpu/cpu.cfs_quota_us":         "150000",
				"cpu/cpu.cfs_period_us":        "100000",
				"pids/pids.max":                "100",
			},
		},
		{
			name:   "none",
			limits: Limits{},
			want: map[string]string{
				"memory/memory.limit_in_bytes": "-1",
				"cpu/cpu.cfs_quota_us":         "-1",
				"pids/pids.max":                "max",
			},
		},
		{
			name:   "tiny CPU share rounds up to the kernel minimum",
			limits: Limits{CPUs: 0.001},
			want:   map[string]string{"cpu/cpu.cfs_quota_us": "1000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f := newFake(t, 1)
			// Twice: an existing group gets its limits set again.
			for _, l := range []Limits{{MemoryBytes: 1 << 30, CPUs: 4, Pids: 7}, tt.limits} {
				g, err := m.Create("web", l)
				if err != nil {
					t.Fatal(err)
				}
				if want := filepath.Join(f.root, "memory/arrow/web"); g.Path() != want {
					t.Errorf("Path() = %s, want %s", g.Path(), want)
				}
			}
			for file, want := range tt.want {
				c, name, _ := strings.Cut(file, "/")
				if got := f.read(filepath.Join(c, "arrow/web", name)); got != want {
					t.Errorf("%s = %q, want %q", file, got, want)
				}
			}
		})
	}
}

func TestCreateV2(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		want   map[string]string // file under arrow/web
	}{
		{
			name:   "all",
			limits: Limits{MemoryBytes: 64 << 20, CPUs: 1.5, Pids: 100},
			want:   map[string]string{"memory.max": "67108864", "cpu.max": "150000 100000", "pids.max": "100"},
		},
		{
			name:   "none",
			limits: Limits{},
			want:   map[string]string{"memory.max": "max", "cpu.max": "max 100000", "pids.max": "max"},
		},
		{
			name:   "half a CPU",
			limits: Limits{CPUs: 0.5},
			want:   map[string]string{"cpu.max": "50000 100000", "memory.max": "max"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f := newFake(t, 2)
			for _, l := range []Limits{{MemoryBytes: 1 << 30, CPUs: 4, Pids: 7}, tt.limits} {
				g, err := m.Create("web", l)
				if err != nil {
					t.Fatal(err)
				}
				if want := filepath.Join(f.root, "arrow/web"); g.Path() != want {
					t.Errorf("Path() = %s, want %s", g.Path(), want)
				}
			}
			for file, want := range tt.want {
				if got := f.read(filepath.Join("arrow/web", file)); got != want {
					t.Errorf("%s = %q, want %q", file, got, want)
				}
			}
			for _, dir := range []string{".", "arrow"} {
				if got := f.read(filepath.Join(dir, "cgroup.subtree_control")); got != "+memory +cpu +pids" {
					t.Errorf("%s/cgroup.subtree_control = %q", dir, got)
				}
			}
		})
	}
}

func TestMissingController(t *testing.T) {
	m, _ := newFake(t, 1, "memory", "cpu")
	if _, err := m.Create("web", Limits{MemoryBytes: 1 << 20, CPUs: 1}); err != nil {
		t.Fatalf("without a pids limit: %v", err)
	}
	if _, err := m.Create("web", Limits{Pids: 10}); err == nil || !strings.Contains(err.Error(), "pids controller unavailable") {
		t.Fatalf("pids limit without pids controller: err = %v", err)
	}
	g, err := m.Open("web")
	if err != nil {
		t.Fatal(err)
	}
	// Stats count tasks without pids.current, and no CPU without cpuacct.
	if err := os.WriteFile(filepath.Join(g.Path(), "tasks"), []byte("10\n11\n12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Pids != 3 || s.CPUUsage != 0 {
		t.Errorf("stats %+v, want 3 pids and no CPU", s)
	}

	if _, err := m.Create("web", Limits{MemoryBytes: -1}); err == nil {
		t.Error("negative memory limit accepted")
	}
	if _, err := m.Create("web", Limits{CPUs: -0.5}); err == nil {
		t.Error("negative CPU limit accepted")
	}
}

func TestStats(t *testing.T) {
	tests := []struct {
		version int
		files   map[string]string // under the group, per controller for v1
		want    Stats
	}{
		{
			version: 1,
			files: map[string]string{
				"memory/memory.usage_in_bytes": "1234567\n",
				"memory/memory.limit_in_bytes": "9223372036854771712\n",
				"memory/memory.oom_control":    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
				"cpuacct/cpuacct.usage":        "1500000000\n",
				"pids/pids.current":            "7\n",
			},
			want: Stats{MemoryBytes: 1234567, CPUUsage: 1500 * time.Millisecond, OOMKills: 3, Pids: 7},
		},
		{
			version: 1,
			files: map[string]string{
				"memory/memory.limit_in_bytes": "67108864\n",
				// A kernel older than 4.13 has no oom_kill line.
				"memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
			},
			want: Stats{MemoryLimit: 64 << 20},
		},
		{
			version: 2,
			files: map[string]string{
				"memory.current": "7654321\n",
				"memory.max":     "67108864\n",
				"memory.events":  "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
				"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
				"pids.current":   "5\n",
			},
			want: Stats{MemoryBytes: 7654321, MemoryLimit: 64 << 20, CPUUsage: 2500 * time.Millisecond, OOMKills: 2, Pids: 5},
		},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d/v%d", i, tt.version), func(t *testing.T) {
			m, f := newFake(t, tt.version)
			g, err := m.Create("web", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for file, content := range tt.files {
				rel := filepath.Join("arrow/web", file)
				if c, name, ok := strings.Cut(file, "/"); ok {
					rel = filepath.Join(c, "arrow/web", name)
				}
				f.write(rel, content)
			}
			got, err := g.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Stats() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOpenAddRemove(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			m, _ := newFake(t, version)
			if _, err := m.Open("web"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Open of a missing group: err = %v, want ErrNotExist", err)
			}
			if _, err := m.Create("web", Limits{MemoryBytes: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			g, err := m.Open("web")
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Add(4242); err != nil {
				t.Fatal(err)
			}
			dirs := g.allDirs()
			if want := map[int]int{1: 4, 2: 1}[version]; len(dirs) != want {
				t.Errorf("%d directories, want %d", len(dirs), want)
			}
			for _, d := range dirs {
				if b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs")); string(b) != "4242" {
					t.Errorf("%s/cgroup.procs = %q", d, b)
				}
			}
			if procs, err := g.Procs(); err != nil || fmt.Sprint(procs) != "[4242]" {
				t.Errorf("Procs() = %v, %v", procs, err)
			}
			if err := g.Remove(); !errors.Is(err, unix.EBUSY) {
				t.Fatalf("Remove with a process: err = %v, want EBUSY", err)
			}
			for _, d := range dirs {
				if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := g.Remove(); err != nil {
				t.Fatal(err)
			}
			for _, d := range dirs {
				if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s still there: %v", d, err)
				}
			}
			if err := g.Remove(); err != nil {
				t.Errorf("second Remove: %v", err)
			}
			if _, err := m.Open("web"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open after Remove: err = %v", err)
			}
		})
	}
}
