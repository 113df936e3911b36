package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/arrowsys/arrow/e2e/fixture"
)

// debianPath is the PATH Debian's images set.
const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// TestDebianPythonImages imports two images of a real Debian root file
// system with python3 (debootstrap, cached across runs) that hold the same
// files in different layer splits and orders, one from an OCI layout and
// one from a `docker save` tarball; runs them as docker run would; and
// checks that the store keeps the Python runtime, and every other shared
// file, once.
func TestDebianPythonImages(t *testing.T) {
	tree := debianTree(t)
	root := t.TempDir()
	kernel := debianKernel(t)

	isPy := fixture.IsPythonRuntime
	isPyBin := func(rel string) bool { return isPy(rel) && !strings.HasPrefix(rel, "usr/lib/python3") }
	isPyLib := func(rel string) bool { return strings.HasPrefix(rel, "usr/lib/python3") }
	base, baseSt := debianLayer(t, tree, fixture.Not(isPy))
	py, pySt := debianLayer(t, tree, isPy)
	pyBin, binSt := debianLayer(t, tree, isPyBin)
	pyLib, libSt := debianLayer(t, tree, isPyLib)
	t.Logf("layers: base %d files %.1f MiB (%d device nodes left out), python %d files %.1f MiB (bin %d, lib %d)",
		baseSt.Files, float64(baseSt.Bytes)/debMiB, baseSt.Skipped, pySt.Files, float64(pySt.Bytes)/debMiB, binSt.Files, libSt.Files)
	if pySt.Bytes < 8*debMiB || binSt.Files+libSt.Files != pySt.Files || binSt.Bytes+libSt.Bytes != pySt.Bytes {
		t.Fatalf("the python layers are not the runtime split in two: %+v = %+v + %+v", pySt, binSt, libSt)
	}
	const app = "import os, sys\nprint('app', os.getcwd(), os.environ['ARROW_FIXTURE'], sys.version.split()[0])\n"

	// P1: [base, python] from an OCI layout, python as the entrypoint.
	p1 := debianImage(t, v1.Config{
		Entrypoint: []string{"/usr/bin/python3"},
		Cmd:        []string{"-c", "print('hi from debian')"},
		Env:        []string{debianPath, "ARROW_FIXTURE=debian-p1"},
		WorkingDir: "/srv",
	}, base, py)
	debImport(t, root, "debian-p1", debLayoutDir(t, p1))
	// P2: the same files with python split in two and under the base,
	// plus an application file, from a `docker save` tarball.
	p2 := debianImage(t, v1.Config{
		Cmd:        []string{"/usr/bin/python3", "/srv/app.py"},
		Env:        []string{debianPath, "ARROW_FIXTURE=debian-p2"},
		WorkingDir: "/srv",
	}, pyLib, pyBin, base, debFileLayer(t, "srv/app.py", app))
	debImport(t, root, "debian-p2", debDockerArchive(t, p2, "arrow.test/debian-p2:latest"))

	// Each image has all of the tree's files: p2 one more.
	s1, s2 := debImageSize(t, root, "debian-p1"), debImageSize(t, root, "debian-p2")
	if want := baseSt.Bytes + pySt.Bytes; s1 != want || s2 != want+int64(len(app)) {
		t.Errorf("image sizes %d and %d, want %d and %d", s1, s2, want, want+int64(len(app)))
	}
	// Stored once: the second image added its app file, its manifest,
	// config and tree, and nothing else. du rounds to 0.1 MiB.
	u := debDU(t, root)
	if u.images != 2 || u.unshared < s1+s2-debMiB/10 {
		t.Fatalf("du: %+v, want 2 images of %d bytes in all", u, s1+s2)
	}
	if saved := u.unshared - u.stored; saved < pySt.Bytes {
		t.Errorf("du: %.1f MiB stored of %.1f MiB unshared: the %.1f MiB python runtime is stored more than once",
			float64(u.stored)/debMiB, float64(u.unshared)/debMiB, float64(pySt.Bytes)/debMiB)
	}
	if u.stored > s1+2*debMiB {
		t.Errorf("du: %.1f MiB stored for two images of the same %.1f MiB of files", float64(u.stored)/debMiB, float64(s1)/debMiB)
	}

	var version string
	tests := []struct {
		name  string
		stdin string
		args  []string
		out   string // the whole output; a regexp if it starts with ^
		code  int
	}{
		{"defaults", "", []string{"debian-p1"}, "hi from debian\n", 0},
		{"args replace cmd", "", []string{"debian-p1", "-c", "import sys; print(sys.version)"}, `^3\.\d+\.\d+ \(.*\n$`, 0},
		{"env and workdir", "", []string{"debian-p1", "-c", "import os; print(os.environ['ARROW_FIXTURE'], os.getcwd(), os.environ['PATH'])"},
			"debian-p1 /srv " + strings.TrimPrefix(debianPath, "PATH=") + "\n", 0},
		{"env and workdir overridden", "", []string{"-e", "ARROW_FIXTURE=cli", "-w", "/tmp", "debian-p1", "-c", "import os; print(os.environ['ARROW_FIXTURE'], os.getcwd())"},
			"cli /tmp\n", 0},
		{"entrypoint", "", []string{"--entrypoint", "/bin/cat", "debian-p1", "/etc/debian_version"}, `^12\.\d+\n$`, 0},
		{"entrypoint shell finds python in PATH", "", []string{"--entrypoint", "/bin/sh", "debian-p1", "-c", "cd /usr/lib && exec python3 -c 'import os; print(6*7, os.getcwd())'"}, "42 /usr/lib\n", 0},
		{"stdin", "abc", []string{"-i", "debian-p1", "-c", "import sys; print(sys.stdin.read().upper())"}, "ABC\n", 0},
		{"exit status", "", []string{"debian-p1", "-c", "import sys; print('bye'); sys.exit(7)"}, "bye\n", 7},
		{"read-only root", "", []string{"--read-only", "debian-p1", "-c", "import os\ntry:\n open('/srv/x','w')\nexcept OSError as e:\n print('refused', e.errno)"}, "refused 30\n", 0},
		{"other split: app", "", []string{"debian-p2"}, "", 0},
		// csv, hashlib (and lib-dynload's _hashlib), base64: the split
		// python layers make a whole standard library.
		{"other split: args replace cmd", "", []string{"debian-p2", "python3", "-c", "import base64, csv, hashlib, sys; csv.writer(sys.stdout).writerow([base64.b64encode(b'hi').decode(), hashlib.sha256(b'').hexdigest()[:8]])"},
			"aGk=,e3b0c442\r\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := arrow(t, tt.stdin, append([]string{"--root", root, "run", "--kernel", kernel}, tt.args...)...)
			out := tt.out
			if tt.name == "other split: app" {
				out = "app /srv debian-p2 " + version + "\n"
			}
			ok := r.stdout == out
			if strings.HasPrefix(out, "^") {
				ok = regexp.MustCompile(out).MatchString(r.stdout)
			}
			if r.code != tt.code || !ok {
				t.Fatalf("exit %d stdout %q, want %d %q; stderr %s", r.code, r.stdout, tt.code, out, r.stderr)
			}
			if tt.name == "args replace cmd" {
				version = strings.Fields(r.stdout)[0]
			}
		})
	}
}

// TestDebianPythonVolume: python in a Debian image (one layer, from an OCI
// archive) reads and writes a volume; what it wrote is on the host when
// arrow returns; a read-only volume refuses its writes.
func TestDebianPythonVolume(t *testing.T) {
	tree := debianTree(t)
	root := t.TempDir()
	kernel := debianKernel(t)
	all, _ := debianLayer(t, tree, func(string) bool { return true })
	img := debianImage(t, v1.Config{Entrypoint: []string{"/usr/bin/python3"}, Env: []string{debianPath}}, all)
	debImport(t, root, "debian-one", debOCIArchive(t, img))

	data, conf := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "app.conf"), []byte("setting=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := `
import os
with open('/data/in.txt') as f:
    text = f.read()
with open('/data/out.txt', 'w') as f:
    f.write(text.upper())
os.makedirs('/data/sub/dir')
with open('/data/sub/dir/n', 'w') as f:
    f.write(str(sum(range(10))))
print(open('/etc/app/app.conf').read().strip())
try:
    open('/etc/app/app.conf', 'w').write('tamper')
except OSError as e:
    print('ro refused', e.errno)
`
	r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "-v", data+":/data", "-v", conf+":/etc/app:ro", "debian-one", "-c", prog)
	if r.code != 0 || r.stdout != "setting=1\nro refused 30\n" {
		t.Fatalf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	for file, want := range map[string]string{"out.txt": "FROM THE HOST\n", "sub/dir/n": "45"} {
		if b, err := os.ReadFile(filepath.Join(data, file)); err != nil || string(b) != want {
			t.Errorf("volume file %s: %q, %v; want %q", file, b, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "app.conf")); string(b) != "setting=1\n" {
		t.Errorf("read-only volume changed: %q", b)
	}
}
