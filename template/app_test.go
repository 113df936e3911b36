package template

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/image/cachefile"
)

// publishApp writes a snapshot's files as CaptureApp publishes them,
// without a VM: a state, a memory file and meta.json.
func publishApp(t *testing.T, root, name string) string {
	t.Helper()
	dir := filepath.Join(AppsDir(root), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := Inputs{Format: formatVersion, KernelSHA: "k", InitSHA: "i", MemoryMiB: 256, CPUs: 1, Accel: "tcg", Layout: "l", QEMU: "q"}
	a := &App{Template: Template{Key: in.Key(), Dir: dir, Inputs: in, MemFile: filepath.Join(dir, "mem")}, Name: name}
	if err := os.WriteFile(a.statePath(), []byte("device state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.MemFile, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if a.StateSHA256, err = (cachefile.Memo{}).FileSum(a.statePath()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(a.MemFile)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	a.MemSize, a.MemInode, a.MemCtime, a.Created = fi.Size(), st.Ino, ctime(st), time.Now()
	b, _ := json.Marshal(a)
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLookupApp checks a snapshot's files as a template's are checked:
// a memory file written since it was published (what a QEMU taken over
// could do through its descriptor) or of a loose mode, or a state that
// changed, makes the snapshot unusable; rm removes it whole.
func TestLookupApp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"memory written", func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, "mem"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{1}, 0)
			return err
		}},
		{"memory readable by others", func(dir string) error { return os.Chmod(filepath.Join(dir, "mem"), 0o644) }},
		{"state changed", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "state"), []byte("other state!"), 0o600)
		}},
		{"another snapshot's meta", func(dir string) error {
			return os.Rename(dir, filepath.Join(filepath.Dir(dir), "renamed"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := publishApp(t, root, "web")
			if _, err := LookupApp(root, "web"); err != nil {
				t.Fatalf("LookupApp of the snapshot as published: %v", err)
			}
			// The change time moves by the clock's granularity.
			time.Sleep(10 * time.Millisecond)
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			name := "web"
			if tc.name == "another snapshot's meta" {
				name = "renamed"
			}
			if _, err := LookupApp(root, name); !errors.Is(err, ErrUnusable) {
				t.Fatalf("LookupApp after %s: %v, want ErrUnusable", tc.name, err)
			}
		})
	}
	root := t.TempDir()
	publishApp(t, root, "web")
	if _, err := LookupApp(root, "nosuch"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("LookupApp of no snapshot: %v", err)
	}
	if _, err := LookupApp(root, "../web"); err == nil {
		t.Error("a bad name was looked up")
	}
	if l, err := ListApps(root); err != nil || len(l) != 1 || l[0].Name != "web" {
		t.Errorf("ListApps: %v, %v", l, err)
	}
	if err := RemoveApp(root, "web"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(AppsDir(root)); len(ents) != 0 {
		t.Errorf("left after RemoveApp: %v", ents)
	}
	if err := RemoveApp(root, "web"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("RemoveApp twice: %v", err)
	}
}
