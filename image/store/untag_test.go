package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestUntag: Untag takes names; with removeUnnamed, an image left without
// one goes, and an unknown name changes nothing.
func TestUntag(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a, err := s.Import(ctx, build(t, "a", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("a", "A"))}}), "a:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(ctx, a.ID, "a:2"); err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(ctx, build(t, "b", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("b", "B"))}}), "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names          []string
		remove         bool
		want           error
		changed, gone  int
		aNames, bNames []string // afterwards; nil when removed
	}{
		{[]string{"nope"}, true, ErrNotFound, 0, 0, []string{"a:2", "a:1"}, []string{"b"}},
		{[]string{"a:2", "x"}, true, nil, 1, 0, []string{"a:1"}, []string{"b"}},
		{[]string{"b"}, false, nil, 1, 0, []string{"a:1"}, []string{}},
		{[]string{"a:1"}, true, nil, 0, 1, nil, []string{}},
	} {
		changed, removed, err := s.Untag(ctx, tc.names, tc.remove)
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("Untag(%q): %v, want %v", tc.names, err, tc.want)
		}
		if len(changed) != tc.changed || len(removed) != tc.gone {
			t.Errorf("Untag(%q): changed %d removed %d, want %d %d", tc.names, len(changed), len(removed), tc.changed, tc.gone)
		}
		for id, want := range map[string][]string{a.ID: tc.aNames, b.ID: tc.bNames} {
			got, err := s.Get(ctx, id)
			switch {
			case want == nil && !errors.Is(err, ErrNotFound):
				t.Errorf("after Untag(%q): %s still there (%v)", tc.names, id[:12], err)
			case want != nil && (err != nil || !slices.Equal(got.Names, want) && len(got.Names)+len(want) > 0):
				t.Errorf("after Untag(%q): %s names %v (%v), want %v", tc.names, id[:12], got.Names, err, want)
			}
		}
	}
}

// TestConfigBlob: the config comes back as imported, history included.
func TestConfigBlob(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img, err := s.Import(ctx, build(t, "a", imageSpec{config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, layers: [][]byte{tartest.Tar(t, tartest.File("a", "A"))}}), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.ConfigBlob(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Cmd, []string{"/bin/sh"}) || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config %s", b)
	}
	img.ConfigDigest = digest.SHA256.FromString("not stored")
	if _, err := s.ConfigBlob(ctx, img); err == nil {
		t.Error("ConfigBlob read a blob the store does not have")
	}
}
