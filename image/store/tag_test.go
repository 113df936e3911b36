package store

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/arrowsys/arrow/internal/tartest"
)

// TestTag: Tag adds a name to a stored image, taking it from another.
func TestTag(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a, err := s.Import(ctx, build(t, "a", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("a", "A"))}}), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(ctx, build(t, "b", imageSpec{layers: [][]byte{tartest.Tar(t, tartest.File("b", "B"))}}), "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, name string
		want      error
		names     []string // a's names afterwards
	}{
		{a.ID, "app", nil, []string{"app", "a"}},
		{"a", "app:2", nil, []string{"app:2", "app", "a"}},
		{"nope", "x", ErrNotFound, []string{"app:2", "app", "a"}},
		{"a", "with space", ErrInvalidName, []string{"app:2", "app", "a"}},
	} {
		_, err := s.Tag(ctx, tc.ref, tc.name)
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("Tag(%q, %q): %v, want %v", tc.ref, tc.name, err, tc.want)
		}
		got, _ := s.Get(ctx, a.ID)
		if !slices.Equal(got.Names, tc.names) {
			t.Errorf("after Tag(%q, %q): names %v, want %v", tc.ref, tc.name, got.Names, tc.names)
		}
	}
	if got, _ := s.Get(ctx, b.ID); len(got.Names) != 0 {
		t.Errorf("b kept %v", got.Names)
	}
}
