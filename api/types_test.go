package api

import (
	"reflect"
	"testing"
)

// TestArrowCommand: what `arrow ps` shows as an arrow's command.
func TestArrowCommand(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"program and args", Config{Program: "/bin/echo", Args: []string{"hi"}}, []string{"/bin/echo", "hi"}},
		{"entrypoint over program", Config{Image: "img", Entrypoint: []string{"/init"}, Args: []string{"-x"}}, []string{"/init", "-x"}},
		{"image's own command", Config{Image: "img"}, nil},
		{"a service: its unit", Config{Service: "nginx"}, []string{"--service", "nginx"}},
		{"a service from an image", Config{Image: "pg", Service: "postgresql@15-main"}, []string{"--service", "postgresql@15-main"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Arrow{Config: tt.cfg}
			if got := a.Command(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Command() = %q, want %q", got, tt.want)
			}
		})
	}
}
