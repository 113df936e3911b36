package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Service is a systemd service unit, translated on the host (package
// unit), that arrow-init supervises instead of running [Spec.Args] alone:
// its ExecStartPre= commands, its main process by its Type=, its
// ExecStartPost= commands, and on a stop its ExecStop= commands and kill
// signal. The spec's Args are the first ExecStart= (for display), its
// Env, Dir, UID, GID, Groups and Rlimits the service's.
type Service struct {
	// Name is the unit's name (redis-server.service).
	Name string `json:"name"`
	// Type is [ServiceSimple], [ServiceExec], [ServiceForking],
	// [ServiceNotify] or [ServiceOneshot].
	Type string `json:"type"`
	// Pre, Start, Post, Stop and StopPost are the Exec*= commands, in
	// order. Start has exactly one command but for oneshot.
	Pre      []Command `json:"pre,omitempty"`
	Start    []Command `json:"start"`
	Post     []Command `json:"post,omitempty"`
	Stop     []Command `json:"stop,omitempty"`
	StopPost []Command `json:"stop_post,omitempty"`
	// PIDFile is where a forking service's daemon writes its PID.
	PIDFile string `json:"pid_file,omitempty"`
	// EnvFiles are read in the guest, in order; their variables override
	// the spec's Env. Unset names variables removed after.
	EnvFiles []EnvFile `json:"env_files,omitempty"`
	Unset    []string  `json:"unset,omitempty"`
	// DirOptional: a missing working directory is no error (the '-' of
	// WorkingDirectory=); the service then starts in /.
	DirOptional bool `json:"dir_optional,omitempty"`
	// UMask is the file mode creation mask of every command.
	UMask uint32 `json:"umask"`
	// Dirs are made before anything runs, in order (the tmpfiles.d
	// directories of the service's packages, then RuntimeDirectory= and
	// the others), with their modes, owned by UID and GID when Owned.
	Dirs []ServiceDir `json:"dirs,omitempty"`
	// KillSignal is what a stop sends the main process after ExecStop=
	// (SIGTERM by default); TimeoutStopNanos how long the main process
	// then has before SIGKILL (0: no limit but the host's).
	KillSignal       int   `json:"kill_signal"`
	TimeoutStopNanos int64 `json:"timeout_stop,omitempty"`
	// LoopbackPorts are the published TCP ports: when the service listens
	// on one on the guest's loopback only (Debian's redis and memcached
	// bind 127.0.0.1), arrow-init relays the interfaces' addresses to it,
	// so that what the user published is reached.
	LoopbackPorts []int `json:"loopback_ports,omitempty"`
}

// Service types.
const (
	ServiceSimple  = "simple"
	ServiceExec    = "exec"
	ServiceForking = "forking"
	ServiceNotify  = "notify"
	ServiceOneshot = "oneshot"
)

// Command is one Exec*= command line. Its words are expanded in the guest:
// $VAR (a word of its own) becomes the variable's value split at white
// space, ${VAR} (anywhere) its value as it is, $$ a '$' (see [ExpandArgs]).
type Command struct {
	// Path is the program, absolute or looked up in PATH; Args its argv.
	Path string   `json:"path"`
	Args []string `json:"args"`
	// IgnoreFailure: a failure does not fail the service ('-').
	IgnoreFailure bool `json:"ignore_failure,omitempty"`
	// NoExpand: the words are used as they are (':').
	NoExpand bool `json:"no_expand,omitempty"`
	// Privileged: runs as root, not as the spec's user ('+', '!').
	Privileged bool `json:"privileged,omitempty"`
}

// EnvFile is an EnvironmentFile=: Optional ones may be missing.
type EnvFile struct {
	Path     string `json:"path"`
	Optional bool   `json:"optional,omitempty"`
}

// ServiceDir is a directory arrow-init makes for the service.
type ServiceDir struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode"`
	Owned bool   `json:"owned,omitempty"`
	// UID and GID own a directory that is not Owned, when set (a
	// tmpfiles.d line's user and group); unset, it is left as it is,
	// root's when arrow-init makes it.
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// KeepMode is a tmpfiles.d mode of '-': a new directory gets 0755,
	// an existing one keeps its mode.
	KeepMode bool `json:"keep_mode,omitempty"`
	// Optional: failing to make it is no error (tmpfiles.d's '-').
	// Replace: what is at the path, if not a directory, is removed
	// first (tmpfiles.d's '=').
	Optional bool `json:"optional,omitempty"`
	Replace  bool `json:"replace,omitempty"`
}

// Limits of a [Service].
const (
	maxCommands = 64
	maxEnvFiles = 64
	maxDirs     = 64
	// maxServiceDirs bounds Dirs: the unit's and its packages'
	// tmpfiles.d directories.
	maxServiceDirs = 256
	// MaxEnvFile is the largest EnvironmentFile= arrow-init reads.
	MaxEnvFile = 1 << 20
)

func (s *Service) validate() error {
	switch s.Type {
	case ServiceSimple, ServiceExec, ServiceForking, ServiceNotify, ServiceOneshot:
	default:
		return fmt.Errorf("spec: service type %.40q: want simple, exec, forking, notify or oneshot", s.Type)
	}
	switch {
	case len(s.Name) > 256 || strings.IndexByte(s.Name, 0) >= 0:
		return errors.New("spec: service name: at most 256 bytes, no NUL")
	case len(s.Start) == 0:
		return errors.New("spec: service: no ExecStart= command")
	case len(s.Start) > 1 && s.Type != ServiceOneshot:
		return errors.New("spec: service: several ExecStart= commands, and not oneshot")
	case s.Type == ServiceForking && s.PIDFile == "":
		return errors.New("spec: service: forking without a PID file")
	case s.PIDFile != "" && (!path.IsAbs(s.PIDFile) || path.Clean(s.PIDFile) != s.PIDFile || len(s.PIDFile) > maxPathLen):
		return fmt.Errorf("spec: service: PID file %.80q: want an absolute, clean path", s.PIDFile)
	case len(s.EnvFiles) > maxEnvFiles:
		return fmt.Errorf("spec: service: %d environment files, at most %d", len(s.EnvFiles), maxEnvFiles)
	case len(s.Unset) > maxEnv:
		return fmt.Errorf("spec: service: %d unset variables, at most %d", len(s.Unset), maxEnv)
	case len(s.Dirs) > maxServiceDirs:
		return fmt.Errorf("spec: service: %d directories, at most %d", len(s.Dirs), maxServiceDirs)
	case s.UMask > 0o777:
		return fmt.Errorf("spec: service: umask %o: at most 777", s.UMask)
	case s.KillSignal < 1 || s.KillSignal > 64:
		return fmt.Errorf("spec: service: kill signal %d: want 1 to 64", s.KillSignal)
	case s.TimeoutStopNanos < 0:
		return errors.New("spec: service: negative stop timeout")
	case len(s.LoopbackPorts) > maxDirs:
		return fmt.Errorf("spec: service: %d loopback ports, at most %d", len(s.LoopbackPorts), maxDirs)
	}
	for _, p := range s.LoopbackPorts {
		if p < 1 || p > 65535 {
			return fmt.Errorf("spec: service: loopback port %d: want 1 to 65535", p)
		}
	}
	for _, list := range [][]Command{s.Pre, s.Start, s.Post, s.Stop, s.StopPost} {
		if len(list) > maxCommands {
			return fmt.Errorf("spec: service: %d commands in one list, at most %d", len(list), maxCommands)
		}
		for _, c := range list {
			if err := c.validate(); err != nil {
				return err
			}
		}
	}
	for _, f := range s.EnvFiles {
		if !path.IsAbs(f.Path) || len(f.Path) > maxPathLen || strings.IndexByte(f.Path, 0) >= 0 {
			return fmt.Errorf("spec: service: environment file %.80q: want an absolute path", f.Path)
		}
	}
	for _, u := range s.Unset {
		if len(u) > maxStrLen || strings.IndexByte(u, 0) >= 0 {
			return errors.New("spec: service: unset variable: too long or a NUL byte")
		}
	}
	for _, d := range s.Dirs {
		if err := checkTarget(d.Path); err != nil {
			return fmt.Errorf("spec: service directory: %w", err)
		}
		if d.Mode > 0o7777 {
			return fmt.Errorf("spec: service directory %s: mode %o", d.Path, d.Mode)
		}
	}
	return nil
}

func (c *Command) validate() error {
	switch {
	case c.Path == "" || len(c.Args) == 0:
		return errors.New("spec: service: an empty command")
	case len(c.Args) > maxArgs:
		return fmt.Errorf("spec: service: a command of %d arguments, at most %d", len(c.Args), maxArgs)
	case strings.Contains(c.Path, "/") && !path.IsAbs(c.Path):
		return fmt.Errorf("spec: service: program %.80q: want an absolute path or a bare name", c.Path)
	}
	for _, a := range append([]string{c.Path}, c.Args...) {
		if len(a) > maxStrLen || strings.IndexByte(a, 0) >= 0 {
			return errors.New("spec: service: a command's word is too long or has a NUL byte")
		}
	}
	return nil
}

// ExpandArgs expands environment variables in a command's words as systemd
// does: a word that is $NAME alone becomes the value split at white space
// (no word when it is empty or unset), ${NAME} anywhere in a word is
// replaced by the value as it is, and $$ is a '$'. Anything else after a
// '$' is kept. getenv returns a variable's value and whether it is set.
func ExpandArgs(words []string, getenv func(string) (string, bool)) []string {
	out := make([]string, 0, len(words))
	for _, w := range words {
		if name, ok := strings.CutPrefix(w, "$"); ok && isEnvName(name) {
			v, _ := getenv(name)
			out = append(out, strings.Fields(v)...)
			continue
		}
		out = append(out, expandWord(w, getenv))
	}
	return out
}

func expandWord(w string, getenv func(string) (string, bool)) string {
	if !strings.Contains(w, "$") {
		return w
	}
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if w[i] != '$' || i+1 >= len(w) {
			b.WriteByte(w[i])
			continue
		}
		switch w[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(w[i+2:], '}')
			if end < 0 || !isEnvName(w[i+2:i+2+end]) {
				b.WriteByte('$')
				continue
			}
			v, _ := getenv(w[i+2 : i+2+end])
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func isEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ParseEnvFile reads an EnvironmentFile= as systemd does: KEY=VALUE lines;
// '#' and ';' begin comments; white space around keys and values is
// dropped; values may be in single quotes (verbatim) or double quotes
// (with \" \\ \$ \` escapes and a backslash-newline continuing); outside
// quotes a backslash escapes the next character and one at the end of a
// line continues it. "export KEY=VALUE" is KEY=VALUE. Lines that are not
// assignments are errors, as are oversized files.
func ParseEnvFile(b []byte) ([]string, error) {
	if len(b) > MaxEnvFile {
		return nil, fmt.Errorf("%d bytes, at most %d", len(b), MaxEnvFile)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, errors.New("a NUL byte")
	}
	var out []string
	r := bufio.NewReader(bytes.NewReader(b))
	line := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return out, nil
		}
		line++
		switch c {
		case '\n', ' ', '\t', '\r':
			if c != '\n' {
				line--
			}
			continue
		case '#', ';':
			_, _ = r.ReadString('\n')
			continue
		}
		_ = r.UnreadByte()
		key, err := r.ReadString('=')
		if err != nil || strings.Contains(key, "\n") {
			return nil, fmt.Errorf("line %d: not KEY=VALUE", line)
		}
		key = strings.TrimSpace(strings.TrimSuffix(key, "="))
		key = strings.TrimSpace(strings.TrimPrefix(key, "export "))
		if !isEnvName(key) {
			return nil, fmt.Errorf("line %d: %.60q is not a variable name", line, key)
		}
		val, lines, err := envValue(r)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		line += lines
		if len(out) >= maxEnv {
			return nil, fmt.Errorf("more than %d variables", maxEnv)
		}
		out = append(out, key+"="+val)
	}
}

// envValue reads one value up to its end of line, and says how many more
// lines it took.
func envValue(r *bufio.Reader) (string, int, error) {
	var b strings.Builder
	lines := 0
	pendingSpace := 0 // unquoted white space, kept only if more follows
	started := false
	for {
		c, err := r.ReadByte()
		if err != nil || c == '\n' {
			return b.String(), lines, nil
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			if started {
				pendingSpace++
			}
		case c == '\'' || c == '"':
			b.WriteString(strings.Repeat(" ", pendingSpace))
			pendingSpace, started = 0, true
			for {
				q, err := r.ReadByte()
				if err != nil {
					return "", lines, fmt.Errorf("unbalanced %c", c)
				}
				if q == c {
					break
				}
				if q == '\n' {
					lines++
				}
				if c == '"' && q == '\\' {
					n, err := r.ReadByte()
					if err != nil {
						return "", lines, errors.New("a trailing backslash")
					}
					switch n {
					case '"', '\\', '$', '`':
						q = n
					case '\n':
						lines++
						continue
					default:
						b.WriteByte('\\')
						q = n
					}
				}
				b.WriteByte(q)
			}
		case c == '\\':
			n, err := r.ReadByte()
			if err != nil {
				return b.String(), lines, nil
			}
			if n == '\n' {
				lines++
				continue
			}
			b.WriteString(strings.Repeat(" ", pendingSpace))
			pendingSpace, started = 0, true
			b.WriteByte(n)
		default:
			b.WriteString(strings.Repeat(" ", pendingSpace))
			pendingSpace, started = 0, true
			b.WriteByte(c)
		}
		if b.Len() > maxStrLen {
			return "", lines, fmt.Errorf("a value over %d bytes", maxStrLen)
		}
	}
}
