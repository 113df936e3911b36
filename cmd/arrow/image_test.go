package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/image/store"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestImportNamesFromLayout: `arrow image import` of a layout whose only
// manifest is tagged app:1 names the image app:1 (as ctr, podman load and
// skopeo do), not oci:/path; --name still wins; a layout without a name
// annotation is named after its directory. `image ls` then shows one row
// per name, as docker shows one per tag.
func TestImportNamesFromLayout(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	writeLayout := func(dir string, ann map[string]string) string {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", "amd64"
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		p, err := layout.Write(filepath.Join(base, dir), empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(base, dir)
	}
	tagged := writeLayout("tagged", map[string]string{ocispec.AnnotationRefName: "app:1"})
	plain := writeLayout("plain", nil)

	g := &globals{root: filepath.Join(base, "root")}
	open := func() (*store.Store, error) { return store.Open(g.imagesDir()) }
	cmd := newImageCmd(g)
	cmd.SetContext(ctx)
	tests := []struct {
		src, name, want string
	}{
		{tagged, "", "app:1"},
		{"oci:" + tagged, "", "app:1"},
		{tagged, "mine", "mine"},
		{plain, "", "oci:" + plain},
	}
	for _, tc := range tests {
		if err := importImage(cmd, open, tc.src, tc.name); err != nil {
			t.Fatalf("import %s: %v", tc.src, err)
		}
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, tc.want); err != nil {
			t.Errorf("import %s (--name %q): no image %q: %v", tc.src, tc.name, tc.want, err)
		}
	}
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeImageList(&out, imgs); err != nil {
		t.Fatal(err)
	}
	// Both layouts hold the same (empty) image: one ID, three names.
	rows := strings.Split(strings.TrimSpace(out.String()), "\n")[1:]
	var names, ids []string
	for _, r := range rows {
		f := strings.Fields(r)
		names, ids = append(names, f[0]), append(ids, f[1])
	}
	if len(rows) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("image ls:\n%s", out.String())
	}
	for _, n := range []string{"app:1", "mine", "oci:" + plain} {
		if !strings.Contains(strings.Join(names, " "), n) {
			t.Errorf("image ls has no row %s:\n%s", n, out.String())
		}
	}
}

// TestImageListUnnamed: an image without a name is one <none> row.
func TestImageListUnnamed(t *testing.T) {
	var out bytes.Buffer
	if err := writeImageList(&out, []store.Image{{ID: strings.Repeat("ab", 32)}}); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Split(strings.TrimSpace(out.String()), "\n"); len(rows) != 2 || !strings.HasPrefix(rows[1], "<none>  abababababab") {
		t.Errorf("image ls:\n%s", out.String())
	}
}
