package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
)

// TestHTTPExecRefused: exec requests that cannot run are refused with a
// clear message and the status that says why, before any shim is asked.
func TestHTTPExecRefused(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	// An arrow that exists but is not running (its shim cannot start).
	resp := serveReq(t, h, "POST", "/v1/arrows", "application/json", strings.NewReader(`{"name":"web","config":{"program":"/bin/true"}}`))
	if resp.code != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.code, resp.body)
	}
	tests := []struct {
		name, path, ctype, body string
		code                    int
		msg                     string
	}{
		{"not running", "/v1/arrows/web/exec", "application/json", `{"cmd":["/bin/true"]}`, http.StatusConflict, "web is not running"},
		{"unknown arrow", "/v1/arrows/nosuch/exec", "application/json", `{"cmd":["/bin/true"]}`, http.StatusNotFound, "nosuch"},
		{"no command", "/v1/arrows/web/exec", "application/json", `{}`, http.StatusBadRequest, "no command"},
		{"relative workdir", "/v1/arrows/web/exec", "", `{"cmd":["x"],"workdir":"tmp"}`, http.StatusBadRequest, "absolute"},
		{"unknown field", "/v1/arrows/web/exec", "application/json", `{"cmd":["x"],"privileged":true}`, http.StatusBadRequest, "privileged"},
		{"two values", "/v1/arrows/web/exec", "application/json", `{"cmd":["x"]}{}`, http.StatusBadRequest, "more than one value"},
		{"not JSON", "/v1/arrows/web/exec", "text/plain", `cmd=x`, http.StatusUnsupportedMediaType, "application/json"},
		{"too large", "/v1/arrows/web/exec", "application/json", `{"cmd":["` + strings.Repeat("x", api.MaxRequestBytes) + `"]}`, http.StatusRequestEntityTooLarge, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, serveReq(t, h, "POST", tt.path, tt.ctype, strings.NewReader(tt.body)), tt.code, tt.msg)
		})
	}
}

// FuzzHTTPExec sends arbitrary request bodies to the exec endpoint of an
// arrow that is not running: the answer is always a JSON api.Error with
// a 4xx status, never a panic or an upgrade.
func FuzzHTTPExec(f *testing.F) {
	f.Add(`{"cmd":["/bin/sh","-c","x"],"env":["A=b"],"user":"1:2","workdir":"/","tty":true,"rows":2,"cols":3,"stdin":true}`)
	f.Add(`{"cmd":[]}`)
	f.Add(`{"cmd":["x"],"env":["="]}`)
	f.Add(`[`)
	d := newTestDaemon(f)
	h := d.Handler()
	if r := serveReq(f, h, "POST", "/v1/arrows", "application/json", strings.NewReader(`{"name":"web","config":{"program":"/bin/true"}}`)); r.code != http.StatusCreated {
		f.Fatalf("create: %d %s", r.code, r.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		resp := serveReq(t, h, "POST", "/v1/arrows/web/exec", "application/json", strings.NewReader(body))
		if resp.code < 400 || resp.code >= 500 {
			t.Fatalf("status %d for %q", resp.code, body)
		}
		var e api.Error
		if err := json.Unmarshal(resp.body, &e); err != nil || e.Message == "" {
			t.Fatalf("body %q: %v", resp.body, err)
		}
	})
}
