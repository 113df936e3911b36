package unit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxWords bounds the words of one command line or list directive.
const maxWords = 4096

// Command is one Exec*= line of a unit: its words before environment
// expansion (arrow-init expands $VAR and ${VAR} with the service's
// environment, which EnvironmentFile= completes only in the guest), and
// what its prefixes ask for.
type Command struct {
	// Path is the program; Args are argv, Args[0] included ('@' sets
	// Args[0] apart from Path).
	Path string
	Args []string
	// IgnoreFailure is the '-' prefix: a failing command does not fail
	// the service.
	IgnoreFailure bool
	// NoExpand is the ':' prefix: no environment variable expansion.
	NoExpand bool
	// Privileged is the '+' and '!' prefixes: the command runs as root,
	// not as User=, with the sandbox the VM is either way.
	Privileged bool
}

// parseCommand parses one Exec*= value (specifiers already expanded):
// systemd's prefixes, then words split with its quoting and C escapes.
func parseCommand(v string) (Command, error) {
	var c Command
	v = strings.TrimLeft(v, " \t\n")
	argv0 := false
prefixes:
	for len(v) > 0 {
		switch {
		case strings.HasPrefix(v, "!!"):
			// systemd ignores "!!" where the kernel has ambient
			// capabilities, as the guest kernel does: the command
			// runs as User=.
			v = v[2:]
		case v[0] == '-':
			c.IgnoreFailure, v = true, v[1:]
		case v[0] == '@':
			argv0, v = true, v[1:]
		case v[0] == ':':
			c.NoExpand, v = true, v[1:]
		case v[0] == '+' || v[0] == '!':
			c.Privileged, v = true, v[1:]
		case v[0] == '|':
			return c, errors.New("the '|' prefix (run through the user's shell) is not supported")
		default:
			break prefixes
		}
	}
	words, err := SplitWords(v)
	if err != nil {
		return c, err
	}
	for _, w := range words {
		if w == ";" {
			return c, errors.New("several commands on one line (';') are not supported: give one per line")
		}
	}
	if argv0 {
		if len(words) < 2 {
			return c, errors.New("the '@' prefix needs a program and its argv[0]")
		}
		c.Path, c.Args = words[0], words[1:]
	} else {
		if len(words) == 0 {
			return c, errors.New("no command")
		}
		c.Path, c.Args = words[0], words
	}
	if strings.HasPrefix(c.Path, "$") {
		return c, fmt.Errorf("program %q: the program must be a path or name, not a variable", c.Path)
	}
	return c, nil
}

// SplitWords splits s into words as systemd splits command lines and list
// settings: separated by white space, with single and double quotes
// (which may open mid-word) and C-style backslash escapes.
func SplitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote byte
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote == 0 && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'):
			if in {
				if len(words) >= maxWords {
					return nil, fmt.Errorf("more than %d words", maxWords)
				}
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("a trailing backslash")
			}
			r, n, err := unescape(s[i+1:])
			if err != nil {
				return nil, err
			}
			cur.WriteString(r)
			i += n
			in = true
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '"' || ch == '\''):
			quote, in = ch, true
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unbalanced quote %c", quote)
	}
	if in {
		if len(words) >= maxWords {
			return nil, fmt.Errorf("more than %d words", maxWords)
		}
		words = append(words, cur.String())
	}
	return words, nil
}

// unescape decodes the C escape at the start of s (after the backslash)
// and says how many bytes it took.
func unescape(s string) (string, int, error) {
	switch s[0] {
	case 'a':
		return "\a", 1, nil
	case 'b':
		return "\b", 1, nil
	case 'f':
		return "\f", 1, nil
	case 'n':
		return "\n", 1, nil
	case 'r':
		return "\r", 1, nil
	case 't':
		return "\t", 1, nil
	case 'v':
		return "\v", 1, nil
	case 's':
		return " ", 1, nil
	case '\\', '"', '\'', ';', ' ':
		return s[:1], 1, nil
	case '\n':
		return "", 1, nil
	case 'x':
		if len(s) >= 3 {
			if b, err := strconv.ParseUint(s[1:3], 16, 8); err == nil && b != 0 {
				return string([]byte{byte(b)}), 3, nil
			}
		}
	case '0', '1', '2', '3':
		if len(s) >= 3 {
			if b, err := strconv.ParseUint(s[:3], 8, 8); err == nil && b != 0 {
				return string([]byte{byte(b)}), 3, nil
			}
		}
	}
	return "", 0, fmt.Errorf("unknown escape \\%.1s", s)
}
