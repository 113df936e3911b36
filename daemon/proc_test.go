package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// statLine makes a /proc/PID/stat line with the given command name, state,
// utime, stime and starttime, the other fields plausible.
func statLine(comm string, state byte, utime, stime, start uint64) string {
	// Fields 3 to 22, then a few more as the kernel writes.
	return fmt.Sprintf("4242 (%s) %c 1 4242 4242 0 -1 4194560 120 0 0 0 %d %d 0 0 20 0 1 0 %d 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n",
		comm, state, utime, stime, start)
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want procStat
		err  bool
	}{
		{"plain", statLine("qemu-system-x86", 'S', 11, 22, 98765), procStat{'S', 11, 22, 98765}, false},
		{"spaces", statLine("my prog", 'R', 1, 2, 3), procStat{'R', 1, 2, 3}, false},
		{"paren", statLine("a) S 9 9 9", 'S', 5, 6, 7), procStat{'S', 5, 6, 7}, false},
		{"parens", statLine("((x))", 'D', 0, 0, 1), procStat{'D', 0, 0, 1}, false},
		{"only paren", statLine(")", 'Z', 4, 5, 6), procStat{'Z', 4, 5, 6}, false},
		{"newline in name", statLine("a\nb", 'S', 1, 1, 1), procStat{'S', 1, 1, 1}, false},
		{"empty name", statLine("", 'I', 7, 8, 9), procStat{'I', 7, 8, 9}, false},
		{"big numbers", statLine("x", 'S', 1<<40, 1<<41, 1<<50), procStat{'S', 1 << 40, 1 << 41, 1 << 50}, false},
		{"exactly 22 fields", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 11 12 0 0 20 0 1 0 99", procStat{'S', 11, 12, 99}, false},

		{"empty", "", procStat{}, true},
		{"no paren", "1 x S 1 2 3", procStat{}, true},
		{"21 fields", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 11 12 0 0 20 0 1 0", procStat{}, true},
		{"long state", strings.Replace(statLine("x", 'S', 1, 2, 3), ") S ", ") SS ", 1), procStat{}, true},
		{"bad utime", strings.Replace(statLine("x", 'S', 1, 2, 3), " 0 0 0 1 2 ", " 0 0 0 u 2 ", 1), procStat{}, true},
		{"negative starttime", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 11 12 0 0 20 0 1 0 -5", procStat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if tc.err {
				if err == nil {
					t.Fatalf("parseProcStat = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseProcStat = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestReadProcStatSelf(t *testing.T) {
	s, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.startTime == 0 || s.state != 'R' && s.state != 'S' {
		t.Fatalf("own stat %+v", s)
	}
	if processStart(os.Getpid()) != s.startTime {
		t.Fatal("processStart disagrees with readProcStat")
	}
	if processStart(-1) != 0 {
		t.Fatal("processStart(-1) != 0")
	}
	if n, err := processRSS(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("processRSS = %d, %v", n, err)
	}
}

func TestProcessAlive(t *testing.T) {
	self := os.Getpid()
	start := processStart(self)
	if !processAlive(self, start) {
		t.Error("the test process is not alive")
	}
	if !processAlive(self, 0) {
		t.Error("the test process is not alive with start 0")
	}
	if processAlive(self, start+1) {
		t.Error("alive with another start time (a reused PID)")
	}
	for _, pid := range []int{0, -1} {
		if processAlive(pid, 0) {
			t.Errorf("pid %d alive", pid)
		}
	}

	// A child that ended: a zombie until reaped, then gone.
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	cstart := processStart(pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := readProcStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if s.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child still in state %c", s.state)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if processAlive(pid, cstart) {
		t.Error("a zombie is alive")
	}
	_ = cmd.Wait()
	if processAlive(pid, cstart) {
		t.Error("a reaped process is alive")
	}
}

func TestParseMemoryRollup(t *testing.T) {
	in := "55bc6a2f0000-7ffc55ad0000 ---p 00000000 00:00 0   [rollup]\nRss:  1688 kB\nPss:  437 kB\nShared_Clean: 1508 kB\nShared_Dirty: 4 kB\nPrivate_Clean: 68 kB\nPrivate_Dirty: 112 kB\nBogus: x kB\nPrivate_Dirty: -5 kB\n"
	got := parseMemoryRollup(in)
	want := memoryRollup{private: (68 + 112) << 10, shared: (1508 + 4) << 10, pss: 437 << 10}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if m, err := readMemoryRollup(os.Getpid()); err != nil || m.private <= 0 || m.pss <= 0 {
		t.Fatalf("own rollup: %+v %v", m, err)
	}
}
