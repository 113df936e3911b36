package e2e

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arrowsys/arrow/e2e/fixture"
)

// debianTree returns the cached Debian tree with python3, building it with
// debootstrap on the first run on this machine.
func debianTree(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := fixture.DebianPython(ctx, debLog{t})
	if errors.Is(err, fixture.ErrNoDebootstrap) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// debLog writes to the test's log.
type debLog struct{ t *testing.T }

func (l debLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// debianKernel is Arrow's kernel, for runs with a data root of their own.
func debianKernel(t *testing.T) string {
	t.Helper()
	r := arrow(t, "", "kernel", "path")
	if r.code != 0 {
		t.Fatalf("kernel path: %s", r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// debianLayer writes a layer of the tree's entries that keep selects.
func debianLayer(t *testing.T, tree string, keep func(string) bool) (v1.Layer, fixture.Stats) {
	t.Helper()
	l, st, err := fixture.Layer(tree, filepath.Join(t.TempDir(), "layer.tar"), keep)
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

// debFileLayer is a layer holding one regular file (and its directories).
func debFileLayer(t *testing.T, rel, content string) v1.Layer {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	l, _, err := fixture.Layer(dir, filepath.Join(t.TempDir(), "layer.tar"), func(r string) bool { return r == rel })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func debianImage(t *testing.T, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := fixture.Image(cfg, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// debLayoutDir writes an OCI image layout directory holding img.
func debLayoutDir(t *testing.T, img v1.Image) string {
	t.Helper()
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

// debDockerArchive writes img as `docker save` would, tagged tag.
func debDockerArchive(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		t.Fatal(err)
	}
	return file
}

// debOCIArchive writes img as an OCI archive: a tarball of a layout.
func debOCIArchive(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := debLayoutDir(t, img)
	file := filepath.Join(t.TempDir(), "image-oci.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// debImport imports src into the store under root as name.
func debImport(t *testing.T, root, name, src string) {
	t.Helper()
	if r := arrow(t, "", "--root", root, "image", "import", "--name", name, src); r.code != 0 {
		t.Fatalf("import %s from %s: exit %d: %s", name, src, r.code, r.stderr)
	}
}

// debUsage is what `arrow image du` says, in bytes (to its 0.1 unit
// precision).
type debUsage struct{ images, stored, unshared int64 }

var debDULine = regexp.MustCompile(`(?m)^(images|stored|unshared):\s+([0-9.]+)(?: (B|KiB|MiB|GiB))?`)

func debDU(t *testing.T, root string) debUsage {
	t.Helper()
	r := arrow(t, "", "--root", root, "image", "du")
	if r.code != 0 {
		t.Fatalf("du: %s", r.stderr)
	}
	var u debUsage
	seen := 0
	for _, m := range debDULine.FindAllStringSubmatch(r.stdout, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("du: %q: %v", m[0], err)
		}
		v *= map[string]float64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[3]]
		switch m[1] {
		case "images":
			u.images = int64(v)
		case "stored":
			u.stored = int64(v)
		case "unshared":
			u.unshared = int64(v)
		}
		seen++
	}
	if seen != 3 {
		t.Fatalf("du: cannot parse:\n%s", r.stdout)
	}
	t.Logf("arrow image du:\n%s", r.stdout)
	return u
}

// debImageSize is the size of an image's regular files, from its record.
func debImageSize(t *testing.T, root, image string) int64 {
	t.Helper()
	r := arrow(t, "", "--root", root, "image", "inspect", image)
	if r.code != 0 {
		t.Fatalf("inspect %s: %s", image, r.stderr)
	}
	m := regexp.MustCompile(`(?m)^  "size": (\d+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("inspect %s: no size:\n%s", image, r.stdout)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

const debMiB = 1 << 20
