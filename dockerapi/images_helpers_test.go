package dockerapi

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/tartest"
)

// imgCreated is when the test images were built.
var imgBuilt = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// imgTestImage builds an image of one layer per file (path and content),
// with cfg as its run config and a history entry per layer, the last
// one beside an empty-layer entry, as a Dockerfile's ENV makes.
func imgTestImage(t testing.TB, cfg v1.Config, files ...[2]string) v1.Image {
	t.Helper()
	img := empty.Image
	for i, f := range files {
		b := tartest.Tar(t, tartest.File(f[0], f[1]))
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
			CreatedBy: "COPY " + f[0], Created: v1.Time{Time: imgBuilt.Add(time.Duration(i) * time.Minute)},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: imgBuilt}
	cf.Author = "tester"
	cf.Config = cfg
	cf.History = append(cf.History, v1.History{CreatedBy: "ENV X=1", EmptyLayer: true, Created: v1.Time{Time: imgBuilt.Add(time.Hour)}})
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imgDockerSave writes images as `docker save` does, each under its tags.
func imgDockerSave(t testing.TB, images map[string]v1.Image) []byte {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for tag, img := range images {
		r, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[r] = img
	}
	var buf bytes.Buffer
	if err := tarball.MultiRefWrite(refs, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imgOCIArchive writes img as an OCI archive whose index entry carries
// annotations.
func imgOCIArchive(t testing.TB, annotations map[string]string, imgs ...v1.Image) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if err := p.AppendImage(img, layout.WithAnnotations(annotations)); err != nil {
			t.Fatal(err)
		}
	}
	return imgTarDir(t, dir)
}

// imgTarDir is a tar of the tree under dir.
func imgTarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imgServer is a Server over f with a real image store in a temporary
// data root.
func imgServer(t testing.TB, f *netFake) (*Server, *store.Store, string) {
	t.Helper()
	root := t.TempDir()
	st, err := store.Open(filepath.Join(root, "images"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: f, Version: "test", Root: root, Images: func() (*store.Store, error) { return st, nil }})
	return s, st, root
}

// imgScratchLeft lists load scratch directories left in root.
func imgScratchLeft(t testing.TB, root string) []string {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(root, loadScratchPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return left
}
