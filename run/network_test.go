package run

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/spec"
)

func TestRunMAC(t *testing.T) {
	a, b := runMAC("0123456789ab"), runMAC("0123456789ac")
	if a == b || a != runMAC("0123456789ab") {
		t.Fatalf("MACs %s, %s: want stable and distinct", a, b)
	}
	for _, m := range []string{a, b} {
		n, err := strconv.ParseUint(m[:2], 16, 8)
		if err != nil || len(m) != 17 || n&1 != 0 || n&2 == 0 {
			t.Errorf("MAC %s: want locally administered unicast", m)
		}
	}
}

func TestNetworkOptions(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	port := func(s string) api.Port {
		p, err := spec.ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		o    Options
		want string // error substring; "" for none
		nics int
	}{
		{"default is user", Options{}, "", 1},
		{"host port 0", Options{Config: api.Config{Network: NetworkUser, Ports: []api.Port{{HostPort: 0, GuestPort: 80, Proto: "tcp"}}}}, "host port 0", 0},
		{"none", Options{Config: api.Config{Network: NetworkNone}}, "", 0},
		{"none with ports", Options{Config: api.Config{Network: NetworkNone, Ports: []api.Port{port("8080:80")}}}, "--network none has no network", 0},
		{"guest port 0", Options{Config: api.Config{Ports: []api.Port{{HostPort: 8080, Proto: "tcp"}}}}, "guest port 0", 0},
		{"IPv6 host IP", Options{Config: api.Config{Ports: []api.Port{port("[::1]:8080:80")}}}, "IPv4 addresses only", 0},
		{"taken", Options{Config: api.Config{Ports: []api.Port{port("127.0.0.1:" + strconv.Itoa(int(taken)) + ":80")}}}, "already in use", 0},
		{"taken, every address", Options{Config: api.Config{Ports: []api.Port{port(strconv.Itoa(int(taken)) + ":80")}}}, "already in use", 0},
		{"twice", Options{Config: api.Config{Ports: []api.Port{{HostPort: 1, GuestPort: 80, Proto: "tcp"}, {HostIP: "127.0.0.1", HostPort: 1, GuestPort: 81, Proto: "tcp"}}}}, "published twice", 0},
		{"bridge without tap", Options{Config: api.Config{Network: "br0"}}, "arrowd's", 0},
		{"bad name", Options{Config: api.Config{Network: "-x"}}, "--network", 0},
		{"bridge with ports", Options{Config: api.Config{Network: "br0", Ports: []api.Port{port("8080:80")}}, Tap: &TapAttachment{Name: "tap0"}}, "arrowd publishes", 0},
		{"bad tap name", Options{Config: api.Config{Network: "br0"}, Tap: &TapAttachment{Name: "a/b"}}, "tap device", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &plan{id: "0123456789ab"}
			defer p.release()
			err := p.network(&tt.o)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != ExitArrowFailed {
				t.Fatalf("network() = %v, want an error containing %q", err, tt.want)
			}
			if tt.want == "" && len(p.nics) != tt.nics {
				t.Fatalf("%d NICs, want %d", len(p.nics), tt.nics)
			}
		})
	}
	p := &plan{id: "x"}
	if err := p.network(&Options{Config: api.Config{Ports: []api.Port{port("127.0.0.1:1:80/udp")}}}); err != nil && !strings.Contains(err.Error(), "needs root") {
		t.Fatal(err)
	}
	if p.net != nil {
		if i := p.net.Interfaces[0]; i.Address != "10.0.2.15/24" || i.Gateway != "10.0.2.2" || p.net.DNS[0] != "10.0.2.3" {
			t.Errorf("user-mode guest configuration %+v %v", i, p.net.DNS)
		}
	}
}

func TestForwardError(t *testing.T) {
	qemu := errors.New("qemu: exit status 1: qemu-system-x86_64: -netdev user,id=net0,net=10.0.2.0/24,ipv6=off,hostfwd=tcp:127.0.0.1:8080-:80: Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'")
	err := forwardError(qemu)
	if err == nil || ExitCode(err) != ExitArrowFailed || !strings.Contains(err.Error(), "(tcp:127.0.0.1:8080-:80): it is in use") {
		t.Fatalf("forwardError = %v", err)
	}
	if forwardError(errors.New("qemu: signal: killed")) != nil || forwardError(nil) != nil {
		t.Fatal("forwardError mapped an unrelated error")
	}
}
