package oci_test

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/tartest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// newLayer makes a layer of ents; ggcr compresses it (gzip unless opts
// say otherwise).
func newLayer(t testing.TB, ents []tartest.Entry, opts ...tarball.LayerOption) v1.Layer {
	t.Helper()
	b := tartest.Tar(t, ents...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// newImage makes an OCI image of layers for arch, with a run config.
func newImage(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: tartest.Time}
	cf.Config = v1.Config{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "echo hi"}, Env: []string{"PATH=/bin"},
		WorkingDir: "/", ExposedPorts: map[string]struct{}{"80/tcp": {}}, Labels: map[string]string{"arch": arch}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
