package unit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostUnits loads and translates every service unit of this host:
// none may fail to parse or panic; refusing one (a directive Arrow does
// not support) is allowed, and logged.
func TestHostUnits(t *testing.T) {
	seen := map[string]bool{}
	n, refused := 0, 0
	for _, dir := range SearchPath {
		files, _ := filepath.Glob(filepath.Join(dir, "*.service"))
		for _, f := range files {
			name := filepath.Base(f)
			if seen[name] {
				continue
			}
			seen[name] = true
			if strings.HasSuffix(name, "@.service") {
				name = strings.TrimSuffix(name, "@.service") + "@test-instance.service"
			}
			n++
			l, err := Load(DirFS("/"), name)
			if err != nil {
				if os.IsNotExist(err) {
					t.Errorf("%s: %v", name, err)
				}
				refused++
				t.Logf("%s: load: %v", name, err)
				continue
			}
			if _, err := Translate(l); err != nil {
				refused++
				t.Logf("%s: %v", name, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no service units on this host")
	}
	t.Logf("%d units, %d refused", n, refused)
}
