package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Option is one setting of a Kconfig file.
type Option struct {
	// Name is the full symbol name, including the CONFIG_ prefix.
	Name string
	// Value is "y", "m", "n" (for "# CONFIG_X is not set"), a number or a
	// quoted string, exactly as written.
	Value string
	// Line is the 1-based line number in the parsed file.
	Line int
}

var (
	setRe   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRe = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	valueRe = regexp.MustCompile(`^(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$`)
)

// ParseFragment parses a Kconfig fragment strictly: every line must be
// blank, a comment, `CONFIG_X=<y|m|n|number|"string">` or
// `# CONFIG_X is not set`, and no symbol may be set twice.
func ParseFragment(data []byte) ([]Option, error) {
	opts, err := parseConfig(data, true)
	if err != nil {
		return nil, fmt.Errorf("parse kernel config fragment: %w", err)
	}
	return opts, nil
}

// parseConfig parses a fragment or a full .config. In strict mode malformed
// lines and duplicate symbols are errors; otherwise they are ignored (a
// later setting wins, as in Kconfig).
func parseConfig(data []byte, strict bool) ([]Option, error) {
	var opts []Option
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		var o Option
		switch {
		case line == "":
			continue
		case unsetRe.MatchString(line):
			o = Option{Name: unsetRe.FindStringSubmatch(line)[1], Value: "n", Line: n}
		case strings.HasPrefix(line, "#"):
			continue
		case setRe.MatchString(line):
			m := setRe.FindStringSubmatch(line)
			if strict && !valueRe.MatchString(m[2]) {
				return nil, fmt.Errorf("line %d: bad value %q for %s", n, m[2], m[1])
			}
			o = Option{Name: m[1], Value: m[2], Line: n}
		default:
			if strict {
				return nil, fmt.Errorf("line %d: not a config line: %q", n, line)
			}
			continue
		}
		if prev, dup := seen[o.Name]; dup {
			if strict {
				return nil, fmt.Errorf("line %d: %s already set on line %d", n, o.Name, opts[prev].Line)
			}
			opts[prev] = o
			continue
		}
		seen[o.Name] = len(opts)
		opts = append(opts, o)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return opts, nil
}

// Mismatch is a fragment option that the final .config does not honour.
type Mismatch struct {
	// Name is the symbol, with the CONFIG_ prefix.
	Name string
	// Want is the value the fragment asks for ("n" for not set).
	Want string
	// Got is the value in the final .config ("n" when absent or not set).
	Got string
}

// VerifyError lists fragment options that Kconfig dropped or changed,
// typically because of unmet dependencies.
type VerifyError struct {
	Mismatches []Mismatch
}

// Error names each option that was not honoured.
func (e *VerifyError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = fmt.Sprintf("%s (want %s, got %s)", m.Name, describe(m.Want), describe(m.Got))
	}
	return fmt.Sprintf("%d kernel config option(s) not honoured, check their dependencies: %s",
		len(parts), strings.Join(parts, ", "))
}

func describe(v string) string {
	if v == "n" {
		return "not set"
	}
	return v
}

// Verify checks that a final .config honours every option of a fragment:
// each `CONFIG_X=value` must appear with the same value and each
// `# CONFIG_X is not set` must not be enabled. It returns a *VerifyError
// naming every option that differs.
func Verify(fragment, dotConfig []byte) error {
	want, err := ParseFragment(fragment)
	if err != nil {
		return err
	}
	haveOpts, err := parseConfig(dotConfig, false)
	if err != nil {
		return fmt.Errorf("parse .config: %w", err)
	}
	have := make(map[string]string, len(haveOpts))
	for _, o := range haveOpts {
		have[o.Name] = o.Value
	}
	var bad []Mismatch
	for _, w := range want {
		got, ok := have[w.Name]
		if !ok {
			got = "n"
		}
		if got != w.Value {
			bad = append(bad, Mismatch{Name: w.Name, Want: w.Value, Got: got})
		}
	}
	if len(bad) > 0 {
		sort.Slice(bad, func(i, j int) bool { return bad[i].Name < bad[j].Name })
		return &VerifyError{Mismatches: bad}
	}
	return nil
}
