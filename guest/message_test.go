package guest

import (
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		st   ExitStatus
		want int
	}{
		{ExitStatus{Reason: Exited, Code: 0}, 0},
		{ExitStatus{Reason: Exited, Code: 3}, 3},
		{ExitStatus{Reason: Exited, Code: 255}, 255},
		{ExitStatus{Reason: Exited, Code: 256}, 125},
		{ExitStatus{Reason: Exited, Code: -1}, 125},
		{ExitStatus{Reason: Signaled, Signal: 9}, 137},
		{ExitStatus{Reason: Signaled, Signal: 15}, 143},
		{ExitStatus{Reason: Signaled, Signal: 0}, 125},
		{ExitStatus{Reason: Signaled, Signal: 65}, 125},
		{ExitStatus{Reason: NotFound}, 127},
		{ExitStatus{Reason: NotExecutable}, 126},
		{ExitStatus{Reason: InitFailed}, 125},
		{ExitStatus{Reason: "bogus"}, 125},
	}
	for _, tt := range tests {
		if got := tt.st.ExitCode(); got != tt.want {
			t.Errorf("%+v: ExitCode() = %d, want %d", tt.st, got, tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Version: ProtocolVersion, Args: []string{"/bin/echo", "hi"}, Env: []string{"A=b", "EMPTY="}, Dir: "/tmp",
		Rlimits: []Rlimit{{Type: "nofile", Soft: 1024, Hard: 4096}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"no args", func(s *Spec) { s.Args = nil }, "no program"},
		{"other version", func(s *Spec) { s.Version = ProtocolVersion + 1 }, "protocol version"},
		{"empty program", func(s *Spec) { s.Args = []string{""} }, "no program"},
		{"relative dir", func(s *Spec) { s.Dir = "tmp" }, "not absolute"},
		{"bad env", func(s *Spec) { s.Env = []string{"NOEQUALS"} }, "KEY=value"},
		{"empty key", func(s *Spec) { s.Env = []string{"=x"} }, "KEY=value"},
		{"nul in arg", func(s *Spec) { s.Args = []string{"/bin/echo", "a\x00b"} }, "NUL"},
		{"unknown rlimit", func(s *Spec) { s.Rlimits = []Rlimit{{Type: "bogus"}} }, "unknown rlimit"},
		{"soft above hard", func(s *Spec) { s.Rlimits = []Rlimit{{Type: "nofile", Soft: 10, Hard: 1}} }, "above hard"},
		{"huge seed", func(s *Spec) { s.Seed = make([]byte, 4096) }, "seed"},
		{"long hostname", func(s *Spec) { s.Hostname = strings.Repeat("h", 65) }, "host name"},
		{"too many args", func(s *Spec) { s.Args = make([]string, maxArgs+1); s.Args[0] = "x" }, "arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mutate(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	var st ExitStatus
	if err := Decode([]byte(`{"reason":"exited","code":3}`), &st); err != nil || st.Code != 3 {
		t.Fatalf("Decode = %v, %+v", err, st)
	}
	for _, bad := range []string{`{"reason":"exited","extra":1}`, `{"reason":"exited"} {}`, `not json`, ``} {
		if err := Decode([]byte(bad), &st); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}
