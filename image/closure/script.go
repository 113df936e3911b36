package closure

import (
	"bytes"
	"path"
	"strings"
)

// headSize is how much of a program the kernel reads to recognize it
// (BINPRM_BUF_SIZE).
const headSize = 256

// maxInterpreterDepth is how many "#!" interpreters may be stacked, as the
// kernel allows (a script whose interpreter is a script, and so on).
const maxInterpreterDepth = 5

// shebang parses a "#!" line as the kernel does: the interpreter is the
// first word after "#!", and the rest of the line, trimmed, is its single
// optional argument. ok is false when head is not a script or names no
// interpreter.
func shebang(head []byte) (interp, arg string, ok bool) {
	if !bytes.HasPrefix(head, []byte("#!")) {
		return "", "", false
	}
	line := head[2:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	s := strings.Trim(string(line), " \t\r")
	if s == "" {
		return "", "", false
	}
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], strings.Trim(s[i+1:], " \t"), true
	}
	return s, "", true
}

// envCommand returns the program `env ARG` runs when env is a script's
// interpreter: the first word of arg that is neither an option nor a
// NAME=value assignment ("#!/usr/bin/env -S python3 -u" runs python3).
func envCommand(arg string) string {
	words := strings.Fields(arg)
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "--":
			if i+1 < len(words) {
				return words[i+1]
			}
			return ""
		case w == "-u" || w == "--unset" || w == "-C" || w == "--chdir":
			i++ // the option's value
		case strings.HasPrefix(w, "-"):
		case strings.Contains(w, "="):
		default:
			return w
		}
	}
	return ""
}

// isEnv reports whether interpreter p is env(1).
func isEnv(p string) bool { return path.Base(p) == "env" }
