package dockerapi

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/volume"

	"github.com/arrowsys/arrow/api"
)

func volNames(vs []volume.Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestVolumeCreateInspectList(t *testing.T) {
	f := newNetFake()
	s := netServer(t, f)
	code, body := netDo(t, s, "POST", "/v1.50/volumes/create", map[string]any{"Name": "data", "Driver": "local", "Labels": map[string]string{"com.docker.compose.project": "p"}})
	var v volume.Volume
	netDecode(t, body, &v)
	if code != http.StatusCreated || v.Name != "data" || v.Driver != "local" || v.Scope != "local" || v.Labels["com.docker.compose.project"] != "p" || v.Mountpoint == "" || v.CreatedAt == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	// Again: the same volume.
	if code, body := netDo(t, s, "POST", "/volumes/create", map[string]any{"Name": "data"}); code != http.StatusCreated || !strings.Contains(string(body), `"Name":"data"`) {
		t.Errorf("create again: %d %s", code, body)
	}
	// Without a name: 64 hex and the anonymous label.
	code, body = netDo(t, s, "POST", "/volumes/create", map[string]any{})
	var anon volume.Volume
	netDecode(t, body, &anon)
	if _, ok := anon.Labels[volAnonymousLabel]; code != http.StatusCreated || len(anon.Name) != 64 || !isHexID(anon.Name) || !ok {
		t.Errorf("anonymous create: %d %s", code, body)
	}
	for _, tc := range []struct {
		name string
		req  any
		code int
		says string
	}{
		{"driver", map[string]any{"Name": "x", "Driver": "nfs"}, http.StatusNotImplemented, "nfs"},
		{"driver opts", map[string]any{"Name": "x", "DriverOpts": map[string]string{"type": "tmpfs", "device": "tmpfs"}}, http.StatusNotImplemented, "device, type"},
		{"bad name", map[string]any{"Name": "a/b"}, http.StatusBadRequest, ""},
		{"malformed", "[", http.StatusBadRequest, "JSON"},
	} {
		code, out := netDo(t, s, "POST", "/volumes/create", tc.req)
		if code != tc.code || !strings.Contains(string(out), tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, code, out, tc.code, tc.says)
		}
	}
	if _, ok := f.vols["x"]; ok {
		t.Error("a refused create made the volume")
	}

	code, body = netDo(t, s, "GET", "/volumes/data", nil)
	netDecode(t, body, &v)
	if code != http.StatusOK || v.Name != "data" {
		t.Errorf("inspect: %d %s", code, body)
	}
	if code, body := netDo(t, s, "GET", "/volumes/nope", nil); code != http.StatusNotFound || !strings.Contains(string(body), "no such volume") {
		t.Errorf("inspect missing: %d %s", code, body)
	}

	f.addArrow("id1", "db", "", api.Exited, "", "data")
	for _, tc := range []struct {
		filters map[string][]string
		want    []string
	}{
		{nil, []string{anon.Name, "data"}},
		{map[string][]string{"name": {"dat"}}, []string{"data"}},
		{map[string][]string{"label": {"com.docker.compose.project=p"}}, []string{"data"}},
		{map[string][]string{"label": {"com.docker.compose.project"}}, []string{"data"}},
		{map[string][]string{"dangling": {"true"}}, []string{anon.Name}},
		{map[string][]string{"dangling": {"false"}}, []string{"data"}},
		{map[string][]string{"driver": {"local"}}, []string{anon.Name, "data"}},
		{map[string][]string{"driver": {"nfs"}}, nil},
	} {
		q := ""
		if tc.filters != nil {
			q = "?filters=" + netFilters(tc.filters)
		}
		code, body := netDo(t, s, "GET", "/volumes"+q, nil)
		var lr volume.ListResponse
		netDecode(t, body, &lr)
		// Listed by name; the anonymous one's is random.
		slices.Sort(tc.want)
		if code != http.StatusOK || !slices.Equal(volNames(lr.Volumes), tc.want) || lr.Warnings == nil {
			t.Errorf("list %v: %d %s, want %v", tc.filters, code, body, tc.want)
		}
	}
	if code, _ := netDo(t, s, "GET", "/volumes?filters="+netFilters(map[string][]string{"dangling": {"maybe"}}), nil); code != http.StatusBadRequest {
		t.Errorf("dangling=maybe: %d", code)
	}
}

func TestVolumeDeletePrune(t *testing.T) {
	f := newNetFake()
	s := netServer(t, f)
	for _, req := range []map[string]any{{"Name": "named"}, {"Name": "used"}, {"Name": "tagged", "Labels": map[string]string{"keep": "1"}}, {}} {
		if code, body := netDo(t, s, "POST", "/volumes/create", req); code != http.StatusCreated {
			t.Fatalf("create %v: %d %s", req, code, body)
		}
	}
	f.addArrow("id1", "db", "", api.Running, "", "used")
	var anon string
	for n := range f.vols {
		if len(n) == 64 {
			anon = n
		}
	}

	if code, body := netDo(t, s, "DELETE", "/volumes/used?force=1", nil); code != http.StatusConflict {
		t.Errorf("delete used: %d %s", code, body)
	}
	if code, body := netDo(t, s, "DELETE", "/volumes/ghost", nil); code != http.StatusNotFound {
		t.Errorf("delete missing: %d %s", code, body)
	}
	if code, body := netDo(t, s, "DELETE", "/volumes/ghost?force=true", nil); code != http.StatusNoContent {
		t.Errorf("delete missing, forced: %d %s", code, body)
	}

	// API 1.42 and later: only anonymous volumes.
	code, body := netDo(t, s, "POST", "/v1.50/volumes/prune", nil)
	var rep volume.PruneReport
	netDecode(t, body, &rep)
	if code != http.StatusOK || !slices.Equal(rep.VolumesDeleted, []string{anon}) {
		t.Errorf("prune 1.50: %d %s, want [%s]", code, body, anon)
	}
	// all=true, but not the labelled one.
	code, body = netDo(t, s, "POST", "/v1.50/volumes/prune?filters="+netFilters(map[string][]string{"all": {"true"}, "label!": {"keep"}}), nil)
	netDecode(t, body, &rep)
	if code != http.StatusOK || !slices.Equal(rep.VolumesDeleted, []string{"named"}) {
		t.Errorf("prune all, label!=keep: %d %s", code, body)
	}
	// Before 1.42: every unused volume.
	code, body = netDo(t, s, "POST", "/v1.41/volumes/prune", nil)
	netDecode(t, body, &rep)
	if code != http.StatusOK || !slices.Equal(rep.VolumesDeleted, []string{"tagged"}) {
		t.Errorf("prune 1.41: %d %s", code, body)
	}
	if _, ok := f.vols["used"]; !ok {
		t.Error("prune took the volume in use")
	}
	if code, body := netDo(t, s, "DELETE", "/volumes/used", nil); code != http.StatusConflict {
		t.Errorf("delete used: %d %s", code, body)
	}
}
