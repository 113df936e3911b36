package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/modetest"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

// TestFindSystemFallback: a data root without a kernel boots the system's;
// the data root's own kernel comes first; a system directory others may
// write to is not trusted.
func TestFindSystemFallback(t *testing.T) {
	frag := Fragment()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	sys := filepath.Join(t.TempDir(), "kernels")
	sysDir := installFake(t, filepath.Dir(sys), "6.1.192-2", frag, t0) // <tmp>/kernels/<key>

	tests := []struct {
		name    string
		version string
		verErr  error
	}{
		{"known source version", "6.1.192-2", nil},
		{"unknown source version", "", errors.New("no dpkg")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			k, err := find(searchDirs(root, sys), tt.version, tt.verErr, frag)
			if err != nil || filepath.Dir(k.Path) != sysDir || !k.Current {
				t.Fatalf("empty root: find = %+v, %v; want the system kernel in %s", k, err, sysDir)
			}
			if _, err := find(searchDirs(root, ""), tt.version, tt.verErr, frag); !errors.Is(err, ErrNotBuilt) {
				t.Fatalf("no system directory: %v, want ErrNotBuilt", err)
			}

			own := installFake(t, root, "6.1.192-2", frag, t0.Add(-time.Minute))
			k, err = find(searchDirs(root, sys), tt.version, tt.verErr, frag)
			if tt.verErr == nil && (err != nil || filepath.Dir(k.Path) != own) {
				t.Fatalf("find = %+v, %v; want the data root's kernel %s first", k, err, own)
			}
			ks, err := list(searchDirs(root, sys), tt.version, frag)
			if err != nil || len(ks) != 2 {
				t.Fatalf("list = %+v, %v; want both kernels", ks, err)
			}
			if tt.verErr == nil {
				for _, k := range ks {
					if k.Current != (filepath.Dir(k.Path) == own) {
						t.Errorf("%s: current %v; only the data root's shadowing copy is current", k.Path, k.Current)
					}
				}
			}
		})
	}

	// The attacker: any user could have written a kernel into a system
	// directory that is group or world writable; it is not used.
	if err := os.Chmod(sys, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := find(searchDirs(t.TempDir(), sys), "6.1.192-2", nil, frag); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("writable system directory: find error %v, want ErrNotBuilt", err)
	}
	if err := os.Chmod(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// Owned by another user, even with a strict mode: not used.
		if err := os.Chown(sys, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := find(searchDirs(t.TempDir(), sys), "6.1.192-2", nil, frag); !errors.Is(err, ErrNotBuilt) {
			t.Fatalf("system directory owned by nobody: find error %v, want ErrNotBuilt", err)
		}
	}
}

// TestDefaultSystemDir: the environment overrides the constant.
func TestDefaultSystemDir(t *testing.T) {
	t.Setenv(SystemDirEnv, "")
	if d := DefaultSystemDir(); d != SystemDir {
		t.Errorf("unset: %s, want %s", d, SystemDir)
	}
	t.Setenv(SystemDirEnv, "/elsewhere")
	if d := DefaultSystemDir(); d != "/elsewhere" {
		t.Errorf("set: %s", d)
	}
}

// TestBuildModes: a kernel built for the data root is its owner's only; one
// installed for the system is readable by all and writable by its owner
// alone, whatever the umask; the build log stays in the data root.
func TestBuildModes(t *testing.T) {
	needTools(t)
	modetest.PermissiveUmask(t)
	key := Key("9.9.9-test", Fragment())

	t.Run("data root", func(t *testing.T) {
		root := t.TempDir()
		b := testBuilder(root, makeSourceTarball(t, fakeMakefile("", "")), &syncbuf.Buffer{})
		k, err := b.Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(KernelsDir(root), key)
		if k.Path != filepath.Join(dir, imageName) {
			t.Fatalf("built %s", k.Path)
		}
		modetest.AssertPerm(t, KernelsDir(root), 0o700)
		modetest.AssertPerm(t, dir, 0o700)
		for _, name := range []string{imageName, configName, metadataName, logName, "../.lock-" + key} {
			modetest.AssertPerm(t, filepath.Join(dir, name), 0o600)
		}
	})

	t.Run("system", func(t *testing.T) {
		root := t.TempDir()
		sys := filepath.Join(t.TempDir(), "lib", "arrow", "kernels")
		src := makeSourceTarball(t, fakeMakefile("", ""))
		b := testBuilder(root, src, &syncbuf.Buffer{})
		b.System, b.InstallSystem = sys, true
		k, err := b.Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(sys, key)
		if k.Path != filepath.Join(dir, imageName) {
			t.Fatalf("installed %s, want it in %s", k.Path, dir)
		}
		for _, d := range []string{filepath.Dir(filepath.Dir(sys)), filepath.Dir(sys), sys, dir} {
			modetest.AssertPerm(t, d, 0o755)
		}
		for _, name := range []string{imageName, configName, metadataName} {
			modetest.AssertPerm(t, filepath.Join(dir, name), 0o644)
		}
		if _, err := os.Stat(filepath.Join(dir, logName)); err == nil {
			t.Error("the build log went to the system directory")
		}
		modetest.AssertPerm(t, KernelsDir(root), 0o700)
		modetest.AssertPerm(t, filepath.Join(KernelsDir(root), key+".build.log"), 0o600)
		if _, err := os.Stat(filepath.Join(KernelsDir(root), key)); err == nil {
			t.Error("a system build also left a kernel in the data root")
		}

		// Another user's build finds it there and builds nothing: the
		// source is gone.
		if err := os.Remove(src); err != nil {
			t.Fatal(err)
		}
		other := testBuilder(t.TempDir(), src, &syncbuf.Buffer{})
		other.System = sys
		k2, err := other.Build(context.Background())
		if err != nil || k2.Path != k.Path {
			t.Fatalf("build with a system kernel present: %+v, %v", k2, err)
		}
	})

	t.Run("system from data root", func(t *testing.T) {
		// A kernel root built under its data root before kernels went
		// system-wide is installed as it is, not built again.
		root := t.TempDir()
		src := makeSourceTarball(t, fakeMakefile("", ""))
		built, err := testBuilder(root, src, &syncbuf.Buffer{}).Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(src); err != nil {
			t.Fatal(err)
		}
		sys := filepath.Join(t.TempDir(), "kernels")
		b := testBuilder(root, src, &syncbuf.Buffer{})
		b.System, b.InstallSystem = sys, true
		k, err := b.Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if k.Path != filepath.Join(sys, key, imageName) || !k.BuiltAt.Equal(built.BuiltAt) {
			t.Fatalf("installed %+v, want the data root's kernel copied to %s", k, sys)
		}
		want, _ := os.ReadFile(built.Path)
		if got, err := os.ReadFile(k.Path); err != nil || string(got) != string(want) {
			t.Fatalf("installed image differs: %v", err)
		}
		modetest.AssertPerm(t, k.Path, 0o644)
	})

	t.Run("no system directory", func(t *testing.T) {
		b := testBuilder(t.TempDir(), "", &syncbuf.Buffer{})
		b.InstallSystem = true
		if _, err := b.Build(context.Background()); err == nil {
			t.Fatal("InstallSystem without System succeeded")
		}
	})
}
