package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
)

func TestSpec(t *testing.T) {
	t.Setenv("ARROW_TEST_PASSED", "from-host")
	o := Options{Config: api.Config{
		Args:     []string{"-c", "x"},
		Env:      []string{"FOO=bar", "ARROW_TEST_PASSED", "ARROW_TEST_UNSET", "PATH=/custom"},
		Dir:      "/work",
		User:     "1000:1000",
		Hostname: "h1",
		TTY:      true,
	}}
	s, err := o.spec(append([]string{"/usr/bin/python3"}, o.Args...), nil, "", credentials{uid: 1000, gid: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("spec does not validate: %v", err)
	}
	env := strings.Join(s.Env, "\n")
	for _, want := range []string{"FOO=bar", "ARROW_TEST_PASSED=from-host", "HOME=/", "HOSTNAME=h1", "TERM=xterm", "PATH=/custom"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, s.Env)
		}
	}
	if strings.Contains(env, "ARROW_TEST_UNSET") {
		t.Errorf("an unset host variable was passed: %q", s.Env)
	}
	// The user's PATH replaces the default: one entry per variable.
	if strings.Contains(env, "PATH=/usr/local") {
		t.Errorf("user PATH does not override the default: %q", s.Env)
	}
	if got := strings.Join(s.Args, " "); got != "/usr/bin/python3 -c x" {
		t.Errorf("args %q", got)
	}
	if s.UID != 1000 || s.GID != 1000 || s.Dir != "/work" || !s.TTY || s.Stdin || len(s.Seed) == 0 || s.TimeUnixNano == 0 {
		t.Errorf("spec %+v", s)
	}
	o2 := Options{Config: api.Config{Dir: "/"}}
	s2, _ := o2.spec([]string{"/bin/true"}, nil, "", credentials{})
	if string(s2.Seed) == string(s.Seed) {
		t.Error("two runs got the same entropy seed")
	}
	if s2.Hostname == "" || s2.Hostname == s.Hostname {
		t.Errorf("default host name %q", s2.Hostname)
	}
}

func TestSpecRejects(t *testing.T) {
	for _, o := range []Options{
		{Config: api.Config{Dir: "/", Env: []string{"=x"}}},
		{Config: api.Config{Dir: "relative"}},
	} {
		if _, err := o.spec([]string{"/bin/true"}, nil, "", credentials{}); err == nil || ExitCode(err) != ExitArrowFailed {
			t.Errorf("%+v: err %v, exit %d", o, err, ExitCode(err))
		}
	}
}

func TestProgramErrorCodes(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", closure.ErrNotFound), ExitNotFound},
		{&closure.LibraryError{Library: "libx.so", Needer: "/bin/y"}, ExitNotFound},
		{fmt.Errorf("x: %w", closure.ErrNotExecutable), ExitCannotExecute},
		{fmt.Errorf("x: %w", closure.ErrNotProgram), ExitCannotExecute},
		{fmt.Errorf("x: %w", closure.ErrInclude), ExitArrowFailed},
		{errors.New("disk on fire"), ExitArrowFailed},
	}
	for _, tt := range tests {
		if got := ExitCode(programError(tt.err)); got != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.err, got, tt.code)
		}
	}
	if ExitCode(nil) != 0 || ExitCode(errors.New("x")) != ExitArrowFailed {
		t.Error("ExitCode of nil or a plain error")
	}
}

func TestResultExitCode(t *testing.T) {
	r := Result{Status: guest.ExitStatus{Reason: guest.Signaled, Signal: 15}}
	if r.ExitCode() != 143 {
		t.Errorf("got %d", r.ExitCode())
	}
}

func TestMkdirInside(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "srv")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/proc", "/srv/app", "work/a/b", "/../../escape"} {
		if err := mkdirInside(root, d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	for _, want := range []string{"proc", "work/a/b", "escape"} {
		if fi, err := os.Lstat(filepath.Join(root, want)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", want, err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("created through a symlink, outside the tree: %v", ents)
	}
}
