//go:build linux

package agent

import "testing"

func TestListenState(t *testing.T) {
	const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tests := []struct {
		name   string
		tables []string
		port   int
		want   listening
	}{
		{"nothing", []string{head}, 6379, notListening},
		{"loopback v4", []string{head + "   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 1 1 0 100 0 0 10 0\n"}, 6379, loopbackOnly},
		{"other port", []string{head + "   0: 0100007F:18EB 00000000:0000 0A 0 0 0 0 0 0 1\n"}, 11211, notListening},
		{"established, not listening", []string{head + "   0: 0F02000A:18EB 0202000A:C350 01 0 0 0 0 0 0 1\n"}, 6379, notListening},
		{"wildcard v4", []string{head + "   0: 00000000:18EB 00000000:0000 0A 0 0 0 0 0 0 1\n"}, 6379, reachable},
		{"interface v4", []string{head + "   0: 0F02000A:18EB 00000000:0000 0A 0 0 0 0 0 0 1\n"}, 6379, reachable},
		{"loopback v4 and v6", []string{
			head + "   0: 0100007F:18EB 00000000:0000 0A 0 0 0 0 0 0 1\n",
			head + "   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 1\n",
		}, 6379, loopbackOnly},
		{"wildcard v6", []string{head, head + "   0: 00000000000000000000000000000000:18EB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 1\n"}, 6379, reachable},
		{"garbage", []string{"x y z 0A\n0: zz:18EB 0 0A\n"}, 6379, notListening},
	}
	for _, tt := range tests {
		var tables [][]byte
		for _, s := range tt.tables {
			tables = append(tables, []byte(s))
		}
		if got := listenState(tt.port, tables...); got != tt.want {
			t.Errorf("%s: listenState = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestReadsInput(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"0 0x0 0x7ffd5a0e2000 0x10000 0x0 0x0 0x0 0x7ffd5a0e1f88 0x7f1c2b4d0f8e\n", true},
		{"0 0x3 0x7ffd5a0e2000 0x10000 0x0 0x0 0x0 0x7ffd5a0e1f88 0x7f1c2b4d0f8e\n", false}, // read on fd 3
		{"7 0x7ffd5a0e2000 0x1 0xffffffff 0x0 0x0 0x0 0x7ffd 0x7f1c\n", false},              // poll
		{"running\n", false},
		{"-1 0x7ffd5a0e1f88 0x7f1c2b4d0f8e\n", false}, // blocked, not in a system call
		{"", false},
	} {
		if got := readsInput(tc.line); got != tc.want {
			t.Errorf("readsInput(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
