package dockerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/arrowsys/arrow/internal/tartest"
)

// FuzzPlanLoad: whatever manifest.json and index.json an archive holds,
// planning its load fails cleanly or names at most maxLoadImages images,
// each by names the store accepts in their familiar form.
func FuzzPlanLoad(f *testing.F) {
	f.Add([]byte(`[{"Config":"c.json","RepoTags":["busybox:latest","docker.io/x/y:1"],"Layers":["l.tar"]}]`), []byte(nil), false)
	f.Add([]byte(`[{"Config":"c.json"},{"Config":"d.json","RepoTags":["b:2"]}]`), []byte(nil), false)
	f.Add([]byte(nil), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:00","size":1,"annotations":{"io.containerd.image.name":"docker.io/library/a:1","org.opencontainers.image.ref.name":"1"}}]}`), true)
	f.Add([]byte(nil), []byte(`{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"latest"}},{"annotations":{"org.opencontainers.image.ref.name":"Bad:1"}}]}`), true)
	f.Add([]byte(`{}`), []byte(`[]`), true)
	f.Fuzz(func(t *testing.T, manifest, index []byte, layout bool) {
		var ents []tartest.Entry
		if manifest != nil {
			ents = append(ents, tartest.File("manifest.json", string(manifest)))
		}
		if index != nil {
			ents = append(ents, tartest.File("index.json", string(index)))
		}
		if layout {
			ents = append(ents, tartest.File("oci-layout", `{"imageLayoutVersion":"1.0.0"}`))
		}
		plan, err := planLoad(context.Background(), bytes.NewReader(tartest.Tar(t, ents...)))
		if err != nil {
			return
		}
		if len(plan.entries) == 0 || len(plan.entries) > maxLoadImages {
			t.Fatalf("%d entries", len(plan.entries))
		}
		for _, e := range plan.entries {
			for _, n := range e.names {
				if f, ok := imgFamiliar(n); !ok || f != n {
					t.Fatalf("name %q is not familiar (%q)", n, f)
				}
			}
			if len(e.names) > 0 && e.tag == "" {
				t.Fatalf("entry %+v: named but not selectable", e)
			}
		}
	})
}

// FuzzImageLoad loads arbitrary bodies as POST /images/load does (with a
// bound of 1 MiB rather than the handler's 16 GiB, which a small
// compressed body can reach): the answer is an error or a stream, and
// every image stored is reported in the stream.
func FuzzImageLoad(f *testing.F) {
	img := imgTestImage(f, v1.Config{Cmd: []string{"/x"}}, [2]string{"x", "x"})
	f.Add(imgDockerSave(f, map[string]v1.Image{"a:1": img}))
	f.Add(imgOCIArchive(f, map[string]string{"io.containerd.image.name": "b:2"}, img))
	f.Add(tarOf(f, map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l.tar"]}]`, "c.json": `{"rootfs":{"diff_ids":[]}}`}))
	f.Add(tarOf(f, map[string]string{"oci-layout": `{}`, "index.json": `{"manifests":[]}`}))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Add([]byte(nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, st, root := imgServer(t, newNetFake())
		scratch, err := newLoadScratch(root)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		p := newProgressStream(rec)
		if code, err := loadImages(context.Background(), st, bytes.NewReader(body), scratch, 1<<20, p); err != nil {
			if code == http.StatusOK {
				t.Fatalf("error %v with status 200", err)
			}
			p.fail(code, err)
		}
		imgs, err := st.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK {
			if len(imgs) > 0 {
				t.Fatalf("status %d, yet %d images stored", rec.Code, len(imgs))
			}
			var e struct{ Message string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Message == "" {
				t.Fatalf("status %d without a message: %s", rec.Code, rec.Body.Bytes())
			}
			return
		}
		loaded := 0
		dec := json.NewDecoder(rec.Body)
		for {
			var m progressMessage
			if err := dec.Decode(&m); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("stream: %v", err)
			}
			if m.Stream != "" {
				loaded++
			}
		}
		if len(imgs) > loaded {
			t.Fatalf("%d images stored, %d reported", len(imgs), loaded)
		}
	})
}
