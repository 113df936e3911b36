package api

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidateNetworkAlias(t *testing.T) {
	tests := []struct {
		alias string
		want  string // "" for valid
	}{
		{"web", ""},
		{"my_service", ""},
		{"db.internal", ""},
		{"a1-b2", ""},
		{strings.Repeat("a", 63), ""},
		{"", "empty"},
		{strings.Repeat("a", 64), "longer than 63"},
		{strings.Repeat("a.", 127) + "a", "longer than 253"},
		{"-web", "starts or ends with '-'"},
		{"web-", "starts or ends with '-'"},
		{"a..b", "empty label"},
		{".web", "empty label"},
		{"web.", "empty label"},
		{"we b", "character ' '"},
		{"web\x00", "character"},
		{"wéb", "character"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.alias), func(t *testing.T) {
			err := ValidateNetworkAlias(tt.alias)
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateNetworkAlias(%q) = %v, want %q", tt.alias, err, tt.want)
			}
		})
	}
}

func TestConfigNetworkAliases(t *testing.T) {
	many := make([]string, MaxNetworkAliases+1)
	for i := range many {
		many[i] = fmt.Sprintf("a%d", i)
	}
	tests := []struct {
		name    string
		network string
		aliases []string
		want    string
	}{
		{"bridge", "back", []string{"web", "web_1"}, ""},
		{"none given", "", nil, ""},
		{"user network", "user", []string{"web"}, "bridge network"},
		{"default network", "", []string{"web"}, "bridge network"},
		{"no network", "none", []string{"web"}, "bridge network"},
		{"too many", "back", many, "at most 32"},
		{"twice in other case", "back", []string{"web", "WEB"}, "given twice"},
		{"bad", "back", []string{"web!"}, "network alias"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Image: "alpine", Network: tt.network, NetworkAliases: tt.aliases}
			err := c.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCreateRequestsLabels(t *testing.T) {
	many := map[string]string{}
	for i := 0; i <= maxLabels; i++ {
		many[fmt.Sprint(i)] = "v"
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"none", nil, ""},
		{"compose", map[string]string{"com.docker.compose.project": "demo", "empty": ""}, ""},
		{"too many", many, "at most 256"},
		{"empty key", map[string]string{"": "v"}, "non-empty key"},
		{"huge", map[string]string{"k": strings.Repeat("v", 4096)}, "4 KiB"},
		{"NUL", map[string]string{"k": "a\x00b"}, "label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for what, err := range map[string]error{
				"network": (&NetworkCreateRequest{Name: "back", Labels: tt.labels}).Validate(),
				"volume":  (&VolumeCreateRequest{Name: "data", Labels: tt.labels}).Validate(),
			} {
				if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: Validate() = %v, want %q", what, err, tt.want)
				}
			}
		})
	}
	if err := (&NetworkCreateRequest{Name: "user"}).Validate(); err == nil || !strings.Contains(err.Error(), "network name") {
		t.Errorf("network named user: %v", err)
	}
	if err := (&VolumeCreateRequest{Name: "a/b"}).Validate(); err == nil || !strings.Contains(err.Error(), "volume name") {
		t.Errorf("volume named a/b: %v", err)
	}
}

func TestValidateNewName(t *testing.T) {
	for name, want := range map[string]string{"web2": "", "": "empty", "-x": "want a letter", strings.Repeat("a", 129): "want a letter"} {
		err := ValidateNewName(name)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateNewName(%.20q) = %v, want %q", name, err, want)
		}
	}
}
