package function

import (
	"os"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIRoutes checks that api/openapi.yaml describes every route
// functions add to arrowd's API, and no other under /v1/functions.
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
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/v1/functions") {
			continue
		}
		for method := range item {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	m := &Manager{}
	served := map[string]bool{}
	for pattern := range m.Routes() {
		served[pattern] = true
		if !documented[pattern] {
			t.Errorf("route %s is not in api/openapi.yaml", pattern)
		}
	}
	var extra []string
	for op := range documented {
		if !served[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(extra)
	for _, op := range extra {
		t.Errorf("api/openapi.yaml describes %s, which functions do not serve", op)
	}
}
