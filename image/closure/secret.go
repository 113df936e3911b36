package closure

import (
	"path"
	"strings"
)

// secretNames are base names that mark a file or directory as a secret
// wherever it is: key stores and credential files.
var secretNames = map[string]bool{
	".ssh":             true,
	".gnupg":           true,
	".aws":             true,
	".kube":            true,
	".docker":          true,
	".netrc":           true,
	".pgpass":          true,
	".git-credentials": true,
	"id_rsa":           true,
	"id_dsa":           true,
	"id_ecdsa":         true,
	"id_ecdsa_sk":      true,
	"id_ed25519":       true,
	"id_ed25519_sk":    true,
}

// secretPaths are host paths that are secrets themselves.
var secretPaths = map[string]bool{
	"/etc/shadow":      true,
	"/etc/shadow-":     true,
	"/etc/gshadow":     true,
	"/etc/gshadow-":    true,
	"/etc/ssl/private": true,
	"/etc/sudoers":     true,
	"/etc/sudoers.d":   true,
	"/root":            true,
	"/var/lib/sudo":    true,
}

// isSecret reports whether p itself (not its parents) is a host secret:
// the password and group shadow files, a private key store, the root user's
// home, a home directory under /home, an SSH host private key, or anything
// named like a user's key or credential store.
func isSecret(p string) bool {
	if secretPaths[p] {
		return true
	}
	dir, base := path.Split(p)
	if secretNames[base] {
		return true
	}
	if dir == "/home/" {
		return true
	}
	if dir == "/etc/ssh/" && strings.HasPrefix(base, "ssh_host_") && strings.HasSuffix(base, "_key") {
		return true
	}
	return false
}

// allowedSecret reports whether the guest may receive host path p, given
// the path the user typed to reach it (empty when the path was not typed
// but found: a package's file, say). A path below or at a secret (see
// [isSecret]) is allowed only when every such secret is the typed path or
// one of its ancestors: `--include /etc` leaves /etc/shadow out, while
// `--include /etc/shadow` and `--include /home/alice/src` are what the user
// asked for (and /home/alice/src/.ssh is still left out).
func allowedSecret(p, typed string) bool {
	if !maybeSecret(p) {
		return true
	}
	for q := p; ; q = path.Dir(q) {
		if isSecret(q) && !(typed == q || strings.HasPrefix(typed, q+"/")) {
			return false
		}
		if q == "/" || q == "." {
			return true
		}
	}
}

// maybeSecret is a quick test that p is not below any secret: every secret
// is in /etc, /root, /home or /var/lib/sudo, or named by secretNames (all of
// which start with "." or "id_").
func maybeSecret(p string) bool {
	return strings.HasPrefix(p, "/etc/") || strings.HasPrefix(p, "/root") ||
		strings.HasPrefix(p, "/home/") || strings.HasPrefix(p, "/var/lib/sudo") ||
		strings.Contains(p, "/.") || strings.Contains(p, "/id_")
}
