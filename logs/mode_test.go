package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/internal/modetest"
)

// TestModes: a log and its rotated files are 0600 whatever the umask, and
// a log an older Arrow left world-readable is tightened when it is reopened.
func TestModes(t *testing.T) {
	modetest.PermissiveUmask(t)
	dir := t.TempDir()
	tests := []struct {
		name     string
		existing os.FileMode // 0: no file yet
	}{
		{"new", 0},
		{"world-readable", 0o644},
		{"world-writable", 0o666},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".log")
			if tt.existing != 0 {
				if err := os.WriteFile(path, []byte("{}\n"), tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			w, err := Create(path, WriterOptions{MaxSize: 200, MaxFiles: 3})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ { // enough to rotate twice
				fmt.Fprintf(w.Stream(Stdout), "line %d of the application's output\n", i)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + ".1", path + ".2"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
				}
			}
		})
	}
}
