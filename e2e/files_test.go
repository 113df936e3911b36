package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// nobody is the unprivileged user that plays the attacker.
const nobody = 65534

// readableBy returns which of paths the user uid can read (regular files
// and symlinks, with cat) or list (directories, with ls). The user runs a
// shell of its own: the kernel, not the test, judges what it may do.
func readableBy(t *testing.T, uid uint32, paths []string) []string {
	t.Helper()
	const script = `while IFS= read -r p; do
	if [ -d "$p" ]; then ls -- "$p" >/dev/null 2>&1 && echo "$p"
	else cat -- "$p" >/dev/null 2>&1 </dev/null && echo "$p"; fi
done
exit 0`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(strings.Join(paths, "\n") + "\n")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("walk as uid %d: %v\n%s", uid, err, errb.String())
	}
	return strings.Fields(out.String())
}

// dataRootEntries lists, as root, the directories, regular files and
// symlinks under root (not following symlinks): everything an attacker
// could try to open. Sockets and FIFOs are left out: opening them is not
// reading a file, and a FIFO would block.
func dataRootEntries(t *testing.T, root string) (paths []string, files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir(), d.Type()&fs.ModeSymlink != 0:
		case d.Type().IsRegular():
			files++
		default:
			return nil
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths, files
}

// openTo makes dir and its parents enterable by everyone, so that only the
// data root's own mode stands between the attacker and its files.
func openTo(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecurityFiles: after an arrow run of a host program with an included
// file, of an image, and of a detached arrow through arrowd, an
// unprivileged user walking the data roots reads nothing: no disk,
// archive, log, image file or included secret. Within the roots the files
// themselves are the owner's only too, so an administrator who opens a
// data root up by mistake still exposes nothing. The guest kernel, which
// every user boots, stays readable by all.
func TestSecurityFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestSecurityFiles plays an unprivileged user: run it as root")
	}
	base := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	openTo(t, base)
	root := filepath.Join(base, "arrow") // created by arrow, not by the test

	secret := filepath.Join(base, "secret.txt")
	if err := os.WriteFile(secret, []byte("secret-include\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := arrow(t, "", "--root", root, "run", "--include", secret, "/bin/cat", secret); r.code != 0 || r.stdout != "secret-include\n" {
		t.Fatalf("run of a host program: exit %d, stdout %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	img := writeImage(t, v1.Config{Env: []string{"PATH=/bin"}}, busyboxLayer(t))
	if r := arrow(t, "", "--root", root, "image", "import", "--name", "bbox", img); r.code != 0 {
		t.Fatalf("image import: %s", r.stderr)
	}
	if r := arrow(t, "", "--root", root, "run", "bbox", "/bin/cat", "/etc/os-release"); r.code != 0 || r.stdout != "NAME=arrow-test\n" {
		t.Fatalf("run of an image: exit %d, stdout %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// The data root has no kernel: it boots the machine's, readable by all.
	kernelPath := strings.TrimSpace(arrow(t, "", "--root", root, "kernel", "path").stdout)

	// Through arrowd: a detached arrow leaves its log and state behind.
	d := startDaemon(t)
	openTo(t, d.root) // as an administrator might have left it
	d.must("run", "-d", "--name", "logged", "/bin/echo", "secret-log")
	d.must("wait", "logged")
	if out := d.must("logs", "logged"); out != "secret-log\n" {
		t.Fatalf("logs: %q", out)
	}

	for _, dir := range []string{root, d.root} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("data root %s: mode %v, want 0700", dir, fi.Mode().Perm())
		}
	}
	paths, files := dataRootEntries(t, root)
	more, moreFiles := dataRootEntries(t, d.root)
	paths, files = append(paths, more...), files+moreFiles
	if files < 5 {
		t.Fatalf("the data roots hold %d files: the runs left too little to check\n%s", files, strings.Join(paths, "\n"))
	}

	t.Logf("%d paths, %d of them files, in the data roots", len(paths), files)

	// The attacker, with the check's own control: the kernel is readable,
	// so a walk that reads nothing is the data roots' doing.
	got := readableBy(t, nobody, append([]string{kernelPath}, paths...))
	if len(got) == 0 || got[0] != kernelPath {
		t.Fatalf("uid %d cannot read the guest kernel %s: the check proves nothing (read %q)", nobody, kernelPath, got)
	}
	if len(got) > 1 {
		t.Errorf("uid %d reads %d paths in the data roots:\n%s", nobody, len(got)-1, strings.Join(got[1:], "\n"))
	}

	// Defense in depth: with the data roots opened up, their caches,
	// disks, archives and logs still give nothing away.
	for _, dir := range []string{root, d.root} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var private []string // what the files part of the issue makes 0700/0600
	for _, p := range paths {
		rel := p
		for _, dir := range []string{root, d.root} {
			if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
				rel = r
			}
		}
		top := strings.Split(rel, string(filepath.Separator))[0]
		switch {
		case top == "rootfs", top == "initramfs", top == "images", top == "kernels",
			rel == "arrowd.log", strings.HasSuffix(rel, ".log"):
			private = append(private, p)
		}
	}
	if len(private) < 3 {
		t.Fatalf("found only %d cache, image and log paths: %q", len(private), private)
	}
	for _, p := range readableBy(t, nobody, private) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			continue // the test daemon's links to the machine's shared caches
		}
		t.Errorf("with the data root opened up, uid %d reads %s", nobody, p)
	}
}
