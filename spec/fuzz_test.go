package spec

import (
	"bytes"
	"errors"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

// FuzzParse feeds Parse arbitrary files: it must not panic, must reject
// with positioned errors, and what it accepts must be valid. Seeds are in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullYAML))
	f.Add([]byte(fullJSON))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			checkErrors(t, data, err)
			return
		}
		checkSpec(t, s)
		again, err := Parse(data, "fuzz.yaml")
		if err != nil || !reflect.DeepEqual(s, again) {
			t.Fatalf("Parse is not deterministic: %+v, %v", again, err)
		}
	})
}

// checkErrors checks that err lists positioned problems.
func checkErrors(t *testing.T, data []byte, err error) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("error is not a non-empty ErrorList: %#v", err)
	}
	if len(list) > maxErrors+1 {
		t.Fatalf("%d errors", len(list))
	}
	lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
	for i, e := range list {
		if e.File != "fuzz.yaml" || e.Err == nil || e.Column < 0 {
			t.Fatalf("bad error %#v", e)
		}
		if len(data) > MaxFileSize {
			if !errors.Is(e, ErrTooLarge) {
				t.Fatalf("large input: %v", e)
			}
			continue
		}
		if e.Line < 1 || e.Line > lines {
			t.Fatalf("error %q at line %d of %d", e, e.Line, lines)
		}
		if !strings.HasPrefix(e.Error(), "fuzz.yaml:") {
			t.Fatalf("error %q does not start with its position", e)
		}
		if i > 0 && e.Line < list[i-1].Line {
			t.Fatalf("errors out of line order: %v", err)
		}
	}
}

// checkSpec checks the invariants of a parsed spec.
func checkSpec(t *testing.T, s *Spec) {
	t.Helper()
	if s == nil || s.Version != FormatVersion {
		t.Fatalf("spec %+v", s)
	}
	n := 0
	for _, v := range []string{s.Config.Image, s.Config.Program, s.Config.RootFS} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0, n == 2 && (s.Config.Image != "" || s.Config.RootFS == ""), n == 3:
		t.Fatalf("image %q, program %q, rootfs %q", s.Config.Image, s.Config.Program, s.Config.RootFS)
	case s.Config.RootFS != "" && s.Config.Program == "" && s.Config.Entrypoint == nil && s.Config.Args == nil:
		t.Fatalf("rootfs without a command: %+v", s)
	case s.Config.Program != "" && s.Config.Entrypoint != nil:
		t.Fatalf("program with entrypoint: %+v", s)
	case s.Config.CPUs < 0 || s.Config.CPUs > MaxCPUs:
		t.Fatalf("cpus %d", s.Config.CPUs)
	case s.Config.MemoryMiB != 0 && (s.Config.MemoryMiB < MinMemoryMiB || s.Config.MemoryMiB > MaxMemoryMiB):
		t.Fatalf("memory %d", s.Config.MemoryMiB)
	case s.Name != "" && checkName(s.Name) != nil:
		t.Fatalf("name %q", s.Name)
	case s.Config.User != "" && checkUser(s.Config.User) != nil:
		t.Fatalf("user %q", s.Config.User)
	case s.Config.Dir != "" && !path.IsAbs(s.Config.Dir):
		t.Fatalf("workdir %q", s.Config.Dir)
	}
	for _, p := range append([]string{s.Config.RootFS, s.Config.Kernel}, s.Config.Includes...) {
		if p != "" && !filepath.IsAbs(p) {
			t.Fatalf("relative host path %q", p)
		}
	}
	if r, err := ParseRestart(s.Config.Restart.String()); err != nil || r != s.Config.Restart {
		t.Fatalf("restart %+v", s.Config.Restart)
	}
	targets := map[string]bool{}
	for _, v := range s.Config.Volumes {
		if !filepath.IsAbs(v.Source) || targets[v.Target] || v.Target == "/" || path.Clean(v.Target) != v.Target || !path.IsAbs(v.Target) {
			t.Fatalf("volume %+v", v)
		}
		targets[v.Target] = true
	}
	for _, p := range s.Config.Ports {
		if p.HostPort == 0 || p.GuestPort == 0 || (p.Proto != api.TCP && p.Proto != api.UDP) {
			t.Fatalf("port %+v", p)
		}
		if back, err := ParsePort(p.String()); err != nil || back != p {
			t.Fatalf("port %+v does not round-trip: %+v, %v", p, back, err)
		}
	}
	keys := map[string]bool{}
	for _, e := range s.Config.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || keys[k] {
			t.Fatalf("env %q", s.Config.Env)
		}
		keys[k] = true
	}
	for k := range s.Config.Labels {
		if k == "" {
			t.Fatalf("labels %q", s.Config.Labels)
		}
	}
	for _, str := range append(append(append([]string{}, s.Config.Args...), s.Config.Entrypoint...), s.Config.Env...) {
		if strings.IndexByte(str, 0) >= 0 {
			t.Fatalf("NUL in %q", str)
		}
	}
}

// laughs is the "billion laughs" document: 10 levels of aliases to 9
// aliases each, used where the spec wants lists, strings and mappings.
func laughs() string {
	var b strings.Builder
	b.WriteString("version: 1\nimage: x\nlabels:\n  l0: &l0 lol\n")
	for i := 1; i <= 10; i++ {
		prev := "*l" + strconv.Itoa(i-1)
		b.WriteString("  l" + strconv.Itoa(i) + ": &l" + strconv.Itoa(i) + " [" + strings.Repeat(prev+", ", 8) + prev + "]\n")
	}
	b.WriteString("args: *l10\nentrypoint: [*l10, *l10]\nenv: *l10\nvolumes: [*l10]\nports: *l10\n")
	return b.String()
}

// TestHostileInputs parses inputs built to exhaust a parser: each must fail
// quickly, with a positioned error.
func TestHostileInputs(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // the first error
	}{
		{"billion laughs", laughs(), "fuzz.yaml:5: labels.l1: want a string, got a list"},
		{"self-referencing anchor", "version: 1\nimage: x\nargs: &a [*a]\n", "fuzz.yaml:3: args[0]: aliases (*a) are not supported"},
		{"deep flow nesting", "version: 1\nimage: x\nargs: " + strings.Repeat("[", 200000), "fuzz.yaml:3: invalid YAML: exceeded max depth of 10000"},
		{"deep block nesting", "version: 1\nimage: x\nlabels:\n" + deepBlock(5000), "fuzz.yaml:5: labels.k: want a string, got a mapping"},
		{"deep JSON nesting", `{"version": 1, "args": ` + strings.Repeat("[", 200000), "fuzz.yaml:1: invalid JSON: nested more than 1000 deep"},
		{"wide mapping", "version: 1\nimage: x\n" + wideMapping(100000), "fuzz.yaml:1: 100002 entries, at most 4096"},
		{"wide list", "version: 1\nimage: x\nargs: [" + strings.Repeat("a,", 300000) + "]\n", "fuzz.yaml:3: args: 300000 items, at most 4096"},
		{"long line", "version: 1\nimage: x\nname: " + strings.Repeat("a", MaxFileSize-30) + "\n", `fuzz.yaml:3: name: "` + strings.Repeat("a", 64) + `"...: want 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) > MaxFileSize {
				tt.in = tt.in[:MaxFileSize]
			}
			start := time.Now()
			_, err := Parse([]byte(tt.in), "fuzz.yaml")
			t.Logf("%d bytes in %v", len(tt.in), time.Since(start))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			checkErrors(t, []byte(tt.in), err)
			if first, _, _ := strings.Cut(err.Error(), "\n"); first != tt.want {
				t.Errorf("first error %q, want %q", first, tt.want)
			}
		})
	}
}

func deepBlock(depth int) string {
	var b strings.Builder
	for i := 1; i <= depth; i++ {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	return b.String()
}

func wideMapping(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("k" + strconv.Itoa(i) + ": 1\n")
	}
	return b.String()
}
