package api

import (
	"strings"
	"testing"
)

func TestConfigNetworkValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string // "" for valid
	}{
		{"user with ports", Config{Network: "user", Ports: []Port{{HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80}, {HostPort: 8080, GuestPort: 53, Proto: "udp"}}}, ""},
		{"named network", Config{Network: "back_end.1"}, ""},
		{"bad name", Config{Network: "-x"}, "network"},
		{"none with ports", Config{Network: "none", Ports: []Port{{HostPort: 8080, GuestPort: 80}}}, "network none"},
		{"guest port 0", Config{Ports: []Port{{HostPort: 8080}}}, "guest port 0"},
		{"host port too large", Config{Ports: []Port{{HostPort: 65536, GuestPort: 80}}}, "host port 65536"},
		{"protocol", Config{Ports: []Port{{HostPort: 1, GuestPort: 1, Proto: "sctp"}}}, "protocol"},
		{"host IP", Config{Ports: []Port{{HostIP: "localhost", HostPort: 1, GuestPort: 1}}}, "not an IP address"},
		{"twice", Config{Ports: []Port{{HostIP: "127.0.0.1", HostPort: 80, GuestPort: 80}, {HostPort: 80, GuestPort: 81, Proto: "tcp"}}}, "already published by ports[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Image = "alpine"
			err := c.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
