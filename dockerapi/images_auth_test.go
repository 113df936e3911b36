package dockerapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestImageWritesNeedRights: a client the daemon does not let change its
// image store (neither root nor arrowd's user) is refused every image
// write with 403, and the store is left as it was.
func TestImageWritesNeedRights(t *testing.T) {
	f := newNetFake()
	f.denyImages = true
	s, st, _ := imgServer(t, f)
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, tc := range []struct{ method, path string }{
		{"POST", "/images/load"},
		{"POST", "/images/create?fromImage=busybox&tag=latest"},
		{"POST", "/images/busybox/tag?repo=alpine&tag=latest"},
		{"DELETE", "/images/busybox"},
		{"POST", "/images/prune"},
	} {
		req, err := http.NewRequest(tc.method, ts.URL+"/v1.50"+tc.path, strings.NewReader("not an archive"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s: %s, want 403", tc.method, tc.path, resp.Status)
		}
	}
	if list, err := st.List(t.Context()); err != nil || len(list) != 0 {
		t.Errorf("store after refused writes: %v %v", list, err)
	}
}
