package api

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// openAPI is the part of an OpenAPI document the tests look at.
type openAPI struct {
	OpenAPI    string                    `yaml:"openapi"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas    map[string]schema `yaml:"schemas"`
		Parameters map[string]any    `yaml:"parameters"`
		Responses  map[string]any    `yaml:"responses"`
	} `yaml:"components"`
}

type schema struct {
	Type       string         `yaml:"type"`
	Required   []string       `yaml:"required"`
	Properties map[string]any `yaml:"properties"`
	Enum       []string       `yaml:"enum"`
}

func loadOpenAPI(t *testing.T) (openAPI, map[string]any) {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc, raw
}

func TestOpenAPIDocument(t *testing.T) {
	doc, raw := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi: %q, want 3.0.x", doc.OpenAPI)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("no paths")
	}
	for p := range doc.Paths {
		if p != "/metrics" && !strings.HasPrefix(p, "/"+Version+"/") {
			t.Errorf("path %s is not under /%s", p, Version)
		}
	}
	// Every $ref resolves within the document.
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if k == "$ref" {
					ref, _ := e.(string)
					if !resolves(raw, ref) {
						t.Errorf("%s: $ref %q does not resolve", at, ref)
					}
					continue
				}
				walk(e, at+"/"+k)
			}
		case []any:
			for _, e := range v {
				walk(e, at)
			}
		}
	}
	walk(raw, "")

	// Every operation answers a success status, and its error statuses
	// have the Error body.
	for p, item := range doc.Paths {
		for method, v := range item {
			op, ok := v.(map[string]any)
			if method == "parameters" || !ok {
				continue
			}
			resps, _ := op["responses"].(map[string]any)
			if len(resps) == 0 {
				t.Errorf("%s %s: no responses", method, p)
			}
			success := false
			for code := range resps {
				if code < "400" {
					success = true
				}
			}
			if !success {
				t.Errorf("%s %s: no success response", method, p)
			}
			if _, ok := resps["500"]; !ok {
				t.Errorf("%s %s: no 500", method, p)
			}
		}
	}
}

func resolves(raw map[string]any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var v any = raw
	for _, k := range strings.Split(rest, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	return true
}

// jsonFields returns the JSON names of t's fields, and those that are
// always present (no omitempty or omitzero).
func jsonFields(t reflect.Type) (all, always []string) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			always = append(always, name)
		}
	}
	sort.Strings(all)
	sort.Strings(always)
	return all, always
}

// TestOpenAPISchemas checks that each schema has exactly the JSON fields of
// the Go type of its name, and requires exactly those always present.
func TestOpenAPISchemas(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	types := map[string]any{
		"Error":                Error{},
		"Info":                 Info{},
		"Volume":               Volume{},
		"Port":                 Port{},
		"Config":               Config{},
		"RestartPolicy":        RestartPolicy{},
		"CreateRequest":        CreateRequest{},
		"CreateResponse":       CreateResponse{},
		"Arrow":                Arrow{},
		"WaitResponse":         WaitResponse{},
		"LogEntry":             LogEntry{},
		"Stats":                Stats{},
		"Event":                Event{},
		"NetworkCreateRequest": NetworkCreateRequest{},
		"Network":              Network{},
		"Endpoint":             Endpoint{},
		"ExecConfig":           ExecConfig{},
		"ExecExit":             ExecExit{},
		"ExecSize":             ExecSize{},
		"ExecSignalRequest":    ExecSignalRequest{},
	}
	for name, v := range types {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		if s.Type != "object" {
			t.Errorf("schema %s: type %q, want object", name, s.Type)
		}
		all, always := jsonFields(reflect.TypeOf(v))
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if !slices.Equal(props, all) {
			t.Errorf("schema %s: properties %v, want the JSON fields %v", name, props, all)
		}
		req := slices.Clone(s.Required)
		sort.Strings(req)
		if !slices.Equal(req, always) {
			t.Errorf("schema %s: required %v, want the fields always encoded %v", name, req, always)
		}
	}
	// The states and restart policies are those of the code.
	var states []string
	for _, s := range []State{Created, Starting, Running, Restarting, Exited} {
		states = append(states, string(s))
	}
	if got := doc.Components.Schemas["State"].Enum; !slices.Equal(got, states) {
		t.Errorf("State enum %v, want %v", got, states)
	}
	policies := []string{"", RestartNo, RestartOnFailure, RestartAlways, RestartUnlessStopped}
	var policy struct {
		Enum []string `yaml:"enum"`
	}
	b, _ := yaml.Marshal(doc.Components.Schemas["RestartPolicy"].Properties["name"])
	if err := yaml.Unmarshal(b, &policy); err != nil || !slices.Equal(policy.Enum, policies) {
		t.Errorf("RestartPolicy name enum %v, want %v (%v)", policy.Enum, policies, err)
	}
}
