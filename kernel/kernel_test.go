package kernel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	frag := []byte("CONFIG_SMP=y\n")
	base := Key("6.1.192-2", frag)
	if got := Key("6.1.192-2", []byte("CONFIG_SMP=y\n")); got != base {
		t.Fatalf("Key not stable: %q then %q", base, got)
	}
	if !regexp.MustCompile(`^6\.1\.192-2-[0-9a-f]{12}$`).MatchString(base) {
		t.Fatalf("Key = %q, want <version>-<12 hex>", base)
	}
	differ := []struct {
		name    string
		version string
		frag    []byte
	}{
		{"other version", "6.1.193-1", frag},
		{"other fragment", "6.1.192-2", []byte("CONFIG_SMP=n\n")},
		{"whitespace in fragment", "6.1.192-2", []byte("CONFIG_SMP=y\n\n")},
		{"empty fragment", "6.1.192-2", nil},
	}
	for _, tc := range differ {
		t.Run(tc.name, func(t *testing.T) {
			if got := Key(tc.version, tc.frag); got == base {
				t.Errorf("Key(%q, %q) = %q, same as base", tc.version, tc.frag, got)
			}
		})
	}
	safe := regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)
	for _, v := range []string{"1:6.1.192+deb12u1~bpo/2", "", "..", "../../etc", "a b\tc\n"} {
		k := Key(v, frag)
		if !safe.MatchString(k) || strings.Contains(k, "/") || len(k) > 200 {
			t.Errorf("Key(%q) = %q is not filesystem safe", v, k)
		}
	}
}

func TestFragmentParses(t *testing.T) {
	frag := Fragment()
	if len(frag) == 0 {
		t.Fatal("embedded fragment is empty")
	}
	lineRe := regexp.MustCompile(`^(CONFIG_[A-Z0-9_]+=(y|n|[0-9]+|"[^"]*")|# CONFIG_[A-Z0-9_]+ is not set)$`)
	whyBefore := false
	for i, line := range strings.Split(string(frag), "\n") {
		switch {
		case line == "":
			whyBefore = false
		case strings.HasPrefix(line, "# why"):
			whyBefore = true
		case lineRe.MatchString(line):
			if !whyBefore {
				t.Errorf("line %d %q: its group has no \"# why\" comment", i+1, line)
			}
		case strings.HasPrefix(line, "# CONFIG_"):
			t.Errorf("line %d %q: malformed \"is not set\" line", i+1, line)
		case strings.HasPrefix(line, "#"):
			// free comment
		default:
			t.Errorf("line %d %q: not CONFIG_X=value or # CONFIG_X is not set", i+1, line)
		}
	}
	opts, err := ParseFragment(frag)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range opts {
		got[o.Name] = o.Value
	}
	want := map[string]string{
		"CONFIG_64BIT": "y", "CONFIG_SMP": "y", "CONFIG_PVH": "y", "CONFIG_X86_MPPARSE": "y",
		"CONFIG_KVM_GUEST": "y", "CONFIG_MODULES": "n", "CONFIG_PCI": "n",
		"CONFIG_VIRTIO_MMIO": "y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "y",
		"CONFIG_VIRTIO_BLK": "y", "CONFIG_VIRTIO_NET": "y", "CONFIG_VIRTIO_CONSOLE": "y",
		"CONFIG_HW_RANDOM_VIRTIO": "y", "CONFIG_NET_9P": "y", "CONFIG_NET_9P_VIRTIO": "y",
		"CONFIG_9P_FS": "y", "CONFIG_FUSE_FS": "y", "CONFIG_VIRTIO_FS": "y", "CONFIG_EXT4_FS": "y",
		"CONFIG_EROFS_FS": "y", "CONFIG_MISC_FILESYSTEMS": "y", "CONFIG_SQUASHFS": "y",
		"CONFIG_OVERLAY_FS": "y", "CONFIG_TMPFS": "y", "CONFIG_TMPFS_XATTR": "y",
		"CONFIG_DEVTMPFS": "y", "CONFIG_UNIX98_PTYS": "y", "CONFIG_PROC_FS": "y", "CONFIG_SYSFS": "y",
		"CONFIG_BINFMT_ELF": "y", "CONFIG_BINFMT_SCRIPT": "y", "CONFIG_UNIX": "y", "CONFIG_INET": "y",
		"CONFIG_IPV6": "y", "CONFIG_FUTEX": "y", "CONFIG_EPOLL": "y", "CONFIG_SIGNALFD": "y",
		"CONFIG_TIMERFD": "y", "CONFIG_EVENTFD": "y", "CONFIG_AIO": "y", "CONFIG_INOTIFY_USER": "y",
		"CONFIG_FILE_LOCKING": "y", "CONFIG_POSIX_TIMERS": "y", "CONFIG_SYSVIPC": "y",
		"CONFIG_POSIX_MQUEUE": "y", "CONFIG_MULTIUSER": "y", "CONFIG_SHMEM": "y",
		"CONFIG_SECCOMP": "y", "CONFIG_SECCOMP_FILTER": "y", "CONFIG_CGROUPS": "y", "CONFIG_MEMCG": "y",
		"CONFIG_CGROUP_SCHED": "y", "CONFIG_CGROUP_PIDS": "y", "CONFIG_SERIAL_8250_CONSOLE": "y",
		"CONFIG_PRINTK": "y", "CONFIG_BLK_DEV_INITRD": "y", "CONFIG_RD_GZIP": "y",
		"CONFIG_HIGH_RES_TIMERS": "y", "CONFIG_NO_HZ_IDLE": "y",
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("fragment has %s=%q, want %q", name, got[name], v)
		}
	}
}

func TestParseFragmentRejects(t *testing.T) {
	tests := []struct {
		name, frag, wantErr string
	}{
		{"junk line", "CONFIG_A=y\nhello\n", "line 2"},
		{"bad value", "CONFIG_A=yes\n", "bad value"},
		{"unquoted string", "CONFIG_A=foo bar\n", "bad value"},
		{"duplicate", "CONFIG_A=y\n# CONFIG_A is not set\n", "already set on line 1"},
		{"lower-case prefix", "config_A=y\n", "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFragment([]byte(tc.frag))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseFragment(%q) error = %v, want containing %q", tc.frag, err, tc.wantErr)
			}
		})
	}
	ok := "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=64\nCONFIG_D=\"x=y\"\nCONFIG_E=0x10\n"
	opts, err := ParseFragment([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 5 || opts[1].Value != "n" || opts[3].Value != `"x=y"` {
		t.Fatalf("ParseFragment = %+v", opts)
	}
}

func TestVerify(t *testing.T) {
	frag := "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"tsc=reliable\"\nCONFIG_E=64\n"
	full := "#\n# Automatically generated\n#\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"tsc=reliable\"\nCONFIG_E=64\nCONFIG_F=y\n"
	tests := []struct {
		name   string
		config string
		bad    []string // names expected in the error, nil for success
	}{
		{"all honoured", full, nil},
		{"unset option absent", strings.Replace(full, "# CONFIG_C is not set\n", "", 1), nil},
		{"option dropped", strings.Replace(full, "CONFIG_B=y\n", "", 1), []string{"CONFIG_B (want y, got not set)"}},
		{"option turned off", strings.Replace(full, "CONFIG_A=y\n", "# CONFIG_A is not set\n", 1), []string{"CONFIG_A (want y, got not set)"}},
		{"option became module", strings.Replace(full, "CONFIG_A=y\n", "CONFIG_A=m\n", 1), []string{"CONFIG_A (want y, got m)"}},
		{"unwanted option enabled", strings.Replace(full, "# CONFIG_C is not set\n", "CONFIG_C=y\n", 1), []string{"CONFIG_C (want not set, got y)"}},
		{"string changed", strings.Replace(full, `"tsc=reliable"`, `""`, 1), []string{`CONFIG_D (want "tsc=reliable", got "")`}},
		{"several missing", "CONFIG_E=64\n", []string{"CONFIG_A", "CONFIG_B", "CONFIG_D"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify([]byte(frag), []byte(tc.config))
			if tc.bad == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify error = %v, want *VerifyError", err)
			}
			if len(ve.Mismatches) != len(tc.bad) {
				t.Errorf("mismatches = %+v, want %d", ve.Mismatches, len(tc.bad))
			}
			for _, b := range tc.bad {
				if !strings.Contains(err.Error(), b) {
					t.Errorf("error %q does not name %q", err, b)
				}
			}
		})
	}
}

func TestVerifyEmbeddedFragmentAgainstItself(t *testing.T) {
	if err := Verify(Fragment(), Fragment()); err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		data    []byte
		format  Format
		pvh     bool
		release string
		wantErr string
	}{
		{name: "pvh vmlinux", data: fakeVmlinux(), format: FormatELF, pvh: true, release: "6.1.192"},
		{name: "vmlinux without pvh", data: makeELF(62, 2, []note{{owner: "Linux", typ: 6, desc: make([]byte, 4)}}, nil), format: FormatELF},
		{name: "vmlinux with only banner", data: makeELF(62, 2, nil, []byte("Linux version 6.6.1-x (a@b)\x00")), format: FormatELF, release: "6.6.1-x"},
		{name: "other note types", data: makeELF(62, 2, []note{{owner: "Xen", typ: 5, desc: []byte("xen-3.0\x00")}, {owner: "GNU", typ: 3, desc: make([]byte, 20)}}, nil), wantErr: "not a Linux kernel"},
		{name: "arm64 elf", data: makeELF(183, 2, []note{pvhNote}, nil), wantErr: "x86-64"},
		{name: "shared object", data: makeELF(62, 3, []note{pvhNote}, nil), wantErr: "ET_DYN"},
		{name: "plain executable", data: makeELF(62, 2, []note{{owner: "GNU", typ: 1, desc: make([]byte, 16)}}, nil), wantErr: "not a Linux kernel"},
		{name: "32-bit elf", data: append([]byte{0x7f, 'E', 'L', 'F', 1, 1, 1}, make([]byte, 60)...), wantErr: "ELF"},
		{name: "bzImage", data: makeBzImage("6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"), format: FormatBzImage, release: "6.1.0-28-cloud-amd64"},
		{name: "bzImage without version", data: makeBzImage(""), format: FormatBzImage},
		{name: "bzImage without boot flag", data: func() []byte { b := makeBzImage("x"); b[bootFlagOff] = 0; return b }(), wantErr: "boot flag"},
		{name: "truncated bzImage", data: makeBzImage("x")[:0x210], wantErr: "truncated"},
		{name: "garbage", data: []byte(strings.Repeat("not a kernel ", 200)), wantErr: "neither an ELF vmlinux nor a bzImage"},
		{name: "empty", data: nil, wantErr: "neither an ELF vmlinux nor a bzImage"},
		{name: "shell script", data: []byte("#!/bin/sh\necho hi\n"), wantErr: "not a kernel image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")), tc.data)
			k, err := Inspect(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Inspect error = %v, want containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if k.Format != tc.format || k.PVH != tc.pvh || k.Release != tc.release || k.Path != path ||
				k.Size != int64(len(tc.data)) || k.Tailored {
				t.Errorf("Inspect = %+v, want format %s pvh %v release %q", k, tc.format, tc.pvh, tc.release)
			}
		})
	}
	if _, err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Inspect(dir) error = %v", err)
	}
	if _, err := Inspect(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect(missing) error = %v, want ErrNotExist", err)
	}
}

func TestParseNotesMalformed(t *testing.T) {
	// A note whose sizes run past the end must not panic or be returned.
	b := make([]byte, 16)
	b[0], b[4] = 200, 200
	if n := parseNotes(b, binary.LittleEndian); len(n) != 0 {
		t.Fatalf("parseNotes = %+v", n)
	}
}

// installFake creates a cached kernel as Build would leave it.
func installFake(t *testing.T, root, version string, frag []byte, builtAt time.Time) string {
	t.Helper()
	key := Key(version, frag)
	dir := filepath.Join(KernelsDir(root), key)
	writeFile(t, filepath.Join(dir, imageName), fakeVmlinux())
	writeFile(t, filepath.Join(dir, configName), frag)
	raw, err := json.Marshal(metadata{Key: key, SourceVersion: version, ConfigHash: FragmentHash(frag), PVH: true, BuiltAt: builtAt, Release: "6.1.192"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, metadataName), raw)
	return dir
}

func TestFindAndList(t *testing.T) {
	frag := Fragment()
	oldFrag := []byte("CONFIG_SMP=y\n")
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("empty root", func(t *testing.T) {
		root := t.TempDir()
		_, err := find([]string{KernelsDir(root)}, "6.1.192-2", nil, frag)
		if !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "arrow kernel build") {
			t.Fatalf("find error = %v, want ErrNotBuilt mentioning `arrow kernel build`", err)
		}
		ks, err := list([]string{KernelsDir(root)}, "6.1.192-2", frag)
		if err != nil || len(ks) != 0 {
			t.Fatalf("list = %v, %v; want empty", ks, err)
		}
	})

	root := t.TempDir()
	curDir := installFake(t, root, "6.1.192-2", frag, t0)
	installFake(t, root, "6.1.190-1", frag, t0.Add(-time.Hour))
	installFake(t, root, "6.1.192-2", oldFrag, t0.Add(time.Hour))
	// Leftovers that must be ignored.
	writeFile(t, filepath.Join(KernelsDir(root), ".build-x-123", "junk"), []byte("x"))
	writeFile(t, filepath.Join(KernelsDir(root), "broken", metadataName), []byte("{"))
	writeFile(t, filepath.Join(KernelsDir(root), "noimage", metadataName), []byte("{}"))
	writeFile(t, filepath.Join(KernelsDir(root), "x.build.log"), []byte("log"))

	tests := []struct {
		name    string
		version string
		verErr  error
		wantDir string // "" means ErrNotBuilt
	}{
		{"current", "6.1.192-2", nil, curDir},
		{"other source version", "6.1.200-1", nil, ""},
		{"version unknown falls back to newest for fragment", "", errors.New("no dpkg"), curDir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := find([]string{KernelsDir(root)}, tc.version, tc.verErr, frag)
			if tc.wantDir == "" {
				if !errors.Is(err, ErrNotBuilt) {
					t.Fatalf("find error = %v, want ErrNotBuilt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Dir(k.Path) != tc.wantDir || !k.Current || !k.Tailored || !k.PVH || k.Format != FormatELF ||
				k.ConfigHash != FragmentHash(frag) || k.Config != filepath.Join(tc.wantDir, configName) || !k.BuiltAt.Equal(t0) {
				t.Errorf("find = %+v, want kernel in %s", k, tc.wantDir)
			}
		})
	}

	ks, err := list([]string{KernelsDir(root)}, "6.1.192-2", frag)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 3 {
		t.Fatalf("list returned %d kernels, want 3: %+v", len(ks), ks)
	}
	for i := 1; i < len(ks); i++ {
		if ks[i].BuiltAt.After(ks[i-1].BuiltAt) {
			t.Errorf("list not newest first: %v after %v", ks[i].BuiltAt, ks[i-1].BuiltAt)
		}
	}
	currents := 0
	for _, k := range ks {
		if k.Current {
			currents++
			if filepath.Dir(k.Path) != curDir {
				t.Errorf("wrong kernel marked current: %s", k.Path)
			}
		}
	}
	if currents != 1 {
		t.Errorf("%d kernels marked current, want 1", currents)
	}

	// A cached directory whose image vanished is reported, not returned.
	if err := os.Remove(filepath.Join(curDir, imageName)); err != nil {
		t.Fatal(err)
	}
	if _, err := find([]string{KernelsDir(root)}, "6.1.192-2", nil, frag); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("find with missing image: %v, want ErrNotBuilt", err)
	}
}

func TestMissingPackages(t *testing.T) {
	tests := []struct {
		name    string
		noTools []string
		noFiles bool
		want    []string
	}{
		{"all present", nil, false, nil},
		{"bison and bc missing", []string{"bison", "bc"}, false, []string{"bison", "bc"}},
		{"compiler missing", []string{"gcc"}, false, []string{"build-essential"}},
		{"headers missing", nil, true, []string{"libelf-dev"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			look := func(name string) (string, error) {
				for _, n := range tc.noTools {
					if n == name {
						return "", errors.New("not found")
					}
				}
				return "/usr/bin/" + name, nil
			}
			have := func(string) bool { return !tc.noFiles }
			got := missingPackages(look, have)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("missingPackages = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseDpkgStatus(t *testing.T) {
	tests := []struct {
		out, want, wantErr string
	}{
		{"installed 6.1.192-2", "6.1.192-2", ""},
		{"installed 6.1.192-2\n", "6.1.192-2", ""},
		{"config-files 6.1.192-2", "", "apt-get install linux-source-6.1"},
		{"not-installed ", "", "not installed"},
		{"installed", "", "no version"},
	}
	for _, tc := range tests {
		got, err := parseDpkgStatus(SourcePackage, tc.out)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseDpkgStatus(%q) error = %v, want %q", tc.out, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseDpkgStatus(%q) = %q, %v; want %q", tc.out, got, err, tc.want)
		}
	}
}

func TestMissingSourceError(t *testing.T) {
	err := errMissingSource(DefaultSource, os.ErrNotExist)
	if !strings.Contains(err.Error(), "apt-get install linux-source-6.1") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("errMissingSource(default) = %v", err)
	}
	err = errMissingSource("/x/linux.tar.xz", os.ErrNotExist)
	if !strings.Contains(err.Error(), "/x/linux.tar.xz") || strings.Contains(err.Error(), "apt-get") {
		t.Errorf("errMissingSource(custom) = %v", err)
	}
}

func TestBuildEnv(t *testing.T) {
	env := buildEnv([]string{"PATH=/bin", "MAKEFLAGS=-j8 --jobserver-auth=3,4", "ARCH=arm64", "HOME=/root", "LC_ALL=de_DE"})
	joined := strings.Join(env, "\n")
	for _, bad := range []string{"MAKEFLAGS", "ARCH=arm64", "LC_ALL=de_DE"} {
		if strings.Contains(joined, bad) {
			t.Errorf("buildEnv kept %s: %v", bad, env)
		}
	}
	for _, good := range []string{"PATH=/bin", "HOME=/root", "LC_ALL=C"} {
		if !strings.Contains(joined, good) {
			t.Errorf("buildEnv lost %s: %v", good, env)
		}
	}
}

func TestLineCounter(t *testing.T) {
	c := &lineCounter{}
	for _, chunk := range []string{"  CC      a.o\n  C", "C      b.o\n  LD      x\n  AS      c.o", "\nwarning: CC something\n"} {
		c.Write([]byte(chunk))
	}
	if c.count() != 3 {
		t.Fatalf("count = %d, want 3", c.count())
	}
}
