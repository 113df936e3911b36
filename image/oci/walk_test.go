package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// mapDocs is a docSource whose documents are named, not content
// addressed: in a layout a digest check makes a cycle impossible to write,
// but the walker must refuse one on its own, whatever its source.
type mapDocs struct {
	docs  map[v1.Hash][]byte
	reads map[v1.Hash]int
}

func (m *mapDocs) read(_ context.Context, d v1.Descriptor) ([]byte, error) {
	b, ok := m.docs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: no such document", d.Digest)
	}
	m.reads[d.Digest]++
	return b, nil
}

// docName is a fake digest for document n.
func docName(n int) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", n)}
}

func indexDoc(t *testing.T, children ...v1.Descriptor) []byte {
	t.Helper()
	b, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: children})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func indexRef(n int) v1.Descriptor {
	return v1.Descriptor{MediaType: types.OCIImageIndex, Digest: docName(n)}
}

// TestWalkerCycles walks indexes that refer to themselves, directly or
// round a loop, and ones that share children (which is no cycle).
func TestWalkerCycles(t *testing.T) {
	amd := &v1.Platform{OS: "linux", Architecture: "amd64"}
	image := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: docName(100), Platform: amd}
	manifest := []byte(`{"schemaVersion":2,"config":{"digest":"` + docName(101).String() + `"},"layers":[]}`)
	tests := []struct {
		name    string
		docs    map[int][]v1.Descriptor // index n lists these
		wantErr string
	}{
		{"self", map[int][]v1.Descriptor{1: {indexRef(1)}}, "index cycle"},
		{"self after an image", map[int][]v1.Descriptor{1: {image, indexRef(1)}}, "index cycle"},
		{"cycle of two", map[int][]v1.Descriptor{1: {indexRef(2)}, 2: {indexRef(1)}}, "index cycle"},
		{"cycle of three", map[int][]v1.Descriptor{1: {indexRef(2)}, 2: {indexRef(3)}, 3: {image, indexRef(1)}}, "index cycle"},
		{"shared child", map[int][]v1.Descriptor{1: {indexRef(2), indexRef(3)}, 2: {indexRef(3)}, 3: {image}}, ""},
		{"child listed twice", map[int][]v1.Descriptor{1: {indexRef(2), indexRef(2), image}, 2: {image}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &mapDocs{docs: map[v1.Hash][]byte{docName(100): manifest}, reads: map[v1.Hash]int{}}
			for n, children := range tc.docs {
				src.docs[docName(n)] = indexDoc(t, children...)
			}
			w := newWalker(src, *amd)
			li, err := w.pick(context.Background(), []v1.Descriptor{indexRef(1)}, 0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errIndexCycle) {
					t.Fatalf("pick = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if li.desc.Digest != image.Digest {
				t.Fatalf("picked %s", li.desc.Digest)
			}
			for h, n := range src.reads {
				if n != 1 {
					t.Errorf("%s read %d times", h, n)
				}
			}
		})
	}
}

// TestWalkerBudget: an index fanning out to more documents than
// maxDocuments stops at the budget, with an error saying so, having read
// no more than the budget.
func TestWalkerBudget(t *testing.T) {
	src := &mapDocs{docs: map[v1.Hash][]byte{}, reads: map[v1.Hash]int{}}
	var children []v1.Descriptor
	for n := 2; n < 2+2*maxDocuments; n++ {
		src.docs[docName(n)] = indexDoc(t)
		children = append(children, indexRef(n))
	}
	src.docs[docName(1)] = indexDoc(t, children...)
	w := newWalker(src, v1.Platform{OS: "linux", Architecture: "amd64"})
	_, err := w.pick(context.Background(), []v1.Descriptor{indexRef(1)}, 0)
	if !errors.Is(err, errBudget) {
		t.Fatalf("pick = %v, want the budget error", err)
	}
	total := 0
	for _, n := range src.reads {
		total += n
	}
	if total > maxDocuments {
		t.Fatalf("read %d documents, budget %d", total, maxDocuments)
	}
}

// TestParseDockerManifest checks the shape rules of manifest.json.
func TestParseDockerManifest(t *testing.T) {
	many := func(n int, s string) string { return `"` + strings.Repeat(s+`","`, n-1) + s + `"` }
	tests := []struct{ name, raw, wantErr string }{
		{"ok", `[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l/layer.tar"]}]`, ""},
		{"empty", `[]`, "no image"},
		{"not a list", `{"Config":"c.json"}`, "cannot unmarshal"},
		{"no config", `[{"Layers":["l"]}]`, "empty member name"},
		{"absolute config", `[{"Config":"/etc/passwd"}]`, "leaves the archive"},
		{"dotdot layer", `[{"Config":"c","Layers":["a/../../x"]}]`, "leaves the archive"},
		{"nul", `[{"Config":"c\u0000x"}]`, "bad member name"},
		{"too many layers", `[{"Config":"c","Layers":[` + many(maxDockerLayers+1, "l") + `]}]`, "more than"},
		{"too many images", `[` + strings.Repeat(`{"Config":"c"},`, maxDockerImages) + `{"Config":"c"}]`, "more than"},
		{"trailing garbage", `[{"Config":"c"}] x`, "invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseDockerManifest([]byte(tc.raw))
			if tc.wantErr == "" {
				if err != nil || len(m) != 1 || m[0].Config != "c.json" {
					t.Fatalf("parse = %+v, %v", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("parse error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
