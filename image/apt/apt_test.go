package apt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePackages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"hello", []string{"hello"}, false},
		{"postgresql,hello, hello", []string{"hello", "postgresql"}, false},
		{"libstdc++6,g++-12,python3.11", []string{"g++-12", "libstdc++6", "python3.11"}, false},
		{"", nil, true},
		{"hello,", nil, true},
		{"Hello", nil, true},
		{"-x", nil, true},
		{"a", nil, true},
		{"hello world", nil, true},
		{"hello;rm", nil, true},
		{"pkg=1.0", nil, true},
		{"--include=x", nil, true},
		{strings.Repeat("a", 129), nil, true},
	} {
		got, err := ParsePackages(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePackages(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePackages(%q): %v is not ErrInvalid", tc.in, err)
		}
	}
	many := strings.Repeat("ab,", maxPackages) + "zz"
	if _, err := ParsePackages(many); err != nil {
		t.Errorf("duplicates counted: %v", err)
	}
}

// FuzzParsePackages: what is accepted cannot be read by mmdebstrap as an
// option or split into more packages, and is sorted and unique.
func FuzzParsePackages(f *testing.F) {
	for _, s := range []string{"hello", "a,b", "--x", "x y", "libc6:amd64", "x,,y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, err := ParsePackages(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(pkgs) || len(slices.Compact(slices.Clone(pkgs))) != len(pkgs) {
			t.Fatalf("%q: not sorted and unique: %q", s, pkgs)
		}
		for _, p := range pkgs {
			if p == "" || strings.HasPrefix(p, "-") || strings.ContainsAny(p, ", \t\n=:/") {
				t.Fatalf("%q: accepted %q", s, p)
			}
		}
	})
}

func TestValidateSuite(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"bookworm", true}, {"bookworm-backports", true}, {"stable", true}, {"12", true},
		{"", false}, {"-x", false}, {"Bookworm", false}, {"a/b", false}, {"a b", false},
	} {
		if err := ValidateSuite(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateSuite(%q) = %v", tc.in, err)
		}
	}
}

func TestReadSources(t *testing.T) {
	etc := t.TempDir()
	os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(etc, "sources.list"), []byte("# only comments\n\n"), 0o644)
	deb822 := "Types: deb\n# http://snapshot.debian.org/x bookworm\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
	os.WriteFile(filepath.Join(etc, "sources.list.d", "debian.sources"), []byte(deb822), 0o644)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "extra.list"), []byte("deb http://example.org/debian bookworm main\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "ignored.save"), []byte("deb http://x/ bookworm main\n"), 0o644)

	files, key, err := readSources(etc, "bookworm", "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].name != "debian.sources" || files[1].name != "extra.list" || string(files[0].data) != deb822 {
		t.Fatalf("files %+v", files)
	}
	other, key2, err := readSources(etc, "bookworm", "trixie")
	if err != nil {
		t.Fatal(err)
	}
	want := "Types: deb\n# http://snapshot.debian.org/x bookworm\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\nComponents: main\n"
	if string(other[0].data) != want || string(other[1].data) != "deb http://example.org/debian trixie main\n" {
		t.Errorf("trixie sources:\n%s\n%s", other[0].data, other[1].data)
	}
	if string(key) == string(key2) {
		t.Error("the cache key does not depend on the suite's sources")
	}
	if cacheKey("bookworm", []string{"a", "b"}, key) == cacheKey("bookworm", []string{"a"}, key) ||
		cacheKey("bookworm", []string{"a"}, key) == cacheKey("trixie", []string{"a"}, key) {
		t.Error("cache keys collide")
	}
	if _, _, err := readSources(t.TempDir(), "bookworm", "bookworm"); err == nil {
		t.Error("no sources: no error")
	}
}

func TestMissingPackages(t *testing.T) {
	out := "I: running apt-get update...\nE: Unable to locate package nope\nE: Unable to locate package nada\nE: Package 'virt' has no installation candidate\nE: apt-get --yes install failed\n"
	if got := missingPackages(out); !slices.Equal(got, []string{"nope", "nada", "virt"}) {
		t.Errorf("missingPackages = %q", got)
	}
	if got := missingPackages("E: network unreachable\n"); len(got) != 0 {
		t.Errorf("missingPackages = %q", got)
	}
}

func TestHostCodename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(p, []byte("PRETTY_NAME=\"Debian\"\nVERSION_CODENAME=bookworm\nID=debian\n"), 0o644)
	if got, err := hostCodename(p); err != nil || got != "bookworm" {
		t.Errorf("hostCodename = %q, %v", got, err)
	}
	os.WriteFile(p, []byte("ID=debian\n"), 0o644)
	if _, err := hostCodename(p); err == nil {
		t.Error("no codename: no error")
	}
}

// TestBuildFailsClean: a build whose tool fails leaves nothing in its
// directory, and a package apt does not know is ErrNoPackage.
func TestBuildFailsClean(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "sources.list"), []byte("deb http://deb.debian.org/debian bookworm main\n"), 0o644)
	osr := filepath.Join(dir, "os-release")
	os.WriteFile(osr, []byte("VERSION_CODENAME=bookworm\n"), 0o644)
	fake := filepath.Join(dir, "mmdebstrap")
	// Stands in for mmdebstrap: leaves a file in its TMPDIR and says
	// what apt says of an unknown package.
	os.WriteFile(fake, []byte("#!/bin/sh\ntouch \"$TMPDIR/partial\"\necho 'E: Unable to locate package nope' >&2\nexit 1\n"), 0o755)
	cache := filepath.Join(dir, "apt")
	b := &Builder{CacheDir: cache, TmpDir: cache, EtcApt: etc, OSRelease: osr, Mmdebstrap: fake}
	_, err := b.Build(context.Background(), Request{Packages: []string{"nope"}, Name: "x"})
	if !errors.Is(err, ErrNoPackage) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Build: %v", err)
	}
	if left, _ := os.ReadDir(cache); len(left) != 0 {
		t.Errorf("left in the cache: %v", left)
	}
	b.Mmdebstrap = filepath.Join(dir, "no-such-tool")
	if _, err := b.Build(context.Background(), Request{Packages: []string{"hello"}, Name: "x"}); !errors.Is(err, ErrNoTool) {
		t.Errorf("no tool: %v", err)
	}
}

// TestRemoveStale: build directories a killed build left go after a day;
// younger ones (builds under way) and the cache's records stay.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, buildPrefix+"1")
	young := filepath.Join(dir, buildPrefix+"2")
	for _, d := range []string{old, young} {
		os.MkdirAll(filepath.Join(d, "chroot", "etc"), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "key.json"), []byte("{}"), 0o600)
	past := time.Now().Add(-48 * time.Hour)
	os.Chtimes(old, past, past)
	removeStale(dir, staleAge, time.Now())
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{buildPrefix + "2", "key.json"}) {
		t.Errorf("left %v", left)
	}
}
