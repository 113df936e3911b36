package unit

import (
	"fmt"
	"path"
	"strings"

	sdunit "github.com/coreos/go-systemd/v22/unit"
)

// specifiers expands systemd's %-specifiers of one unit.
type specifiers struct {
	name Name
	file string // the file being read, for %y and %Y
}

// expand replaces the specifiers in v. user is User= so far, for %u and
// %h. A specifier whose value only the running system knows (the host
// name, machine and boot IDs, the OS release) is refused: the unit runs
// in an arrow, whose values are not the host's.
func (sp specifiers) expand(v, user string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 >= len(v) {
			return "", fmt.Errorf("%.100q ends in a lone %%", v)
		}
		i++
		r, err := sp.value(v[i], user)
		if err != nil {
			return "", err
		}
		b.WriteString(r)
	}
	return b.String(), nil
}

// value is the value of specifier c.
func (sp specifiers) value(c byte, user string) (string, error) {
	n := sp.name
	prefix := n.Prefix
	switch c {
	case '%':
		return "%", nil
	case 'n':
		return n.Full, nil
	case 'N':
		return strings.TrimSuffix(n.Full, ".service"), nil
	case 'p':
		return prefix, nil
	case 'P':
		return sdunit.UnitNameUnescape(prefix), nil
	case 'i':
		return n.Instance, nil
	case 'I':
		return sdunit.UnitNameUnescape(n.Instance), nil
	case 'j':
		return prefix[strings.LastIndexByte(prefix, '-')+1:], nil
	case 'J':
		return sdunit.UnitNameUnescape(prefix[strings.LastIndexByte(prefix, '-')+1:]), nil
	case 'f':
		if n.Instance != "" {
			return "/" + strings.TrimPrefix(sdunit.UnitNamePathUnescape(n.Instance), "/"), nil
		}
		return "/" + strings.TrimPrefix(sdunit.UnitNamePathUnescape(prefix), "/"), nil
	case 't':
		return "/run", nil
	case 'S':
		return "/var/lib", nil
	case 'C':
		return "/var/cache", nil
	case 'L':
		return "/var/log", nil
	case 'E':
		return "/etc", nil
	case 'T':
		return "/tmp", nil
	case 'V':
		return "/var/tmp", nil
	case 'y':
		return sp.file, nil
	case 'Y':
		return path.Dir(sp.file), nil
	case 's':
		return "/bin/sh", nil
	case 'a':
		return "x86-64", nil
	case 'u':
		if user == "" {
			return "root", nil
		}
		return user, nil
	case 'h':
		if user == "" || user == "root" || user == "0" {
			return "/root", nil
		}
		return "", fmt.Errorf("%%h (the home of User=%s) is not supported", user)
	case 'U', 'g', 'G', 'H', 'l', 'q', 'm', 'b', 'o', 'w', 'W', 'A', 'B', 'M', 'v', 'd':
		return "", fmt.Errorf("the specifier %%%c (known only to the running system, which is the arrow's) is not supported", c)
	}
	return "", fmt.Errorf("unknown specifier %%%c", c)
}
