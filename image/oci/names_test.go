package oci_test

import (
	"context"
	"slices"
	"testing"

	"github.com/arrowsys/arrow/image/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLayoutNames: the annotations of index.json name the image they lead
// to, as ctr, podman load and skopeo read them.
func TestLayoutNames(t *testing.T) {
	named := func(d v1.Descriptor, key, n string) v1.Descriptor {
		d.Annotations = map[string]string{key: n}
		return d
	}
	const ref = ocispec.AnnotationRefName
	tests := []struct {
		name string
		tops func(l *rawLayout) []v1.Descriptor
		tag  string
		want []string
	}{
		{"ref.name app:1", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{named(l.image("a"), ref, "app:1")}
		}, "", []string{"app:1"}},
		{"registry reference", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{named(l.image("a"), ref, "example.com:5000/team/app:1.2")}
		}, "", []string{"example.com:5000/team/app:1.2"}},
		{"containerd's name first", func(l *rawLayout) []v1.Descriptor {
			d := named(l.image("a"), ref, "1")
			d.Annotations["io.containerd.image.name"] = "docker.io/library/app:1"
			return []v1.Descriptor{d}
		}, "", []string{"docker.io/library/app:1"}},
		{"bare tag names nothing", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{named(l.image("a"), ref, "latest")}
		}, "", nil},
		{"no annotation", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{l.image("a")}
		}, "", nil},
		{"two tags of one image", func(l *rawLayout) []v1.Descriptor {
			d := l.image("a")
			return []v1.Descriptor{named(d, ref, "app:1"), named(d, ref, "app:latest")}
		}, "", []string{"app:1", "app:latest"}},
		{"the picked one of two", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{named(l.image("a"), ref, "app:1"), named(l.image("b"), ref, "app:2")}
		}, "2", []string{"app:2"}},
		{"through an index", func(l *rawLayout) []v1.Descriptor {
			img := l.image("a")
			img.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
			return []v1.Descriptor{named(l.index(img), ref, "multi:3")}
		}, "", []string{"multi:3"}},
		{"invalid name ignored", func(l *rawLayout) []v1.Descriptor {
			return []v1.Descriptor{named(l.image("a"), ref, "app:with space")}
		}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newRawLayout(t)
			dir := l.top(tc.tops(l)...)
			img, err := oci.FromLayout(context.Background(), dir, tc.tag, oci.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if got := img.Names(); !slices.Equal(got, tc.want) {
				t.Errorf("Names() = %q, want %q", got, tc.want)
			}
			if img.Reference() == "" {
				t.Error("no reference")
			}
		})
	}
}
