package shim

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/arrowsys/arrow/api"
)

// checkBounded fails unless e is within the bounds Exit.Bound promises.
func checkBounded(t *testing.T, e *Exit) {
	t.Helper()
	for _, s := range []string{e.Error, e.Template, e.Accel} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 kept: %q", s)
		}
	}
	if len(e.Error) > MaxExitMessage || len(e.Template) > maxExitShort || len(e.Accel) > maxExitShort || len(e.Phases) > maxExitPhases {
		t.Fatalf("unbounded exit record: error %d bytes, template %d, accel %d, %d phases", len(e.Error), len(e.Template), len(e.Accel), len(e.Phases))
	}
	for _, p := range e.Phases {
		if len(p.Name) > maxExitShort || !utf8.ValidString(p.Name) {
			t.Fatalf("unbounded phase name: %q", p.Name)
		}
	}
}

// The guest's last words (about 1 MiB of them) become an exit record of a
// few KiB that the host reads back, not a 6 MiB file it refuses.
func TestExitRecordBounded(t *testing.T) {
	dir := t.TempDir()
	// Control characters: each is escaped as six bytes in JSON, the
	// worst case of growth.
	msg := strings.Repeat("\x01", 1<<20)
	e := &Exit{ExitCode: 3, FinishedAt: time.Now(), Error: msg, Template: strings.Repeat("t", 1000),
		Phases: make([]api.Phase, 1000)}
	e.Bound()
	checkBounded(t, e)
	if !strings.HasSuffix(e.Error, truncated) || !strings.HasPrefix(e.Error, "\x01\x01") {
		t.Errorf("cut message: %.40q...%q", e.Error, e.Error[len(e.Error)-20:])
	}
	if err := writeJSON(filepath.Join(dir, ExitFile), e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ExitFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > maxExitFile {
		t.Fatalf("exit.json is %d bytes, over the %d the host reads", fi.Size(), maxExitFile)
	}
	got, err := ReadExit(dir)
	if err != nil {
		t.Fatalf("the host cannot read back the bounded record: %v", err)
	}
	if got.ExitCode != 3 || got.Error != e.Error {
		t.Errorf("read back exit %d, %d-byte message; want 3 and the %d bytes written", got.ExitCode, len(got.Error), len(e.Error))
	}
}

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 128, "short"},
		{strings.Repeat("a", 128), 128, strings.Repeat("a", 128)},
		{strings.Repeat("a", 129), 128, strings.Repeat("a", 128-len(truncated)) + truncated},
		// A cut never splits a rune: "é" is two bytes.
		{strings.Repeat("é", 100), 128, strings.Repeat("é", (128-len(truncated))/2) + truncated},
		// Invalid UTF-8 is replaced, not passed on.
		{"a\xffb", 128, "a\uFFFDb"},
	} {
		got := cut(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("cut(%.20q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("cut(%.20q, %d) = %q: over the bound, or invalid UTF-8", tc.in, tc.n, got)
		}
	}
}

// Exit records the host must not take: too large, not JSON, a status
// no process has, not a regular file.
func TestReadExitRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(path string) error
		want  string
	}{
		{"absent", func(string) error { return nil }, "no such file"},
		{"too large", func(p string) error {
			return os.WriteFile(p, []byte(`{"exit_code": 1, "error": "`+strings.Repeat("x", 6<<20)+`"}`), 0o600)
		}, "larger than"},
		{"not JSON", func(p string) error { return os.WriteFile(p, []byte("{"), 0o600) }, "unexpected end"},
		{"negative status", func(p string) error { return os.WriteFile(p, []byte(`{"exit_code": -1}`), 0o600) }, "want 0 to 255"},
		{"status over 255", func(p string) error { return os.WriteFile(p, []byte(`{"exit_code": 256}`), 0o600) }, "want 0 to 255"},
		{"a FIFO", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
		{"a symbolic link", func(p string) error {
			if err := os.WriteFile(p+".real", []byte(`{"exit_code": 0}`), 0o600); err != nil {
				return err
			}
			return os.Symlink(p+".real", p)
		}, "too many levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.setup(filepath.Join(dir, ExitFile)); err != nil {
				t.Fatal(err)
			}
			e, err := ReadExit(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadExit = %+v, %v; want an error with %q", e, err, tc.want)
			}
			if tc.name == "absent" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("an absent record: %v does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

// FuzzReadExit: whatever exit.json holds, reading it neither panics nor
// hands the host more than the bounds, and what it accepts is an exit
// status a process can have.
func FuzzReadExit(f *testing.F) {
	f.Add([]byte(`{"exit_code": 0, "finished_at": "2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"exit_code": 137, "error": "killed", "oom_killed": true, "accel": "tcg", "template": "abc", "spare": true, "phases": [{"name": "boot", "seconds": 0.5}]}`))
	f.Add([]byte(`{"exit_code": 1, "error": "` + strings.Repeat(`\u0001`, 5000) + `"}`))
	f.Add([]byte(`{"exit_code": 1, "error": "\xff\xfe"}`))
	f.Add([]byte(`{"exit_code": 1e3}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseExit("exit.json", b)
		if err != nil {
			return
		}
		if e.ExitCode < 0 || e.ExitCode > 255 {
			t.Fatalf("exit status %d accepted", e.ExitCode)
		}
		checkBounded(t, e)
		// What the host accepts it can store and read again.
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > maxExitFile {
			t.Fatalf("an accepted record marshals to %d bytes", len(out))
		}
		again, err := parseExit("exit.json", out)
		if err != nil {
			t.Fatalf("an accepted record does not read back: %v", err)
		}
		if again.Error != e.Error || again.ExitCode != e.ExitCode {
			t.Fatalf("read back differs: %q %d, was %q %d", again.Error, again.ExitCode, e.Error, e.ExitCode)
		}
	})
}
