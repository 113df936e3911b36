package run

import (
	"errors"
	"reflect"
	"testing"

	"github.com/arrowsys/arrow/guest"
)

func TestExecSpec(t *testing.T) {
	app := &guest.Spec{
		Version: guest.ProtocolVersion, Args: []string{"/app"}, Dir: "/srv", UID: 33, GID: 33,
		Env: []string{"PATH=/usr/bin:/bin", "HOSTNAME=h", "APP=1", "HOME=/var/www"},
	}
	db := newUserDB([]byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1002::/home/alice:/bin/sh\n"), []byte("staff:x:1002:\nwheel:x:1003:alice\n"))
	tests := []struct {
		name  string
		users *userDB
		eo    ExecOptions
		want  *guest.ExecSpec
		err   error
	}{
		{"the application's user, env and dir", db, ExecOptions{Args: []string{"sh"}},
			&guest.ExecSpec{ID: 1, Args: []string{"sh"}, Env: app.Env, Dir: "/srv", UID: 33, GID: 33}, nil},
		{"a name from the root's passwd", db, ExecOptions{Args: []string{"sh"}, User: "alice", Dir: "/tmp", Env: []string{"APP=2", "NEW=x"}, TTY: true, Stdin: true, Size: guest.WindowSize{Rows: 1, Cols: 2}},
			&guest.ExecSpec{ID: 1, Args: []string{"sh"}, Env: []string{"PATH=/usr/bin:/bin", "HOSTNAME=h", "APP=2", "HOME=/home/alice", "TERM=xterm", "NEW=x"},
				Dir: "/tmp", UID: 1001, GID: 1002, Groups: []uint32{1003}, TTY: true, Stdin: true, Size: guest.WindowSize{Rows: 1, Cols: 2}}, nil},
		{"numbers", nil, ExecOptions{Args: []string{"id"}, User: "7:8"},
			&guest.ExecSpec{ID: 1, Args: []string{"id"}, Env: []string{"PATH=/usr/bin:/bin", "HOSTNAME=h", "APP=1", "HOME=/"}, Dir: "/srv", UID: 7, GID: 8}, nil},
		{"HOME from -e wins", nil, ExecOptions{Args: []string{"id"}, User: "0", Env: []string{"HOME=/h"}},
			&guest.ExecSpec{ID: 1, Args: []string{"id"}, Env: []string{"PATH=/usr/bin:/bin", "HOSTNAME=h", "APP=1", "HOME=/h"}, Dir: "/srv"}, nil},
		{"an unknown name", db, ExecOptions{Args: []string{"sh"}, User: "bob"}, nil, ErrUnknownUser},
		{"a name without a user database", nil, ExecOptions{Args: []string{"sh"}, User: "alice"}, nil, ErrUnknownUser},
		{"no command", db, ExecOptions{}, nil, nil},
		{"relative dir", db, ExecOptions{Args: []string{"sh"}, Dir: "tmp"}, nil, nil},
		{"env without =", db, ExecOptions{Args: []string{"sh"}, Env: []string{"X"}}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handle{p: &plan{spec: app, users: tt.users}}
			got, err := h.execSpec(tt.eo)
			if tt.want == nil {
				var re *Error
				if err == nil || !errors.As(err, &re) || re.Code != ExitArrowFailed || (tt.err != nil && !errors.Is(err, tt.err)) {
					t.Fatalf("execSpec: %v, want an *Error (%v)", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("execSpec:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestExecNotRunning(t *testing.T) {
	h := &Handle{p: &plan{spec: &guest.Spec{}}}
	if _, err := h.Exec(t.Context(), ExecOptions{Args: []string{"sh"}}); !errors.Is(err, ErrNotRunning) || ExitCode(err) != ExitArrowFailed {
		t.Errorf("Exec before the start: %v", err)
	}
}
