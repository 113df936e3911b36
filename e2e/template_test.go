package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// runModes are the ways a foreground run starts: a cold boot, a clone of
// a pre-booted template (the default without arrowd), and a spare of
// arrowd's pool (the default when an arrowd answers; see enterMode).
// Tables of run behaviour run in each: exit codes, streams, signals and
// terminals must not tell them apart.
var runModes = []struct {
	name string
	args []string // arrow run's flags for the mode
}{{"cold", []string{"--cold"}}, {"template", nil}, {"spare", nil}}

var warmOnce sync.Once

// forMode returns arrow run's arguments for mode, warming the default
// template first in template mode (runs of other machine sizes build
// theirs on first use).
func forMode(t *testing.T, mode string, modeArgs []string, args ...string) []string {
	t.Helper()
	if mode == "template" {
		warmOnce.Do(func() {
			if r := arrow(t, "", "template", "warm"); r.code != 0 {
				t.Fatalf("template warm: exit %d: %s", r.code, r.stderr)
			}
			// The mode is what it says: runs are clones.
			if r := arrow(t, "", "run", "--debug", "/bin/busybox", "true"); started(t, r.stderr) == "cold" {
				t.Fatalf("a run after template warm booted cold:\n%s", r.stderr)
			}
		})
	}
	return append(append([]string{}, modeArgs...), args...)
}

// dataRoot is the data root the arrow under test uses.
func dataRoot() string {
	if r := os.Getenv("ARROW_ROOT"); r != "" {
		return r
	}
	return "/var/lib/arrow"
}

var startLine = regexp.MustCompile(`arrow: start +(cold|template ([0-9a-f]+))\n`)

// started returns how a --debug run started: "cold" or the template key.
func started(t *testing.T, stderr string) string {
	t.Helper()
	m := startLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("--debug output says nothing of how the VM started:\n%s", stderr)
	}
	if m[1] == "cold" {
		return "cold"
	}
	return m[2]
}

// TestTemplateClonesUnique: two clones of one template have their own
// random bytes, host names, MAC addresses and boot IDs.
func TestTemplateClonesUnique(t *testing.T) {
	script := "cat /sys/class/net/eth0/address; hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/uuid; cat /etc/machine-id"
	var outs [2][]string
	var key string
	for i := range outs {
		r := arrow(t, "", forMode(t, "template", nil, "run", "--debug", "/bin/busybox", "sh", "-c", script)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		k := started(t, r.stderr)
		if k == "cold" || key != "" && k != key {
			t.Fatalf("run %d started from %q, want the template %q", i, k, key)
		}
		key = k
		outs[i] = strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(outs[i]) != 5 || len(outs[i][4]) != 32 {
			t.Fatalf("output %q: want 5 lines, the last a machine ID", r.stdout)
		}
	}
	for j, what := range []string{"MAC", "host name", "/dev/urandom bytes", "random UUID", "machine ID"} {
		if outs[0][j] == outs[1][j] {
			t.Errorf("both clones have the %s %q", what, outs[0][j])
		}
	}
	if outs[0][0] == "02:a7:70:00:00:01" {
		t.Errorf("the clone kept its template's MAC")
	}
}

// TestTemplateStale: a run with another memory size does not get the
// template of the first: a new one is built, and the guest has the memory
// it asked for.
func TestTemplateStale(t *testing.T) {
	meminfo := []string{"/bin/busybox", "sh", "-c", "read -r _ kb _ < /proc/meminfo; echo $kb"}
	r1 := arrow(t, "", append([]string{"run", "--debug", "--memory", "272M"}, meminfo...)...)
	r2 := arrow(t, "", append([]string{"run", "--debug", "--memory", "304M"}, meminfo...)...)
	if r1.code != 0 || r2.code != 0 {
		t.Fatalf("exit %d, %d: %s\n%s", r1.code, r2.code, r1.stderr, r2.stderr)
	}
	k1, k2 := started(t, r1.stderr), started(t, r2.stderr)
	if k1 == "cold" || k2 == "cold" || k1 == k2 {
		t.Fatalf("started from %q and %q: want two templates", k1, k2)
	}
	if kb1, kb2 := atoi(strings.TrimSpace(r1.stdout)), atoi(strings.TrimSpace(r2.stdout)); kb2-kb1 < 24<<10 {
		t.Errorf("MemTotal %d kB at 272M and %d kB at 304M: the second run has the first's memory", kb1, kb2)
	}
}

// TestTemplateDamaged: a template whose saved state was damaged is not
// cloned: the run boots cold with a warning, and succeeds; the next run
// has a template again.
func TestTemplateDamaged(t *testing.T) {
	r := arrow(t, "", "template", "warm", "--memory", "288M")
	if r.code != 0 {
		t.Fatalf("template warm: exit %d: %s", r.code, r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	state := filepath.Join(dataRoot(), "templates", key, "state")
	if err := os.Truncate(state, 1000); err != nil {
		t.Fatal(err)
	}
	r = arrow(t, "", "run", "--debug", "--memory", "288M", "/bin/busybox", "echo", "still runs")
	if r.code != 0 || r.stdout != "still runs\n" {
		t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}
	if started(t, r.stderr) != "cold" || !strings.Contains(r.stderr, "arrow: warning: ") || !strings.Contains(r.stderr, "damaged") {
		t.Errorf("want a warning about the damaged template and a cold boot:\n%s", r.stderr)
	}
	r = arrow(t, "", "run", "--debug", "--memory", "288M", "/bin/busybox", "echo", "again")
	if r.code != 0 || started(t, r.stderr) != key {
		t.Errorf("the run after a cold fallback should build and clone %s again: exit %d\n%s", key, r.code, r.stderr)
	}
	// Without --debug, a fallback says one line.
	if err := os.Truncate(state, 1000); err != nil {
		t.Fatal(err)
	}
	r = arrow(t, "", "run", "--memory", "288M", "/bin/busybox", "echo", "quiet")
	if r.code != 0 || r.stdout != "quiet\n" || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q: want the output and a one-line warning", r.code, r.stdout, r.stderr)
	}
}
