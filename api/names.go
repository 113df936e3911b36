package api

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNetworkAliases bounds Config.NetworkAliases: compose gives a
// container one or two (its service name, perhaps its short ID); the bound
// keeps a network's DNS table small whatever a client sends.
const MaxNetworkAliases = 32

// maxAliasLen is a DNS name's limit in its text form (RFC 1035 allows 255
// octets on the wire, 253 characters written without the final dot).
const maxAliasLen = 253

// ValidateNetworkAlias checks a name an arrow's bridge network resolves
// to it: dot-separated labels of 1 to 63 letters, digits, '-' or '_', none
// starting or ending with '-', at most 253 characters in all. '_' is
// outside RFC 1123's host names but in compose's service names, which
// become aliases; resolvers carry it unchanged.
func ValidateNetworkAlias(alias string) error {
	bad := func(why string) error {
		return fmt.Errorf("network alias %.80q: %s (want DNS labels of letters, digits, '-' and '_', separated by dots)", alias, why)
	}
	if alias == "" {
		return bad("empty")
	}
	if len(alias) > maxAliasLen {
		return bad(fmt.Sprintf("longer than %d characters", maxAliasLen))
	}
	for _, label := range strings.Split(alias, ".") {
		switch {
		case label == "":
			return bad("an empty label")
		case len(label) > 63:
			return bad("a label longer than 63 characters")
		case label[0] == '-' || label[len(label)-1] == '-':
			return bad("a label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' && c != '_' {
				return bad(fmt.Sprintf("the character %q", c))
			}
		}
	}
	return nil
}

// validateAliases checks c.NetworkAliases: only on a bridge network (the
// user-mode network has no DNS of Arrow's to answer them), each valid,
// bounded in number, none twice.
func (c *Config) validateAliases() error {
	if len(c.NetworkAliases) == 0 {
		return nil
	}
	if c.Network == "" || c.Network == "user" || c.Network == "none" {
		return fmt.Errorf("config: network aliases are names on a bridge network, and network %q is none (create one with arrow network create)", c.Network)
	}
	if len(c.NetworkAliases) > MaxNetworkAliases {
		return fmt.Errorf("config: %d network aliases: at most %d", len(c.NetworkAliases), MaxNetworkAliases)
	}
	seen := make(map[string]bool, len(c.NetworkAliases))
	for _, a := range c.NetworkAliases {
		if err := ValidateNetworkAlias(a); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		// DNS names are case-insensitive: Web and web are one alias.
		k := strings.ToLower(a)
		if seen[k] {
			return fmt.Errorf("config: network alias %q given twice", a)
		}
		seen[k] = true
	}
	return nil
}

// ValidateLabels checks labels as every labelled object takes them (an
// arrow's config, a network, a volume): at most 256, each with a
// non-empty key, key and value at most 4 KiB together, no NUL byte.
func ValidateLabels(labels map[string]string) error { return checkLabels(labels) }

// Validate checks a network's creation request: its name, subnet syntax
// is left to the daemon (which knows the host's routes), its labels.
func (r *NetworkCreateRequest) Validate() error {
	if !ValidNetworkName(r.Name) {
		return fmt.Errorf("network name %q: want a letter or digit, then letters, digits, '_', '.' or '-' (at most %d; not user or none)", r.Name, MaxNetworkNameLen)
	}
	if err := checkLabels(r.Labels); err != nil {
		return fmt.Errorf("network %s: %w", r.Name, err)
	}
	return nil
}

// Validate checks a volume's creation request: its name and labels.
func (r *VolumeCreateRequest) Validate() error {
	if err := ValidateVolumeName(r.Name); err != nil {
		return err
	}
	if err := checkLabels(r.Labels); err != nil {
		return fmt.Errorf("volume %s: %w", r.Name, err)
	}
	return nil
}

// errEmptyNewName is Rename's answer to an empty name.
var errEmptyNewName = errors.New("rename: the new name is empty (want ?name=NEW)")

// ValidateNewName checks the new name of an arrow that is renamed.
func ValidateNewName(name string) error {
	if name == "" {
		return errEmptyNewName
	}
	if !ValidName(name) {
		return fmt.Errorf("rename: name %.80q: want a letter or digit, then letters, digits, '_', '.' or '-' (at most %d)", name, maxNameLen)
	}
	return nil
}
