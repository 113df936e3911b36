package daemon

import (
	"os"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIRoutes checks that api/openapi.yaml describes every route of
// the daemon's handler, and nothing else.
func TestOpenAPIRoutes(t *testing.T) {
	b, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	documented := make(map[string]bool)
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	d := newTestDaemon(t)
	served := make(map[string]bool)
	for _, rt := range d.routes() {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			t.Errorf("route %q has no method", rt.pattern)
			continue
		}
		served[method+" "+path] = true
		if !documented[method+" "+path] {
			t.Errorf("route %s is not in api/openapi.yaml", rt.pattern)
		}
	}
	var extra []string
	for op := range documented {
		// Package function serves these in front of the daemon's API,
		// and checks them against the document itself.
		if strings.Contains(op, " /v1/functions") {
			continue
		}
		if !served[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(extra)
	for _, op := range extra {
		t.Errorf("api/openapi.yaml describes %s, which the daemon does not serve", op)
	}
	if len(served) < 15 {
		t.Errorf("only %d routes", len(served))
	}
}
