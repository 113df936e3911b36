package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
)

// TestHTTPVolumes: create, list, inspect, remove and prune named volumes
// through the API; an arrow that names a volume (running or not) holds
// it until the arrow is removed.
func TestHTTPVolumes(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	post := func(path, body string) response {
		return serveReq(t, h, "POST", path, "application/json", strings.NewReader(body))
	}
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"name":"data"}`, http.StatusCreated},
		{`{"name":"data"}`, http.StatusOK}, // exists: as docker, no error
		{`{"name":"other"}`, http.StatusCreated},
	} {
		resp := post("/v1/volumes", tc.body)
		if resp.code != tc.code {
			t.Fatalf("create %s: %d %s", tc.body, resp.code, resp.body)
		}
		var v api.VolumeInfo
		if err := json.Unmarshal(resp.body, &v); err != nil || v.Mountpoint == "" {
			t.Fatalf("create %s: %s %v", tc.body, resp.body, err)
		}
	}
	wantError(t, post("/v1/volumes", `{"name":"-x"}`), http.StatusBadRequest, "volume name")
	wantError(t, post("/v1/volumes", `{"name":"../x"}`), http.StatusBadRequest, "volume name")
	wantError(t, post("/v1/volumes", `{"nmae":"x"}`), http.StatusBadRequest, "unknown field")
	wantError(t, serveReq(t, h, "GET", "/v1/volumes/nope", "", nil), http.StatusNotFound, "no such volume")
	wantError(t, serveReq(t, h, "GET", "/v1/volumes/a..b%2Fc", "", nil), http.StatusBadRequest, "volume name")

	// An arrow names "data" and a new "made": rm refuses both.
	body := `{"name":"db","config":{"program":"/bin/true","volumes":[{"source":"data","target":"/data"},{"source":"made","target":"/m"}]}}`
	resp := post("/v1/arrows", body)
	if resp.code != http.StatusCreated {
		t.Fatalf("create arrow: %d %s", resp.code, resp.body)
	}
	var a api.Arrow
	json.Unmarshal(resp.body, &a)
	for _, n := range []string{"data", "made"} {
		msg := wantError(t, serveReq(t, h, "DELETE", "/v1/volumes/"+n, "", nil), http.StatusConflict, "in use")
		if !strings.Contains(msg, a.ID) {
			t.Errorf("refusal does not name the arrow: %s", msg)
		}
	}
	var list []api.VolumeInfo
	resp = serveReq(t, h, "GET", "/v1/volumes", "", nil)
	if err := json.Unmarshal(resp.body, &list); err != nil || len(list) != 3 {
		t.Fatalf("list: %s %v", resp.body, err)
	}
	for _, v := range list {
		if want := v.Name != "other"; v.InUse != want || (len(v.Arrows) == 1) != want {
			t.Errorf("list: %+v", v)
		}
	}
	// Prune takes the unused one only.
	resp = post("/v1/volumes/prune", "")
	var st api.VolumePruneResponse
	if err := json.Unmarshal(resp.body, &st); err != nil || resp.code != 200 || len(st.Removed) != 1 || st.Removed[0] != "other" {
		t.Fatalf("prune: %d %s", resp.code, resp.body)
	}
	// Once the arrow is removed, its volumes may go.
	if resp := serveReq(t, h, "DELETE", "/v1/arrows/db?force=1", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("rm arrow: %d %s", resp.code, resp.body)
	}
	if resp := serveReq(t, h, "DELETE", "/v1/volumes/data", "", nil); resp.code != http.StatusNoContent {
		t.Fatalf("rm data: %d %s", resp.code, resp.body)
	}
	resp = post("/v1/volumes/prune", "")
	if err := json.Unmarshal(resp.body, &st); err != nil || len(st.Removed) != 1 || st.Removed[0] != "made" {
		t.Fatalf("prune: %d %s", resp.code, resp.body)
	}
	resp = serveReq(t, h, "GET", "/v1/volumes", "", nil)
	if strings.TrimSpace(string(resp.body)) != "[]" {
		t.Errorf("list after: %s", resp.body)
	}
	// A bad name in an arrow's config is refused before anything exists.
	wantError(t, post("/v1/arrows", `{"config":{"program":"/bin/true","volumes":[{"source":"_bad","target":"/d"}]}}`), http.StatusBadRequest, "volume name")
}
