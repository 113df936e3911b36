package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarLayer builds a layer from entries: a name ending in / is a directory,
// "->target" content a symlink, anything else a file.
func tarLayer(t *testing.T, entries [][2]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		name, content := e[0], e[1]
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
		case strings.HasPrefix(content, "->"):
			err = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: content[2:], Mode: 0o777})
		default:
			if err = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content))}); err == nil {
				_, err = tw.Write([]byte(content))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// busyboxLayer is a tiny root file system: static busybox and its applets.
func busyboxLayer(t *testing.T) v1.Layer {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	entries := [][2]string{{"bin/", ""}, {"bin/busybox", string(bb)}, {"etc/", ""}, {"etc/os-release", "NAME=arrow-test\n"}}
	for _, a := range []string{"sh", "echo", "cat", "ls", "pwd", "touch", "sync", "id"} {
		entries = append(entries, [2]string{"bin/" + a, "->busybox"})
	}
	return tarLayer(t, entries)
}

// writeImage writes an OCI layout with one image of layers and cfg.
func writeImage(t *testing.T, cfg v1.Config, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestImageRun imports an OCI image and runs it as docker run would: its
// command, environment and working directory apply; arguments replace the
// command; --entrypoint replaces the entrypoint.
func TestImageRun(t *testing.T) {
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	dir := writeImage(t, v1.Config{
		Cmd:        []string{"/bin/sh", "-c", "echo \"$GREETING from $(pwd)\"; cat /etc/os-release"},
		Env:        []string{"PATH=/bin", "GREETING=hello"},
		WorkingDir: "/srv/app",
	}, busyboxLayer(t))
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "bbox", dir); r.code != 0 {
		t.Fatalf("import: %d %s", r.code, r.stderr)
	}
	tests := []struct {
		name string
		args []string
		out  string
		code int
	}{
		{"image defaults", []string{"bbox"}, "hello from /srv/app\nNAME=arrow-test\n", 0},
		{"args replace cmd", []string{"bbox", "/bin/echo", "replaced"}, "replaced\n", 0},
		{"env override", []string{"-e", "GREETING=hi", "bbox"}, "hi from /srv/app\nNAME=arrow-test\n", 0},
		{"workdir override", []string{"-w", "/tmp", "bbox", "/bin/pwd"}, "/tmp\n", 0},
		{"entrypoint", []string{"--entrypoint", "/bin/echo", "bbox", "via", "entrypoint"}, "via entrypoint\n", 0},
		{"exit status", []string{"bbox", "/bin/sh", "-c", "exit 4"}, "", 4},
		{"writable overlay", []string{"bbox", "/bin/sh", "-c", "echo x > /etc/new && cat /etc/new"}, "x\n", 0},
		{"read-only root", []string{"--read-only", "bbox", "/bin/sh", "-c", "touch /etc/new 2>/dev/null || echo refused; echo ok > /tmp/t; cat /tmp/t"}, "refused\nok\n", 0},
		{"not in the image", []string{"bbox", "/bin/nope"}, "", 127},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := arrow(t, "", append([]string{"--root", root, "run", "--kernel", kernel}, tt.args...)...)
			if r.code != tt.code || r.stdout != tt.out {
				t.Fatalf("exit %d stdout %q, want %d %q; stderr %s", r.code, r.stdout, tt.code, tt.out, r.stderr)
			}
		})
	}
	// The same through a spec file: image, args, env, volume.
	specDir := t.TempDir()
	specFile := filepath.Join(specDir, "arrow.yaml")
	if err := os.MkdirAll(filepath.Join(specDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "version: 1\nimage: bbox\nargs: [/bin/sh, -c, 'echo $GREETING > /data/out; sync; echo done']\nenv: {GREETING: from-spec}\nvolumes: [./data:/data]\nmemory: 192M\n"
	if err := os.WriteFile(specFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "-f", specFile); r.code != 0 || r.stdout != "done\n" {
		t.Fatalf("spec file run: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(specDir, "data", "out")); string(b) != "from-spec\n" {
		t.Errorf("spec file volume (relative to the file) got %q", b)
	}
	bad := filepath.Join(specDir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nimage: bbox\nmemroy: 1G\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := arrow(t, "", "--root", root, "run", "-f", bad); r.code != 125 || !strings.Contains(r.stderr, "bad.yaml:3") {
		t.Errorf("bad spec: %d %s", r.code, r.stderr)
	}

	// The image on disk was never changed by the overlay writes.
	r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "bbox", "/bin/sh", "-c", "ls /etc")
	if strings.Contains(r.stdout, "new") {
		t.Errorf("a write of an earlier run persisted: %q", r.stdout)
	}
}

// TestImageVolumes: data written and synced to a volume is on the host after
// the VM is gone; a read-only volume refuses writes, enforced by the host.
func TestImageVolumes(t *testing.T) {
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	dir := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}}, busyboxLayer(t))
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "bbox", dir); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	data, conf := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "app.conf"), []byte("setting=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "-v", data+":/data", "-v", conf+":/etc/app:ro", "bbox",
		"/bin/sh", "-c", "cat /etc/app/app.conf; echo saved > /data/out; sync; echo tamper > /etc/app/app.conf 2>/dev/null || echo ro-refused")
	if r.code != 0 || r.stdout != "setting=1\nro-refused\n" {
		t.Fatalf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(data, "out")); err != nil || string(b) != "saved\n" {
		t.Errorf("volume file: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "app.conf")); string(b) != "setting=1\n" {
		t.Errorf("read-only volume changed: %q", b)
	}
	// Volumes work for host programs too.
	r = arrow(t, "", "--root", root, "run", "--kernel", kernel, "-v", data+":/data", "/bin/cat", "/data/out")
	if r.code != 0 || r.stdout != "saved\n" {
		t.Errorf("host program with a volume: %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestImageDedupe: two images carrying the same files in different layer
// orders store them once, and du says so; rm and prune free them.
func TestImageDedupe(t *testing.T) {
	root := t.TempDir()
	big := func(seed byte) string { return strings.Repeat(string([]byte{'a' + seed}), 1<<20) }
	runtime := tarLayer(t, [][2]string{{"opt/", ""}, {"opt/runtime/", ""}, {"opt/runtime/lib1", big(1)}, {"opt/runtime/lib2", big(2)}})
	app := tarLayer(t, [][2]string{{"app/", ""}, {"app/main", big(3)}})
	one := writeImage(t, v1.Config{Cmd: []string{"/app/main"}}, runtime, app)
	two := writeImage(t, v1.Config{Cmd: []string{"/app/main"}, Env: []string{"X=1"}}, app, runtime)
	for name, dir := range map[string]string{"one": one, "two": two} {
		if r := arrow(t, "", "--root", root, "image", "import", "--name", name, dir); r.code != 0 {
			t.Fatalf("import %s: %s", name, r.stderr)
		}
	}
	r := arrow(t, "", "--root", root, "image", "du")
	if !strings.Contains(r.stdout, "images:      2") || !strings.Contains(r.stdout, "stored:      3.0 MiB") || !strings.Contains(r.stdout, "unshared:    6.0 MiB") {
		t.Fatalf("du:\n%s", r.stdout)
	}
	r = arrow(t, "", "--root", root, "image", "ls")
	if !strings.Contains(r.stdout, "one") || !strings.Contains(r.stdout, "two") {
		t.Fatalf("ls:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"image", "rm", "one", "two"}, {"image", "prune"}} {
		if r := arrow(t, "", append([]string{"--root", root}, args...)...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	r = arrow(t, "", "--root", root, "image", "du")
	if !strings.Contains(r.stdout, "images:      0") || !strings.Contains(r.stdout, "(0 files") {
		t.Fatalf("after rm and prune:\n%s", r.stdout)
	}
	if r := arrow(t, "", "--root", root, "image", "inspect", "one"); r.code == 0 {
		t.Errorf("a removed image is still there")
	}
}

// mustKernelRoot returns the path of Arrow's kernel, for runs with a data
// root of their own (which has no kernel of its own).
func mustKernelRoot(t *testing.T, _ string) string {
	t.Helper()
	r := arrow(t, "", "kernel", "path")
	if r.code != 0 {
		t.Fatalf("kernel path: %s", r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// usersLayer gives an image a user database.
func usersLayer(t *testing.T) v1.Layer {
	return tarLayer(t, [][2]string{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nbob:x:1001:100::/home/bob:/bin/sh\n"},
		{"etc/group", "root:x:0:\nwheel:x:10:root,app\nusers:x:100:app,bob\nstaff:x:50:\napp:x:1000:\n"},
	})
}

// TestImageUser: user and group names resolve in the image's own
// /etc/passwd and /etc/group, as docker run resolves them; HOME comes
// from /etc/passwd; an unknown name fails before anything is built.
func TestImageUser(t *testing.T) {
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	dir := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}, User: "app", Cmd: []string{"/bin/sh", "-c", `echo $(id -u) $(id -g) $(id -G) $HOME`}},
		busyboxLayer(t), usersLayer(t))
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "users", dir); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	// Unknown names first: nothing is built for them.
	for _, user := range []string{"mallory", "app:nogroup"} {
		r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "-u", user, "users")
		if r.code != 125 || !strings.Contains(r.stderr, "unknown user") || !strings.Contains(r.stderr, strings.TrimPrefix(user, "app:")) {
			t.Errorf("-u %s: exit %d, stderr %s", user, r.code, r.stderr)
		}
	}
	if disks, _ := filepath.Glob(filepath.Join(root, "rootfs", "*.erofs")); len(disks) != 0 {
		t.Errorf("a failed run left root disks: %v", disks)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".materialize-*")); len(left) != 0 {
		t.Errorf("a failed run left %v", left)
	}
	tests := []struct {
		name string
		args []string
		out  string
	}{
		{"image user by name", nil, "1000 1000 1000 10 100 /home/app\n"},
		{"--user name", []string{"-u", "bob"}, "1001 100 100 /home/bob\n"},
		{"--user name:group", []string{"-u", "app:staff"}, "1000 50 50 /home/app\n"},
		{"--user name:gid", []string{"-u", "bob:7"}, "1001 7 7 /home/bob\n"},
		{"--user uid:group", []string{"-u", "1234:staff"}, "1234 50 50 /\n"},
		{"--user uid with an entry", []string{"-u", "1001"}, "1001 100 100 /home/bob\n"},
		{"--user uid:gid", []string{"-u", "4321:4322"}, "4321 4322 4322 /\n"},
		{"--user root", []string{"-u", "root"}, "0 0 0 10 /root\n"},
		{"HOME from -e wins", []string{"-e", "HOME=/elsewhere"}, "1000 1000 1000 10 100 /elsewhere\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"--root", root, "run", "--kernel", kernel}, tt.args...), "users")
			r := arrow(t, "", args...)
			if r.code != 0 || r.stdout != tt.out {
				t.Fatalf("exit %d stdout %q, want %q; stderr %s", r.code, r.stdout, tt.out, r.stderr)
			}
		})
	}
	// A host program's user names are the host's: app is the image's
	// only.
	if r := arrow(t, "", "--root", root, "run", "--kernel", kernel, "-u", "app", "/bin/true"); r.code != 125 || !strings.Contains(r.stderr, `no user "app" in the host's /etc/passwd`) {
		t.Errorf("host program with a user name: %d %s", r.code, r.stderr)
	}
}

// TestImageSources: a spec file's image may be a path (an OCI layout, a
// tarball), imported on demand, or a registry reference, pulled when not
// in the store; `arrow run` takes a layout directory too. rm and prune
// take the root disks with the images.
func TestImageSources(t *testing.T) {
	root := t.TempDir()
	kernel := mustKernelRoot(t, root)
	layoutDir := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/echo", "from the layout"}}, busyboxLayer(t))
	specDir := t.TempDir()
	if err := os.Rename(layoutDir, filepath.Join(specDir, "layout")); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(specDir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"spec: relative layout path", []string{"-f", write("a.yaml", "version: 1\nimage: ./layout\n")}, 0, "from the layout\n", ""},
		{"spec: again, imported already", []string{"-f", write("b.yaml", "version: 1\nimage: oci:./layout\nargs: [/bin/echo, again]\n")}, 0, "again\n", ""},
		{"spec: missing path", []string{"-f", write("c.yaml", "version: 1\nimage: ./nope\n")}, 125, "", "no such file"},
		{"spec: unreachable registry", []string{"-f", write("d.yaml", "version: 1\nimage: 127.0.0.1:1/x:y\n")}, 125, "", "registry unreachable"},
		{"command line: layout directory", []string{filepath.Join(specDir, "layout"), "/bin/echo", "cli"}, 0, "cli\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := arrow(t, "", append([]string{"--root", root, "run", "--kernel", kernel}, tt.args...)...)
			if r.code != tt.code || r.stdout != tt.out || !strings.Contains(r.stderr, tt.err) {
				t.Fatalf("exit %d stdout %q stderr %q; want %d %q %q", r.code, r.stdout, r.stderr, tt.code, tt.out, tt.err)
			}
		})
	}
	// One image, stored once under its source's name; one root disk.
	r := arrow(t, "", "--root", root, "image", "ls")
	if n := strings.Count(r.stdout, "oci:"+filepath.Join(specDir, "layout")); n != 1 {
		t.Errorf("image ls:\n%s", r.stdout)
	}
	disks, _ := filepath.Glob(filepath.Join(root, "rootfs", "*.erofs"))
	if len(disks) != 1 {
		t.Fatalf("root disks %v, want one", disks)
	}
	// prune keeps the disk of a stored image; rm takes it.
	if r := arrow(t, "", "--root", root, "image", "prune"); r.code != 0 {
		t.Fatalf("prune: %s", r.stderr)
	}
	if _, err := os.Stat(disks[0]); err != nil {
		t.Fatalf("prune removed a stored image's disk: %v", err)
	}
	r = arrow(t, "", "--root", root, "image", "rm", "oci:"+filepath.Join(specDir, "layout"))
	if r.code != 0 || !strings.Contains(r.stdout, "removed 1 root disks") {
		t.Fatalf("rm: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(disks[0]); err == nil {
		t.Error("rm left the image's root disk")
	}
}
