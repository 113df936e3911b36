package unit

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// How is what Arrow does with a directive.
type How int

// What Arrow does with a directive.
const (
	// Honoured: the directive is translated into what the guest does.
	Honoured How = iota
	// Satisfied: a sandboxing directive the VM satisfies by itself (the
	// service is alone in a guest kernel of its own); accepted, and said
	// so in --debug.
	Satisfied
	// Ignored: metadata or the service manager's own business (restart
	// policies are arrowd's, logging is Arrow's), without effect in a VM.
	Ignored
)

func (h How) String() string {
	switch h {
	case Honoured:
		return "honoured"
	case Satisfied:
		return "satisfied by the VM"
	}
	return "ignored"
}

// Directives is the one table of the [Service] directives Arrow knows;
// a directive outside it, which could change what the service does, is
// refused with its name. Names ending in '*' are prefixes. [Unit] and
// [Install] are metadata and dependencies between units, of which an
// arrow has one: they are ignored as a whole.
var Directives = map[string]How{
	"Type": Honoured, "ExecStartPre": Honoured, "ExecStart": Honoured, "ExecStartPost": Honoured,
	"ExecStop": Honoured, "ExecStopPost": Honoured, "PIDFile": Honoured,
	"User": Honoured, "Group": Honoured, "SupplementaryGroups": Honoured,
	"RuntimeDirectory": Honoured, "StateDirectory": Honoured, "CacheDirectory": Honoured,
	"LogsDirectory": Honoured, "ConfigurationDirectory": Honoured,
	"RuntimeDirectoryMode": Honoured, "StateDirectoryMode": Honoured, "CacheDirectoryMode": Honoured,
	"LogsDirectoryMode": Honoured, "ConfigurationDirectoryMode": Honoured,
	"Environment": Honoured, "EnvironmentFile": Honoured, "WorkingDirectory": Honoured,
	"UMask": Honoured, "Limit*": Honoured, "TimeoutStopSec": Honoured, "KillSignal": Honoured,
	"TimeoutSec": Honoured, "RemainAfterExit": Honoured, "NotifyAccess": Honoured,
	"StandardInput": Honoured, "StandardOutput": Honoured, "StandardError": Honoured,

	// Sandboxing: the VM is the sandbox.
	"Protect*": Satisfied, "Private*": Satisfied, "NoNewPrivileges": Satisfied,
	"ReadWritePaths": Satisfied, "ReadOnlyPaths": Satisfied, "InaccessiblePaths": Satisfied,
	"ReadWriteDirectories": Satisfied, "ReadOnlyDirectories": Satisfied, "InaccessibleDirectories": Satisfied,
	"ExecPaths": Satisfied, "NoExecPaths": Satisfied, "TemporaryFileSystem": Satisfied,
	"CapabilityBoundingSet": Satisfied, "SystemCallFilter": Satisfied, "SystemCallArchitectures": Satisfied,
	"SystemCallErrorNumber": Satisfied, "SystemCallLog": Satisfied,
	"RestrictAddressFamilies": Satisfied, "RestrictNamespaces": Satisfied,
	"RestrictRealtime": Satisfied, "RestrictSUIDSGID": Satisfied, "RestrictFileSystems": Satisfied,
	"LockPersonality": Satisfied, "MemoryDenyWriteExecute": Satisfied, "RemoveIPC": Satisfied,
	"DevicePolicy": Satisfied, "DeviceAllow": Satisfied, "KeyringMode": Satisfied,
	"ProcSubset": Satisfied, "IPAddressAllow": Satisfied, "IPAddressDeny": Satisfied,
	"RuntimeDirectoryPreserve": Satisfied, "UnsetEnvironment": Honoured,

	// The service manager's business, or what the VM's size decides.
	"Restart": Ignored, "RestartSec": Ignored, "RestartPreventExitStatus": Ignored,
	"RestartForceExitStatus": Ignored, "SuccessExitStatus": Ignored,
	"TimeoutStartSec": Ignored, "TimeoutAbortSec": Ignored, "WatchdogSec": Ignored,
	"StartLimitInterval": Ignored, "StartLimitBurst": Ignored, "StartLimitIntervalSec": Ignored,
	"ExecReload": Ignored, "ExecCondition": Ignored, "KillMode": Ignored, "SendSIGKILL": Ignored,
	"SendSIGHUP": Ignored, "FinalKillSignal": Ignored, "RestartKillSignal": Ignored,
	"SyslogIdentifier": Ignored, "SyslogFacility": Ignored, "SyslogLevel": Ignored,
	"SyslogLevelPrefix": Ignored, "LogLevelMax": Ignored, "LogRateLimitIntervalSec": Ignored,
	"LogRateLimitBurst": Ignored, "LogExtraFields": Ignored,
	"OOMScoreAdjust": Ignored, "OOMPolicy": Ignored, "Slice": Ignored, "Delegate": Ignored,
	"CPUAccounting": Ignored, "MemoryAccounting": Ignored, "TasksAccounting": Ignored,
	"IOAccounting": Ignored, "IPAccounting": Ignored, "BlockIOAccounting": Ignored,
	"TasksMax": Ignored, "MemoryMax": Ignored, "MemoryHigh": Ignored, "MemoryLimit": Ignored,
	"CPUQuota": Ignored, "CPUWeight": Ignored, "CPUShares": Ignored, "IOWeight": Ignored,
	"GuessMainPID": Ignored, "UtmpIdentifier": Ignored, "UtmpMode": Ignored,
	"NonBlocking": Ignored, "FileDescriptorStoreMax": Ignored, "ConfigurationDirectoryPreserve": Ignored,
}

// lookup returns how Arrow takes the directive name.
func lookup(name string) (How, bool) {
	if h, ok := Directives[name]; ok {
		return h, true
	}
	for k, h := range Directives {
		if p, ok := strings.CutSuffix(k, "*"); ok && strings.HasPrefix(name, p) {
			return h, true
		}
	}
	return 0, false
}

// Service types of [Service.Type].
const (
	TypeSimple  = "simple"
	TypeExec    = "exec"
	TypeForking = "forking"
	TypeNotify  = "notify"
	TypeOneshot = "oneshot"
)

// Dir is a directory systemd makes for the service (RuntimeDirectory= and
// the others): Path is absolute, Mode its permission bits; Owned says it
// belongs to the service's user (every kind but ConfigurationDirectory=).
type Dir struct {
	Path  string
	Mode  uint32
	Owned bool
}

// Rlimit is one Limit*= directive: the resource's lower-case name
// ("nofile") and its soft and hard limits (math.MaxUint64: infinity).
type Rlimit struct {
	Type       string
	Soft, Hard uint64
}

// EnvFile is one EnvironmentFile= line; the file is read in the guest.
type EnvFile struct {
	Path     string
	Optional bool
}

// Service is a service unit translated: what the guest runs, and how.
type Service struct {
	// Name is the unit's name after aliases (redis-server.service).
	Name string
	// Files are the unit's main file and drop-ins, as read.
	Files []string
	Type  string
	// Pre, Start, Post, Stop and StopPost are ExecStartPre= and the
	// others, in order. Start has one command but for oneshot.
	Pre, Start, Post, Stop, StopPost []Command
	// PIDFile is where a forking service's daemon writes its PID.
	PIDFile string
	// User and Group are names or numbers, resolved in the root the
	// service runs in; empty: root. Groups are SupplementaryGroups=.
	User, Group string
	Groups      []string
	// Env are Environment= assignments, KEY=value, in order; Unset are
	// UnsetEnvironment= names; EnvFiles are read in the guest and
	// override Env.
	Env      []string
	Unset    []string
	EnvFiles []EnvFile
	// Dir is WorkingDirectory=; DirOptional its '-' prefix; "~" is the
	// user's home.
	Dir         string
	DirOptional bool
	// UMask is UMask= (systemd's default 0022).
	UMask   uint32
	Rlimits []Rlimit
	Dirs    []Dir
	// TimeoutStop is TimeoutStopSec= (0: none, wait for ever);
	// KillSignal the signal `arrow stop` sends (after ExecStop=).
	TimeoutStop time.Duration
	KillSignal  unix.Signal
	// Notes say what was satisfied or ignored, for --debug.
	Notes []string
}

// Default directory roots and modes of the *Directory= directives.
var dirKinds = []struct {
	directive, root string
	owned           bool
}{
	{"RuntimeDirectory", "/run", true},
	{"StateDirectory", "/var/lib", true},
	{"CacheDirectory", "/var/cache", true},
	{"LogsDirectory", "/var/log", true},
	{"ConfigurationDirectory", "/etc", false},
}

// Translate reads l's directives with systemd's semantics into a Service.
func Translate(l *Loaded) (*Service, error) {
	s := &Service{Name: l.Name.Full, Type: TypeSimple, UMask: 0o022, KillSignal: unix.SIGTERM, TimeoutStop: 90 * time.Second}
	sp := specifiers{name: l.Name}
	// Values per directive, with resets applied, in order.
	vals := map[string][]string{}
	var order []string
	noted := map[string]bool{}
	for _, f := range l.Files {
		s.Files = append(s.Files, f.Path)
		sp.file = f.Path
		for _, o := range f.Options {
			switch o.Section {
			case "Unit", "Install":
				continue
			case "Service":
			default:
				if strings.HasPrefix(o.Section, "X-") {
					continue
				}
				return nil, fmt.Errorf("%s: section [%s] is not supported in a service unit", f.Path, o.Section)
			}
			how, ok := lookup(o.Name)
			if !ok {
				return nil, fmt.Errorf("%s: %s= is not supported by Arrow (it would change what the service does)", f.Path, o.Name)
			}
			if how != Honoured {
				if !noted[o.Name] {
					noted[o.Name] = true
					s.Notes = append(s.Notes, fmt.Sprintf("%s=: %s", o.Name, how))
				}
				continue
			}
			v, err := sp.expand(o.Value, s.User)
			if err != nil {
				return nil, fmt.Errorf("%s: %s=: %w", f.Path, o.Name, err)
			}
			if _, seen := vals[o.Name]; !seen {
				order = append(order, o.Name)
			}
			if v == "" {
				// An empty assignment resets the list (and any other
				// setting to its default).
				vals[o.Name] = []string{}
				continue
			}
			vals[o.Name] = append(vals[o.Name], v)
			if o.Name == "User" {
				s.User = v
			}
		}
	}
	last := func(name string) string {
		if v := vals[name]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for _, name := range order {
		if err := s.set(name, vals[name], last(name)); err != nil {
			return nil, fmt.Errorf("unit %s: %s=: %w", s.Name, name, err)
		}
	}
	// Modes come after their directories, whatever the order given.
	for _, k := range dirKinds {
		mode := uint64(0o755)
		if m := last(k.directive + "Mode"); m != "" {
			var err error
			if mode, err = strconv.ParseUint(m, 8, 32); err != nil || mode > 0o7777 {
				return nil, fmt.Errorf("unit %s: %sMode=%q: want an octal mode", s.Name, k.directive, m)
			}
		}
		for _, v := range vals[k.directive] {
			words, err := SplitWords(v)
			if err != nil {
				return nil, fmt.Errorf("unit %s: %s=: %w", s.Name, k.directive, err)
			}
			for _, w := range words {
				if strings.Contains(w, ":") {
					return nil, fmt.Errorf("unit %s: %s=%s: the SOURCE:LINK form is not supported", s.Name, k.directive, w)
				}
				if path.IsAbs(w) || path.Clean(w) != w || w == "." || strings.HasPrefix(w, "../") || w == ".." {
					return nil, fmt.Errorf("unit %s: %s=%q: want a relative path below %s", s.Name, k.directive, w, k.root)
				}
				s.Dirs = append(s.Dirs, Dir{Path: path.Join(k.root, w), Mode: uint32(mode), Owned: k.owned})
			}
		}
	}
	return s, s.check()
}

// set applies one honoured directive's values (vals, resets applied;
// last, the one that counts for a single-valued setting).
func (s *Service) set(name string, vals []string, last string) error {
	cmds := func() ([]Command, error) {
		var out []Command
		for _, v := range vals {
			c, err := parseCommand(v)
			if err != nil {
				return nil, fmt.Errorf("%.200q: %w", v, err)
			}
			out = append(out, c)
		}
		return out, nil
	}
	var err error
	switch {
	case name == "Type":
		switch last {
		case "", TypeSimple, "idle":
			s.Type = TypeSimple
		case TypeExec, TypeForking, TypeNotify, TypeOneshot:
			s.Type = last
		case "notify-reload":
			s.Type = TypeNotify
		default:
			return fmt.Errorf("%q is not supported (simple, exec, forking, notify, oneshot, idle)", last)
		}
	case name == "ExecStartPre":
		s.Pre, err = cmds()
	case name == "ExecStart":
		s.Start, err = cmds()
	case name == "ExecStartPost":
		s.Post, err = cmds()
	case name == "ExecStop":
		s.Stop, err = cmds()
	case name == "ExecStopPost":
		s.StopPost, err = cmds()
	case name == "PIDFile":
		if last != "" && !path.IsAbs(last) {
			last = path.Join("/run", last)
		}
		s.PIDFile = path.Clean(last)
		if last == "" {
			s.PIDFile = ""
		}
	case name == "User":
		s.User = last
	case name == "Group":
		s.Group = last
	case name == "SupplementaryGroups":
		s.Groups = nil
		for _, v := range vals {
			w, err := SplitWords(v)
			if err != nil {
				return err
			}
			s.Groups = append(s.Groups, w...)
		}
	case name == "Environment":
		s.Env = nil
		for _, v := range vals {
			w, err := SplitWords(v)
			if err != nil {
				return err
			}
			for _, e := range w {
				if k, _, ok := strings.Cut(e, "="); !ok || !validEnvName(k) {
					return fmt.Errorf("%.100q is not KEY=value", e)
				}
			}
			s.Env = append(s.Env, w...)
		}
	case name == "UnsetEnvironment":
		s.Unset = nil
		for _, v := range vals {
			w, err := SplitWords(v)
			if err != nil {
				return err
			}
			s.Unset = append(s.Unset, w...)
		}
	case name == "EnvironmentFile":
		s.EnvFiles = nil
		for _, v := range vals {
			f := EnvFile{Path: v}
			f.Path, f.Optional = strings.CutPrefix(v, "-")
			if !path.IsAbs(f.Path) {
				return fmt.Errorf("%q is not an absolute path", f.Path)
			}
			if strings.ContainsAny(f.Path, "*?[") {
				return fmt.Errorf("%q: globs are not supported", f.Path)
			}
			s.EnvFiles = append(s.EnvFiles, f)
		}
	case name == "WorkingDirectory":
		s.Dir, s.DirOptional = strings.CutPrefix(last, "-")
		if s.Dir != "" && s.Dir != "~" && !path.IsAbs(s.Dir) {
			return fmt.Errorf("%q: want an absolute path or ~", s.Dir)
		}
	case name == "UMask":
		m, err := strconv.ParseUint(last, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("%q: want an octal mask", last)
		}
		s.UMask = uint32(m)
	case strings.HasPrefix(name, "Limit"):
		r, err := parseRlimit(name, last)
		if err != nil {
			return err
		}
		s.Rlimits = slices.DeleteFunc(s.Rlimits, func(o Rlimit) bool { return o.Type == r.Type })
		if last != "" {
			s.Rlimits = append(s.Rlimits, r)
		}
	case name == "TimeoutStopSec" || name == "TimeoutSec":
		d, err := ParseTimespan(last)
		if err != nil {
			return err
		}
		s.TimeoutStop = d
	case name == "KillSignal":
		sig, err := parseSignal(last)
		if err != nil {
			return err
		}
		s.KillSignal = sig
	case name == "StandardInput":
		if last != "null" && last != "" {
			return fmt.Errorf("%q: a service's input is /dev/null in an arrow", last)
		}
	case name == "StandardOutput" || name == "StandardError":
		// The journal, syslog and the console are the arrow's log.
		switch last {
		case "", "inherit", "journal", "syslog", "kmsg", "journal+console", "syslog+console", "kmsg+console", "tty":
		default:
			return fmt.Errorf("%q is not supported: a service's output goes to the arrow's log", last)
		}
	case name == "RemainAfterExit", name == "NotifyAccess":
		// An arrow is its service: it ends when the service does, and
		// arrow-init takes notifications from any of the service's
		// processes (there are no others).
	case strings.HasSuffix(name, "Directory") || strings.HasSuffix(name, "DirectoryMode"):
		// Read in Translate, once every value is known.
	default:
		return errors.New("not handled (a bug: it is in the table)")
	}
	return err
}

// check reports what makes the service impossible to run.
func (s *Service) check() error {
	switch {
	case len(s.Start) == 0 && s.Type != TypeOneshot:
		return fmt.Errorf("unit %s has no ExecStart=", s.Name)
	case len(s.Start) == 0:
		return fmt.Errorf("unit %s: a oneshot service without ExecStart= does nothing in an arrow", s.Name)
	case len(s.Start) > 1 && s.Type != TypeOneshot:
		return fmt.Errorf("unit %s: %d ExecStart= lines: only Type=oneshot may have several", s.Name, len(s.Start))
	case s.Type == TypeForking && s.PIDFile == "":
		return fmt.Errorf("unit %s: Type=forking without PIDFile=: Arrow supervises a forking daemon through its PID file", s.Name)
	}
	for _, c := range slices.Concat(s.Pre, s.Start, s.Post, s.Stop, s.StopPost) {
		if !path.IsAbs(c.Path) && strings.Contains(c.Path, "/") {
			return fmt.Errorf("unit %s: program %q: want an absolute path or a bare name", s.Name, c.Path)
		}
	}
	return nil
}

// validEnvName reports whether k is a variable name systemd accepts.
func validEnvName(k string) bool {
	if k == "" || len(k) > 4096 || k[0] >= '0' && k[0] <= '9' {
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

// rlimitNames maps Limit*= directives to rlimit names.
var rlimitNames = map[string]string{
	"LimitCPU": "cpu", "LimitFSIZE": "fsize", "LimitDATA": "data", "LimitSTACK": "stack",
	"LimitCORE": "core", "LimitRSS": "rss", "LimitNOFILE": "nofile", "LimitAS": "as",
	"LimitNPROC": "nproc", "LimitMEMLOCK": "memlock", "LimitLOCKS": "locks",
	"LimitSIGPENDING": "sigpending", "LimitMSGQUEUE": "msgqueue", "LimitNICE": "nice",
	"LimitRTPRIO": "rtprio", "LimitRTTIME": "rttime",
}

// parseRlimit reads a Limit*= value: one limit for both, or SOFT:HARD;
// each a number (sizes may take K, M, G, T, P, E: powers of 1024; CPU
// seconds and RTTIME microseconds as numbers only) or "infinity".
func parseRlimit(name, v string) (Rlimit, error) {
	t, ok := rlimitNames[name]
	if !ok {
		return Rlimit{}, fmt.Errorf("unknown limit %s", name)
	}
	r := Rlimit{Type: t}
	if v == "" {
		return r, nil
	}
	soft, hard, two := strings.Cut(v, ":")
	one := func(s string) (uint64, error) {
		if s == "infinity" {
			return math.MaxUint64, nil
		}
		mult := uint64(1)
		if n := len(s); n > 0 && (t != "cpu" && t != "rttime" && t != "nice") {
			if i := strings.IndexByte("KMGTPE", s[n-1]); i >= 0 {
				mult = 1 << (10 * (i + 1))
				s = s[:n-1]
			}
		}
		if t == "cpu" {
			s = strings.TrimSuffix(s, "s")
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > math.MaxUint64/mult {
			return 0, fmt.Errorf("%q: want a number or infinity", v)
		}
		return n * mult, nil
	}
	var err error
	if r.Soft, err = one(soft); err != nil {
		return r, err
	}
	r.Hard = r.Soft
	if two {
		if r.Hard, err = one(hard); err != nil {
			return r, err
		}
	}
	if r.Soft > r.Hard {
		return r, fmt.Errorf("%q: the soft limit is above the hard one", v)
	}
	return r, nil
}

// ParseTimespan reads a systemd time span: "90", "5s", "1min 30s",
// "500ms", "1h"; "infinity" and 0 mean no timeout (0).
func ParseTimespan(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "infinity" || v == "" {
		return 0, nil
	}
	units := []struct {
		name string
		d    time.Duration
	}{
		{"usec", time.Microsecond}, {"us", time.Microsecond}, {"µs", time.Microsecond},
		{"msec", time.Millisecond}, {"ms", time.Millisecond},
		{"seconds", time.Second}, {"second", time.Second}, {"sec", time.Second}, {"s", time.Second},
		{"minutes", time.Minute}, {"minute", time.Minute}, {"min", time.Minute}, {"m", time.Minute},
		{"hours", time.Hour}, {"hour", time.Hour}, {"hr", time.Hour}, {"h", time.Hour},
		{"days", 24 * time.Hour}, {"day", 24 * time.Hour}, {"d", 24 * time.Hour},
		{"weeks", 7 * 24 * time.Hour}, {"week", 7 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
	}
	var total time.Duration
	rest := v
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q: want a time span (90, 5s, 1min 30s, infinity)", v)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: want a time span", v)
		}
		rest = strings.TrimLeft(rest[i:], " ")
		unit := time.Second
		for _, u := range units {
			if strings.HasPrefix(rest, u.name) {
				unit, rest = u.d, rest[len(u.name):]
				break
			}
		}
		add := n * float64(unit)
		if add > float64(365*24*time.Hour) || total+time.Duration(add) < total {
			return 0, fmt.Errorf("%q: too long", v)
		}
		total += time.Duration(add)
	}
	return total, nil
}

// parseSignal reads a signal: SIGTERM, TERM or a number.
func parseSignal(v string) (unix.Signal, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %d: want 1 to 64", n)
		}
		return unix.Signal(n), nil
	}
	name := v
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if s := unix.SignalNum(name); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("%q is not a signal", v)
}
