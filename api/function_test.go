package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFunctionValidate(t *testing.T) {
	prog := Config{Program: "/usr/bin/python3", Args: []string{"h.py"}}
	for _, tc := range []struct {
		name string
		req  FunctionCreateRequest
		want string // in the error; "" for valid
	}{
		{"stdio", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog}}, ""},
		{"http, kept warm", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, HTTPPort: 8080, KeepWarm: true, Concurrency: 4}}, ""},
		{"bad name", FunctionCreateRequest{Name: "a/b", FunctionConfig: FunctionConfig{Config: prog}}, "function name"},
		{"nothing to run", FunctionCreateRequest{Name: "f"}, "nothing to run"},
		{"a snapshot", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: Config{Snapshot: "s"}}}, "not a snapshot"},
		{"its own ports", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: Config{Program: "/bin/x", Ports: []Port{{HostPort: 1, GuestPort: 1}}}}}, "the function's to set"},
		{"volumes", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: Config{Program: "/bin/x", Volumes: []Volume{{Source: "/a", Target: "/b"}}}}}, "no volumes"},
		{"bridge", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: Config{Program: "/bin/x", Network: "net1"}}}, "want user or none"},
		{"http without network", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: Config{Program: "/bin/x", Network: "none"}, HTTPPort: 80}}, "user network"},
		{"timeout too long", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, Timeout: 901}}, "timeout"},
		{"negative timeout", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, Timeout: -1}}, "timeout"},
		{"body too large", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, MaxBodyBytes: MaxFunctionBodyBytes + 1}}, "max body"},
		{"instances", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, MaxInstances: 65}}, "max instances"},
		{"concurrency for stdio", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, Concurrency: 2}}, "kept-warm HTTP"},
		{"idle timeout", FunctionCreateRequest{Name: "f", FunctionConfig: FunctionConfig{Config: prog, IdleTimeout: 90000}}, "idle timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// FuzzFunctionCreateRequest feeds arbitrary JSON to a create request as
// arrowd decodes it: validation never panics, and what it accepts has
// its limits in range.
func FuzzFunctionCreateRequest(f *testing.F) {
	f.Add([]byte(`{"name":"f","config":{"program":"/usr/bin/python3"},"http_port":8080,"keep_warm":true}`))
	f.Add([]byte(`{"name":"f","config":{"image":"alpine"},"timeout":1e308,"max_body_bytes":-1}`))
	f.Add([]byte(`{"name":"","config":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req FunctionCreateRequest
		if json.Unmarshal(b, &req) != nil {
			return
		}
		if req.Validate() != nil {
			return
		}
		if req.Timeout <= 0 || req.Timeout > MaxFunctionTimeout || req.MaxBodyBytes < 1 || req.MaxBodyBytes > MaxFunctionBodyBytes ||
			req.MaxInstances < 1 || req.MaxInstances > MaxFunctionInstances || req.Concurrency < 1 || req.IdleTimeout <= 0 {
			t.Fatalf("accepted out-of-range limits: %+v", req.FunctionConfig)
		}
	})
}
