package mountinfo

import (
	"slices"
	"strings"
	"testing"
)

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`/plain`, "/plain"},
		{`/a\040b`, "/a b"},
		{`/a\040b/c\134d`, `/a b/c\d`},
		{`/x\134`, `/x\`},
		{`/tab\011end`, "/tab\tend"},
		{`/bad\09`, `/bad\09`},
		{`/end\04`, `/end\04`},
		{`/end\`, `/end\`},
		{`\040`, " "},
		{`\0401`, " 1"},
	} {
		if got := Unescape(tc.in); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

const table = `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
101 1 8:1 / /tmp/build rw - ext4 /dev/sda1 rw
102 101 0:5 / /tmp/build/dev rw - devtmpfs udev rw
103 102 0:6 / /tmp/build/dev/pts rw - devpts devpts rw
104 1 8:1 / /tmp/build2 rw - ext4 /dev/sda1 rw
105 101 0:40 / /tmp/build/with\040space rw - tmpfs tmpfs rw
short line
`

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"/tmp/build", []string{"/tmp/build", "/tmp/build/dev", "/tmp/build/dev/pts", "/tmp/build/with space"}},
		{"/tmp/build/dev", []string{"/tmp/build/dev", "/tmp/build/dev/pts"}},
		{"/tmp/buil", nil},
		{"/nowhere", nil},
	} {
		got, err := under(strings.NewReader(table), tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("under(%q) = %q, want %q", tc.dir, got, tc.want)
		}
	}
}

// TestUnderSelf reads this process's real table, where /proc is mounted.
func TestUnderSelf(t *testing.T) {
	got, err := Under("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "/proc") {
		t.Errorf("Under(/proc) = %q, want /proc among them", got)
	}
}
