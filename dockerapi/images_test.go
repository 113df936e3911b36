package dockerapi

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/internal/tartest"
)

// imgStream decodes a JSON message stream: its output lines and errors
// (both of errorDetail and of the legacy error field).
func imgStream(t *testing.T, body []byte) (lines, errs []string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var m progressMessage
		if err := dec.Decode(&m); err == io.EOF {
			return lines, errs
		} else if err != nil {
			t.Fatalf("stream %s: %v", body, err)
		}
		if m.Stream != "" {
			lines = append(lines, strings.TrimSuffix(m.Stream, "\n"))
		}
		if m.Status != "" {
			lines = append(lines, m.Status)
		}
		if m.Error != nil {
			if m.ErrorMessage != m.Error.Message {
				t.Errorf("error %q, errorDetail %q: want both", m.ErrorMessage, m.Error.Message)
			}
			errs = append(errs, m.Error.Message)
		}
	}
}

func imgList(t *testing.T, s *Server, query string) []image.Summary {
	t.Helper()
	code, body := netDo(t, s, "GET", "/images/json"+query, nil)
	if code != http.StatusOK {
		t.Fatalf("list %s: %d %s", query, code, body)
	}
	var out []image.Summary
	netDecode(t, body, &out)
	return out
}

func imgTagsOf(list []image.Summary) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.RepoTags...)
		if len(s.RepoTags) == 0 {
			out = append(out, "<none>")
		}
	}
	slices.Sort(out)
	return out
}

var imgRunConfig = v1.Config{
	Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "MODE=test"},
	WorkingDir: "/srv", User: "www-data", ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	Labels: map[string]string{"org.example.role": "web"},
}

func TestImageLoadDockerSave(t *testing.T) {
	s, _, root := imgServer(t, newNetFake())
	web := imgTestImage(t, imgRunConfig, [2]string{"bin/app", "web"}, [2]string{"srv/index.html", "hi"})
	db := imgTestImage(t, v1.Config{Cmd: []string{"/bin/db"}}, [2]string{"bin/db", "db"})
	archive := imgDockerSave(t, map[string]v1.Image{"example.com/web:1": web, "web:latest": web, "docker.io/library/db:2": db})

	code, body := netDo(t, s, "POST", "/v1.50/images/load?quiet=0", archive)
	lines, errs := imgStream(t, body)
	slices.Sort(lines)
	if code != http.StatusOK || len(errs) > 0 || !slices.Equal(lines, []string{"Loaded image: db:2", "Loaded image: example.com/web:1", "Loaded image: web:latest"}) {
		t.Fatalf("load: %d %q %q", code, lines, errs)
	}
	if left := imgScratchLeft(t, root); len(left) > 0 {
		t.Errorf("load left %v", left)
	}
	if got := imgTagsOf(imgList(t, s, "")); !slices.Equal(got, []string{"db:2", "example.com/web:1", "web:latest"}) {
		t.Errorf("list: %q", got)
	}

	// Inspect, by the short name and the full one.
	webID, _ := web.ConfigName()
	for _, ref := range []string{"web", "docker.io/library/web:latest", "example.com/web:1", webID.Hex[:12], "sha256:" + webID.Hex} {
		code, body := netDo(t, s, "GET", "/images/"+ref+"/json", nil)
		if code != http.StatusOK {
			t.Fatalf("inspect %s: %d %s", ref, code, body)
		}
		var in image.InspectResponse
		netDecode(t, body, &in)
		c := in.Config
		slices.Sort(in.RepoTags)
		switch {
		case in.ID != "sha256:"+webID.Hex, !slices.Equal(in.RepoTags, []string{"example.com/web:1", "web:latest"}),
			in.Os != "linux", in.Architecture != "amd64", in.Author != "tester", !strings.HasPrefix(in.Created, "2024-05-06T07:08:09"),
			len(in.RootFS.Layers) != 2, in.RootFS.Type != "layers", in.Size != int64(len("web")+len("hi")),
			c == nil, !slices.Equal(c.Entrypoint, imgRunConfig.Entrypoint), !slices.Equal(c.Cmd, imgRunConfig.Cmd),
			!slices.Equal(c.Env, imgRunConfig.Env), c.WorkingDir != "/srv", c.User != "www-data",
			c.Labels["org.example.role"] != "web":
			t.Errorf("inspect %s: %s", ref, body)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("inspect %s: ExposedPorts %v", ref, c.ExposedPorts)
		}
	}
	if code, body := netDo(t, s, "GET", "/images/nope/json", nil); code != http.StatusNotFound || !strings.Contains(string(body), "No such image: nope") {
		t.Errorf("inspect missing: %d %s", code, body)
	}

	// History: newest first, the newest with the ID and tags.
	code, body = netDo(t, s, "GET", "/images/web/history", nil)
	var hist []image.HistoryResponseItem
	netDecode(t, body, &hist)
	if code != http.StatusOK || len(hist) != 3 || hist[0].CreatedBy != "ENV X=1" || hist[0].ID != "sha256:"+webID.Hex || hist[0].Size != 0 ||
		hist[2].CreatedBy != "COPY bin/app" || hist[2].ID != "<missing>" || hist[2].Size == 0 || len(hist[0].Tags) != 2 {
		t.Errorf("history: %d %s", code, body)
	}

	// Filters.
	for _, tc := range []struct {
		filters map[string][]string
		want    []string
	}{
		{map[string][]string{"reference": {"web"}}, []string{"web:latest"}},
		{map[string][]string{"reference": {"*/web:*"}}, []string{"example.com/web:1"}},
		{map[string][]string{"reference": {"db"}}, []string{"db:2"}},
		{map[string][]string{"label": {"org.example.role=web"}}, []string{"example.com/web:1", "web:latest"}},
		{map[string][]string{"dangling": {"true"}}, nil},
		{map[string][]string{"before": {"web"}}, nil},
	} {
		if got := imgTagsOf(imgList(t, s, "?filters="+netFilters(tc.filters))); !slices.Equal(got, tc.want) {
			t.Errorf("list %v: %q, want %q", tc.filters, got, tc.want)
		}
	}
	if code, _ := netDo(t, s, "GET", "/images/json?filters="+netFilters(map[string][]string{"colour": {"x"}}), nil); code != http.StatusBadRequest {
		t.Errorf("unknown filter: %d", code)
	}
}

func TestImageLoadOCIAndCompressed(t *testing.T) {
	s, st, root := imgServer(t, newNetFake())
	img := imgTestImage(t, v1.Config{Cmd: []string{"/x"}}, [2]string{"x", "x"})
	id, _ := img.ConfigName()
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"containerd name", imgOCIArchive(t, map[string]string{"io.containerd.image.name": "docker.io/library/oci:1", "org.opencontainers.image.ref.name": "1"}, img), "Loaded image: oci:1"},
		{"ref.name", imgOCIArchive(t, map[string]string{"org.opencontainers.image.ref.name": "example.com/oci:2"}, img), "Loaded image: example.com/oci:2"},
		{"bare tag: no name", imgOCIArchive(t, map[string]string{"org.opencontainers.image.ref.name": "latest"}, imgTestImage(t, v1.Config{}, [2]string{"y", "y"})), "Loaded image ID: sha256:"},
		{"gzip docker save", imgGzip(t, imgDockerSave(t, map[string]v1.Image{"gz:1": img})), "Loaded image: gz:1"},
		{"docker 25 save: OCI layout and manifest.json", imgDocker25Save(t, img, "d25:1"), "Loaded image: d25:1"},
	} {
		code, body := netDo(t, s, "POST", "/images/load", tc.archive)
		lines, errs := imgStream(t, body)
		if code != http.StatusOK || len(errs) > 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("%s: %d %q %q, want %q", tc.name, code, lines, errs, tc.want)
		}
	}
	// Named and unnamed images in one index: the named one loads, and
	// the stream says what did not.
	code, body := netDo(t, s, "POST", "/images/load", imgOCIArchiveMixed(t, img))
	lines, errs := imgStream(t, body)
	if code != http.StatusOK || len(errs) > 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Not loaded: index.json entries [1]") || lines[1] != "Loaded image: mixed:1" {
		t.Errorf("mixed: %d %q %q", code, lines, errs)
	}
	got, err := st.Get(context.Background(), id.Hex)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.Names)
	if !slices.Equal(got.Names, []string{"d25:1", "example.com/oci:2", "gz:1", "mixed:1", "oci:1"}) {
		t.Errorf("names %q", got.Names)
	}
	// The untagged image is stored without a name: dangling.
	if d := imgList(t, s, "?filters="+netFilters(map[string][]string{"dangling": {"true"}})); len(d) != 1 || len(d[0].RepoTags) != 0 {
		t.Errorf("dangling: %+v", d)
	}
	if left := imgScratchLeft(t, root); len(left) > 0 {
		t.Errorf("load left %v", left)
	}
}

// imgOCIArchiveMixed is an OCI archive of img, named mixed:1, and of
// another image without a name.
func imgOCIArchiveMixed(t *testing.T, img v1.Image) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": "mixed:1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(imgTestImage(t, v1.Config{}, [2]string{"z", "z"})); err != nil {
		t.Fatal(err)
	}
	return imgTarDir(t, dir)
}

// imgDocker25Save is an archive as docker save writes it since Docker 25:
// an OCI layout, and a manifest.json that names its blobs.
func imgDocker25Save(t *testing.T, img v1.Image, tag string) []byte {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	m := []map[string]any{{"Config": "blobs/sha256/" + cfg.Hex, "RepoTags": []string{tag}, "Layers": []string{}}}
	for _, l := range layers {
		d, _ := l.Digest()
		m[0]["Layers"] = append(m[0]["Layers"].([]string), "blobs/sha256/"+d.Hex)
	}
	mj, _ := json.Marshal(m)
	oci := imgOCIArchive(t, map[string]string{"io.containerd.image.name": "docker.io/library/" + tag}, img)
	// Append manifest.json to the tar: drop its end marker, add the member.
	tr := tar.NewReader(bytes.NewReader(oci))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(mj)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(mj)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func imgGzip(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImageLoadRefused(t *testing.T) {
	s, st, root := imgServer(t, newNetFake())
	a := imgTestImage(t, v1.Config{}, [2]string{"a", "a"})
	b := imgTestImage(t, v1.Config{}, [2]string{"b", "b"})
	untaggedTwo := imgDockerSave(t, map[string]v1.Image{"a:1": a, "b:1": b})
	untaggedTwo = bytes.ReplaceAll(untaggedTwo, []byte(`"RepoTags":["a:1"]`), []byte(`"RepoTags":[     ]`))
	badTag := bytes.ReplaceAll(imgDockerSave(t, map[string]v1.Image{"a:1": a}), []byte(`"a:1"`), []byte(`"A:1"`))
	for _, tc := range []struct {
		name string
		body []byte
		code int
		says string
	}{
		{"empty", nil, http.StatusBadRequest, "empty"},
		{"not a tar", []byte("hello, this is no archive at all, but it is long enough to be read as one........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"), http.StatusBadRequest, "invalid image archive"},
		{"tar of nothing", tarOf(t, map[string]string{"etc/passwd": "root"}), http.StatusBadRequest, "neither a docker save tarball"},
		{"manifest not JSON", tarOf(t, map[string]string{"manifest.json": "{"}), http.StatusBadRequest, "manifest.json"},
		{"no images", tarOf(t, map[string]string{"manifest.json": "[]"}), http.StatusBadRequest, "lists no image"},
		{"untagged among two", untaggedTwo, http.StatusBadRequest, "no RepoTags"},
		{"bad tag", badTag, http.StatusBadRequest, "A:1"},
		{"missing layers", tarOf(t, map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l.tar"]}]`}), http.StatusBadRequest, "not in the archive"},
		{"corrupt gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3}, http.StatusBadRequest, "invalid image archive"},
		{"layer unlike its diff_id", tarOf(t, map[string]string{
			"manifest.json": `[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l.tar"]}]`,
			"c.json":        `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`,
			"l.tar":         string(tartest.Tar(t, tartest.File("f", "x"))),
		}), http.StatusBadRequest, "digest"},
	} {
		code, body := netDo(t, s, "POST", "/images/load", tc.body)
		if code == http.StatusOK {
			// Refused once the stream started: an error in it.
			_, errs := imgStream(t, body)
			if tc.code != http.StatusOK || len(errs) != 1 || !strings.Contains(errs[0], tc.says) {
				t.Errorf("%s: 200 with %s, want %d saying %q", tc.name, body, tc.code, tc.says)
			}
			continue
		}
		if code != tc.code || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, code, body, tc.code, tc.says)
		}
	}
	// Over the bound: 413, and nothing kept.
	scratch, err := newLoadScratch(root)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	code, err := loadImages(context.Background(), st, bytes.NewReader(imgDockerSave(t, map[string]v1.Image{"a:1": a})), scratch, 1024, newProgressStream(rec))
	if code != http.StatusRequestEntityTooLarge || err == nil || !strings.Contains(err.Error(), "more than 1024 bytes") {
		t.Errorf("over the bound: %d %v", code, err)
	}
	// A body larger than the bound that decompresses to little (empty
	// gzip members): bounded too.
	empty := imgGzip(t, nil)
	os.RemoveAll(scratch)
	scratch, _ = newLoadScratch(root)
	rec = httptest.NewRecorder()
	code, err = loadImages(context.Background(), st, bytes.NewReader(bytes.Repeat(empty, 2048/len(empty)+1)), scratch, 1024, newProgressStream(rec))
	if code != http.StatusRequestEntityTooLarge || err == nil {
		t.Errorf("empty gzip members over the bound: %d %v", code, err)
	}
	// Exactly at the bound: not too large (an empty archive, so 400).
	os.RemoveAll(scratch)
	scratch, _ = newLoadScratch(root)
	exact := bytes.Repeat(empty, 10)
	code, err = loadImages(context.Background(), st, bytes.NewReader(exact), scratch, int64(len(exact)), newProgressStream(httptest.NewRecorder()))
	if code != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty gzip members at the bound: %d %v", code, err)
	}
	if imgs, _ := st.List(context.Background()); len(imgs) != 0 {
		t.Errorf("refused loads stored %d images", len(imgs))
	}
}

// tarOf is a tar of files (name: content), in name order.
func tarOf(t testing.TB, files map[string]string) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var ents []tartest.Entry
	for _, n := range names {
		ents = append(ents, tartest.File(n, files[n]))
	}
	return tartest.Tar(t, ents...)
}

func TestImageTagDelete(t *testing.T) {
	f := newNetFake()
	s, st, _ := imgServer(t, f)
	a := imgTestImage(t, v1.Config{}, [2]string{"a", "a"})
	b := imgTestImage(t, v1.Config{}, [2]string{"b", "b"})
	aID, _ := a.ConfigName()
	bID, _ := b.ConfigName()
	if code, body := netDo(t, s, "POST", "/images/load", imgDockerSave(t, map[string]v1.Image{"a:1": a, "b:1": b})); code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/images/a:1/tag?repo=example.com/a&tag=2", http.StatusCreated},
		{"/images/a:1/tag?repo=a2", http.StatusCreated},
		{"/images/" + aID.Hex[:12] + "/tag?repo=docker.io/library/a3&tag=x", http.StatusCreated},
		{"/images/nope/tag?repo=x", http.StatusNotFound},
		{"/images/a:1/tag?repo=Upper", http.StatusBadRequest},
		{"/images/a:1/tag?repo=x&tag=sha256:00", http.StatusBadRequest},
		{"/images/a:1/tag", http.StatusBadRequest},
		// b:1 moves to a: b is left without a name.
		{"/images/a:1/tag?repo=b&tag=1", http.StatusCreated},
	} {
		if code, body := netDo(t, s, "POST", tc.path, nil); code != tc.code {
			t.Errorf("POST %s: %d %s, want %d", tc.path, code, body, tc.code)
		}
	}
	img, err := st.Get(context.Background(), aID.Hex)
	if err != nil {
		t.Fatal(err)
	}
	if tags, _ := imgTags(img); len(tags) != 5 {
		t.Errorf("a's tags: %q", tags)
	}
	// b lost its name: dangling.
	if d := imgList(t, s, "?filters="+netFilters(map[string][]string{"dangling": {"true"}})); len(d) != 1 || d[0].ID != "sha256:"+bID.Hex {
		t.Errorf("dangling: %+v", d)
	}

	f.addArrow("arrow-stopped-0000000000", "stopped", "", api.Exited, "a2:latest")
	f.addArrow("arrow-running-0000000000", "runner", "", api.Running, "b:1")
	type dr = []image.DeleteResponse
	for i, tc := range []struct {
		path string
		code int
		want dr
		says string
	}{
		// One name of several: untagged.
		{"/images/example.com/a:2", http.StatusOK, dr{{Untagged: "example.com/a:2"}}, ""},
		// The name an arrow's config names its image by: refused.
		{"/images/a2", http.StatusConflict, nil, "arrow stopped"},
		{"/images/b:1", http.StatusConflict, nil, "arrow runner"},
		// By ID with several names: refused unless forced.
		{"/images/" + aID.Hex, http.StatusConflict, nil, "multiple repositories"},
		{"/images/nope", http.StatusNotFound, nil, "No such image"},
		{"/images/a:1", http.StatusOK, dr{{Untagged: "a:1"}}, ""},
		{"/images/docker.io/library/a3:x", http.StatusOK, dr{{Untagged: "a3:x"}}, ""},
		// b has no name and no user: deleted.
		{"/images/" + bID.Hex[:12], http.StatusOK, dr{{Deleted: "sha256:" + bID.Hex}}, ""},
		// a runs: not even forced.
		{"/images/" + aID.Hex + "?force=1", http.StatusConflict, nil, "(cannot be forced) - image is being used by running arrow runner"},
		// (the runner stops here) by ID, several names: forced only.
		{"/images/" + aID.Hex + "?force=0", http.StatusConflict, nil, "multiple repositories"},
		{"/images/" + aID.Hex + "?force=1", http.StatusOK, dr{{Untagged: "b:1"}, {Untagged: "a2:latest"}, {Deleted: "sha256:" + aID.Hex}}, ""},
		{"/images/" + aID.Hex, http.StatusNotFound, nil, ""},
	} {
		if i == 9 {
			f.arrows[1].State = api.Exited
		}
		code, body := netDo(t, s, "DELETE", tc.path, nil)
		if code != tc.code || !strings.Contains(string(body), tc.says) {
			t.Errorf("DELETE %s: %d %s, want %d saying %q", tc.path, code, body, tc.code, tc.says)
			continue
		}
		if tc.want != nil {
			var got dr
			netDecode(t, body, &got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("DELETE %s: %+v, want %+v", tc.path, got, tc.want)
			}
		}
	}
	if imgs, _ := st.List(context.Background()); len(imgs) != 0 {
		t.Errorf("left %d images", len(imgs))
	}
}

func TestImagePrune(t *testing.T) {
	f := newNetFake()
	s, st, _ := imgServer(t, f)
	used := imgTestImage(t, v1.Config{}, [2]string{"u", "u"})
	named := imgTestImage(t, v1.Config{Labels: map[string]string{"keep": "1"}}, [2]string{"n", "n"})
	other := imgTestImage(t, v1.Config{}, [2]string{"o", "o"})
	for _, archive := range [][]byte{
		imgDockerSave(t, map[string]v1.Image{"used:1": used, "named:1": named, "other:1": other}),
		imgOCIArchive(t, nil, imgTestImage(t, v1.Config{}, [2]string{"d", "dangling"})),
	} {
		if code, body := netDo(t, s, "POST", "/images/load", archive); code != http.StatusOK || strings.Contains(string(body), "error") {
			t.Fatalf("load: %d %s", code, body)
		}
	}
	f.addArrow("arrow-1", "user", "", api.Exited, "used:1")

	prune := func(filters map[string][]string) []string {
		t.Helper()
		q := ""
		if filters != nil {
			q = "?filters=" + netFilters(filters)
		}
		code, body := netDo(t, s, "POST", "/images/prune"+q, nil)
		var rep image.PruneReport
		netDecode(t, body, &rep)
		if code != http.StatusOK {
			t.Fatalf("prune %v: %d %s", filters, code, body)
		}
		var out []string
		for _, d := range rep.ImagesDeleted {
			if d.Untagged != "" {
				out = append(out, d.Untagged)
			} else {
				out = append(out, "deleted")
			}
		}
		if len(rep.ImagesDeleted) > 0 && rep.SpaceReclaimed == 0 {
			t.Errorf("prune %v: reclaimed nothing", filters)
		}
		slices.Sort(out)
		return out
	}
	if got := prune(nil); !slices.Equal(got, []string{"deleted"}) {
		t.Errorf("prune dangling: %q", got)
	}
	if got := prune(map[string][]string{"dangling": {"false"}, "label!": {"keep"}}); !slices.Equal(got, []string{"deleted", "other:1"}) {
		t.Errorf("prune all but keep: %q", got)
	}
	if got := prune(map[string][]string{"dangling": {"false"}}); !slices.Equal(got, []string{"deleted", "named:1"}) {
		t.Errorf("prune all: %q", got)
	}
	if imgs, _ := st.List(context.Background()); len(imgs) != 1 || imgs[0].Names[0] != "used:1" {
		t.Errorf("left %+v, want used:1 alone", imgs)
	}
}

func TestImagePullUnreachable(t *testing.T) {
	s, st, _ := imgServer(t, newNetFake())
	// Port 1 of the loopback: nothing listens there.
	// Refused before the stream starts, as dockerd refuses it.
	code, body := netDo(t, s, "POST", "/images/create?fromImage=127.0.0.1:1/app&tag=1", nil)
	if code != http.StatusInternalServerError || !strings.Contains(string(body), "unreachable") {
		t.Errorf("pull: %d %s", code, body)
	}
	if imgs, _ := st.List(context.Background()); len(imgs) != 0 {
		t.Errorf("stored %d images", len(imgs))
	}
	for _, tc := range []struct {
		query string
		code  int
	}{
		{"fromImage=Bad", http.StatusBadRequest},
		{"", http.StatusBadRequest},
		{"fromSrc=-&repo=x", http.StatusNotImplemented},
		{"fromImage=busybox&platform=linux/arm64", http.StatusNotImplemented},
	} {
		if code, body := netDo(t, s, "POST", "/images/create?"+tc.query, nil); code != tc.code {
			t.Errorf("create?%s: %d %s, want %d", tc.query, code, body, tc.code)
		}
	}
}

func TestImageLacks(t *testing.T) {
	s, _, _ := imgServer(t, newNetFake())
	for _, tc := range []struct{ method, path, says string }{
		{"GET", "/images/a:1/get", "docker save"},
		{"GET", "/images/get?names=a", "docker save"},
		{"GET", "/images/search?term=x", "search"},
		{"POST", "/images/a:1/push", "docker push"},
	} {
		code, body := netDo(t, s, tc.method, tc.path, nil)
		if code != http.StatusNotImplemented || !strings.Contains(string(body), tc.says) || !strings.Contains(string(body), "Arrow") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, code, body)
		}
	}
}

// TestImagePull pulls from a registry on the loopback (go-containerregistry's
// in-memory one): the image lands under its familiar name, and a second
// pull says it is up to date.
func TestImagePull(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img := imgTestImage(t, imgRunConfig, [2]string{"bin/app", "pulled"})
	ref, err := name.NewTag(host + "/team/app:3")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	s, st, _ := imgServer(t, newNetFake())
	for i, want := range []string{"Downloaded newer image for " + host + "/team/app:3", "Image is up to date for " + host + "/team/app:3"} {
		code, body := netDo(t, s, "POST", "/v1.50/images/create?fromImage="+host+"/team/app&tag=3", nil)
		lines, errs := imgStream(t, body)
		if code != http.StatusOK || len(errs) > 0 || len(lines) != 3 || !strings.HasSuffix(lines[2], want) || !strings.HasPrefix(lines[1], "Digest: sha256:") {
			t.Errorf("pull %d: %d %s", i, code, body)
		}
	}
	got, err := st.Get(context.Background(), host+"/team/app:3")
	if err != nil || got.ID != id.Hex {
		t.Errorf("stored: %+v %v", got, err)
	}
	// Inspect lists the repository digest, as for a pull by dockerd.
	md, _ := img.Digest()
	code, body := netDo(t, s, "GET", "/images/"+host+"/team/app:3/json", nil)
	var in image.InspectResponse
	netDecode(t, body, &in)
	if code != http.StatusOK || !slices.Equal(in.RepoDigests, []string{host + "/team/app@" + md.String()}) {
		t.Errorf("inspect: %d RepoDigests %q", code, in.RepoDigests)
	}
	if code, body := netDo(t, s, "GET", "/images/"+host+"/team/app@"+md.String()+"/json", nil); code != http.StatusOK || !strings.Contains(string(body), id.Hex) {
		t.Errorf("inspect by digest: %d %s", code, body)
	}
	// A tag the registry lacks: 404.
	code, body = netDo(t, s, "POST", "/images/create?fromImage="+host+"/team/app&tag=4", nil)
	if code != http.StatusNotFound {
		t.Errorf("pull a missing tag: %d %s", code, body)
	}
}

// TestImagePullCorrupt: a registry that serves a layer unlike its digest
// fails the import once the stream started: the error is in the stream,
// and nothing is stored.
func TestImagePullCorrupt(t *testing.T) {
	img := imgTestImage(t, v1.Config{}, [2]string{"f", "content"})
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := layers[0].Digest()
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
			w.Write([]byte("not the layer"))
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	ref, err := name.NewTag(host + "/bad:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	s, st, _ := imgServer(t, newNetFake())
	code, body := netDo(t, s, "POST", "/images/create?fromImage="+host+"/bad&tag=1", nil)
	lines, errs := imgStream(t, body)
	if code != http.StatusOK || len(lines) != 1 || len(errs) != 1 {
		t.Errorf("pull: %d %s", code, body)
	}
	if imgs, _ := st.List(context.Background()); len(imgs) != 0 {
		t.Errorf("stored %d images", len(imgs))
	}
}

// TestLoadScratch: a load's scratch directory is private, and those a
// killed daemon left a day ago go with the next load; a recent one (a
// load under way) stays.
func TestLoadScratch(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, loadScratchPrefix+"old")
	recent := filepath.Join(root, loadScratchPrefix+"recent")
	for _, d := range []string{old, recent} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-loadScratchMaxAge - time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	dir, err := newLoadScratch(root)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("scratch %s: %v %v", dir, fi.Mode(), err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old scratch stayed: %v", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("recent scratch went: %v", err)
	}
}

// TestImgClaim: a Docker name moves to the image it is given, with its
// other spellings on other images; the spellings on the image itself
// stay, since arrows may name it by them.
func TestImgClaim(t *testing.T) {
	s, st, _ := imgServer(t, newNetFake())
	ctx := context.Background()
	a := imgTestImage(t, v1.Config{}, [2]string{"a", "a"})
	b := imgTestImage(t, v1.Config{}, [2]string{"b", "b"})
	aID, _ := a.ConfigName()
	bID, _ := b.ConfigName()
	if code, body := netDo(t, s, "POST", "/images/load", imgDockerSave(t, map[string]v1.Image{"a:1": a, "b:1": b})); code != http.StatusOK {
		t.Fatalf("load: %d %s", code, body)
	}
	// As `arrow image pull` names them.
	if _, err := st.Tag(ctx, aID.Hex, "index.docker.io/library/app:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Tag(ctx, bID.Hex, "docker.io/library/app"); err != nil {
		t.Fatal(err)
	}
	if err := imgClaim(ctx, st, aID.Hex, "app:latest"); err != nil {
		t.Fatal(err)
	}
	ai, _ := st.Get(ctx, aID.Hex)
	bi, _ := st.Get(ctx, bID.Hex)
	slices.Sort(ai.Names)
	if !slices.Equal(ai.Names, []string{"a:1", "app:latest", "index.docker.io/library/app:latest"}) || !slices.Equal(bi.Names, []string{"b:1"}) {
		t.Errorf("a %q, b %q", ai.Names, bi.Names)
	}
	if tags, _ := imgTags(ai); len(tags) != 2 {
		t.Errorf("a's Docker tags %q: one per name", tags)
	}
}

func TestIsArrowPlatform(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"linux/amd64", true},
		{"linux", true},
		{`{"os":"linux","architecture":"amd64"}`, true},
		{"linux/arm64", false},
		{`{"os":"windows"}`, false},
		{`{"os":`, false},
	} {
		if got := isArrowPlatform(tc.in); got != tc.want {
			t.Errorf("isArrowPlatform(%q) = %v", tc.in, got)
		}
	}
	s, _, _ := imgServer(t, newNetFake())
	if code, body := netDo(t, s, "POST", "/images/load?platform=linux%2Farm64", []byte("x")); code != http.StatusNotImplemented {
		t.Errorf("load for arm64: %d %s", code, body)
	}
}

func TestImgHistory(t *testing.T) {
	img := store.Image{ID: strings.Repeat("a", 64), Names: []string{"x:1"}, Layers: []store.Layer{{Size: 10}, {Size: 20}}}
	created := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name  string
		hist  []ocispec.History
		sizes []int64 // newest first
	}{
		{"no history: one entry a layer", nil, []int64{20, 10}},
		{"empty layers take no size", []ocispec.History{{CreatedBy: "a"}, {CreatedBy: "env", EmptyLayer: true}, {CreatedBy: "b", Created: &created}}, []int64{20, 0, 10}},
		{"more entries than layers", []ocispec.History{{}, {}, {}}, []int64{0, 20, 10}},
	} {
		var cfg dockerspec.DockerOCIImage
		cfg.History = tc.hist
		got := imgHistory(img, cfg)
		var sizes []int64
		for _, h := range got {
			sizes = append(sizes, h.Size)
		}
		if !slices.Equal(sizes, tc.sizes) || got[0].ID != "sha256:"+img.ID || got[len(got)-1].ID != "<missing>" || !slices.Equal(got[0].Tags, []string{"x:1"}) {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
	if got := imgHistory(store.Image{ID: "b"}, dockerspec.DockerOCIImage{}); len(got) != 1 || got[0].ID != "sha256:b" {
		t.Errorf("no layers, no history: %+v", got)
	}
}
