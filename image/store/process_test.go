package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/opencontainers/go-digest"
)

// Helper processes import an image saved by saveSource into a store, as
// separate processes would.
const (
	helperEnv = "ARROW_STORE_TEST_HELPER" // the saved source
	rootEnv   = "ARROW_STORE_TEST_ROOT"
	nameEnv   = "ARROW_STORE_TEST_NAME"
	slowEnv   = "ARROW_STORE_TEST_SLOW"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := helper(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type savedSource struct {
	Ref      string
	Manifest []byte
	Blobs    map[digest.Digest][]byte
}

func saveSource(t testing.TB, m *memSource) string {
	b, err := json.Marshal(savedSource{m.ref, m.manifest, m.blobs})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "source.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func helper() error {
	b, err := os.ReadFile(os.Getenv(helperEnv))
	if err != nil {
		return err
	}
	var saved savedSource
	if err := json.Unmarshal(b, &saved); err != nil {
		return err
	}
	src := &memSource{ref: saved.Ref, manifest: saved.Manifest, blobs: saved.Blobs}
	if os.Getenv(slowEnv) != "" {
		src.wrap = func(r io.Reader) io.Reader { return &slowReader{r} }
	}
	s, err := Open(os.Getenv(rootEnv))
	if err != nil {
		return err
	}
	_, err = s.Import(context.Background(), src, os.Getenv(nameEnv))
	return err
}

// slowReader reads 4 KiB a millisecond.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:min(len(p), 4096)])
}

func helperCmd(source, root, name string, slow bool) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+source, rootEnv+"="+root, nameEnv+"="+name)
	if slow {
		cmd.Env = append(cmd.Env, slowEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	return cmd
}

// TestKilledImport kills a process in the middle of an import: the store
// shows nothing of it, the next Open removes its leftovers, and importing
// again works.
func TestKilledImport(t *testing.T) {
	s := openStore(t)
	src := build(t, "killed", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.RandomFiles(5, "data", 64, 32<<10)...)}})
	cmd := helperCmd(saveSource(t, src), s.Root(), "killed", true)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for files to be staged, then kill.
	deadline := time.Now().Add(10 * time.Second)
	for {
		staged, _ := filepath.Glob(filepath.Join(s.Root(), "tmp", "import-*", "rootfs", "data", "f01*"))
		if len(staged) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the import never started staging")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := dirEntries(t, s.path("tmp")); len(got) == 0 {
		t.Fatal("no leftover to clean: the test did not kill mid-import")
	}
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s2)
	if _, err := s2.Import(context.Background(), src, ""); err != nil {
		t.Fatal(err)
	}
}

// TestTwoProcesses imports the same image from two processes at once.
func TestTwoProcesses(t *testing.T) {
	s := openStore(t)
	src := build(t, "shared", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.RandomFiles(6, "data", 16, 16<<10)...)}})
	saved := saveSource(t, src)
	cmds := []*exec.Cmd{helperCmd(saved, s.Root(), "one", true), helperCmd(saved, s.Root(), "two", true)}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	imgs, err := s.List(context.Background())
	if err != nil || len(imgs) != 1 {
		t.Fatalf("List: %d, %v", len(imgs), err)
	}
	names := slices.Sorted(slices.Values(imgs[0].Names))
	if strings.Join(names, ",") != "one,two" {
		t.Errorf("names %v", names)
	}
	if got := dirEntries(t, s.path("files", "sha256")); len(got) != 16 {
		t.Errorf("files: %d, want 16", len(got))
	}
	if got := dirEntries(t, s.path("tmp")); len(got) != 0 {
		t.Errorf("tmp: %v", got)
	}
}

// TestUnprivilegedImport imports as user nobody: owners, modes and
// capabilities the process cannot set still reach the record.
func TestUnprivilegedImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to become nobody")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "arrow-store-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary, where nobody can run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "store.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	src := baseImage(t)
	b, _ := json.Marshal(savedSource{src.ref, src.manifest, src.blobs})
	saved := filepath.Join(dir, "source.json")
	if err := os.WriteFile(saved, b, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "images")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+saved, rootEnv+"="+root, nameEnv+"=as-nobody")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import as nobody: %v\n%s", err, out)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Get(context.Background(), "as-nobody")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := s.Tree(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	for _, tc := range []struct {
		path      string
		mode      uint32
		uid, gid  int
		hasXattrs bool
	}{
		{"/", 0o755, 0, 0, false},
		{"/etc", 0o750, 7, 8, false},
		{"/etc/conf", 0o640, 7, 8, true},
		{"/bin/app", 0o4755, 0, 0, false},
		{"/bin/app-alias", 0o4755, 0, 0, false},
	} {
		e := byPath[tc.path]
		if e.Mode != tc.mode || e.UID != tc.uid || e.GID != tc.gid || (len(e.Xattrs) > 0) != tc.hasXattrs {
			t.Errorf("%s: %+v", tc.path, e)
		}
	}
	// Materialized as root, the tree has the image's owners.
	dst := filepath.Join(t.TempDir(), "rootfs")
	if _, err := s.Materialize(context.Background(), img, dst, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dst, "etc/conf"), &st); err != nil || st.Uid != 7 || st.Mode&0o7777 != 0o640 {
		t.Errorf("etc/conf: uid %d mode %o %v", st.Uid, st.Mode&0o7777, err)
	}
}
