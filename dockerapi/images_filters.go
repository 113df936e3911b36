package dockerapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// resFilters are the filters of a request on images, networks or volumes:
// each key's set of values. (Named apart from the containers' parser so
// that the two files can evolve separately.)
type resFilters map[string]map[string]bool

// maxResFilterBytes bounds the filters query parameter.
const maxResFilterBytes = 64 << 10

// errInvalidFilter marks a malformed or unknown filter: 400.
var errInvalidFilter = fmt.Errorf("invalid filter")

// parseResFilters reads the filters query parameter: JSON in the shape of
// API 1.22 and later ({"label": {"a=b": true}}) or the older list shape
// that docker-py still sends ({"label": ["a=b"]}). Keys not in allowed
// are errors, as dockerd's "invalid filter 'x'".
func parseResFilters(r *http.Request, allowed ...string) (resFilters, error) {
	s := r.URL.Query().Get("filters")
	out := resFilters{}
	if s == "" {
		return out, nil
	}
	if len(s) > maxResFilterBytes {
		return nil, fmt.Errorf("%w: filters longer than %d bytes", errInvalidFilter, maxResFilterBytes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("%w: filters: %w", errInvalidFilter, err)
	}
	for k, v := range raw {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%w '%s'", errInvalidFilter, k)
		}
		set := map[string]bool{}
		var m map[string]bool
		var l []string
		switch {
		case json.Unmarshal(v, &m) == nil:
			for val, on := range m {
				if on {
					set[val] = true
				}
			}
		case json.Unmarshal(v, &l) == nil:
			for _, val := range l {
				set[val] = true
			}
		default:
			return nil, fmt.Errorf("%w '%s': want a list or a set of values", errInvalidFilter, k)
		}
		if len(set) > 0 {
			out[k] = set
		}
	}
	return out, nil
}

// values returns key's values, sorted.
func (f resFilters) values(key string) []string {
	var out []string
	for v := range f[key] {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// boolValue reads a boolean filter (dangling): ok false when absent, an
// error when it is not one boolean.
func (f resFilters) boolValue(key string) (v, ok bool, err error) {
	vals := f.values(key)
	switch {
	case len(vals) == 0:
		return false, false, nil
	case len(vals) > 1:
		return false, false, fmt.Errorf("%w: %s: want one of true or false, got %q", errInvalidFilter, key, vals)
	}
	switch strings.ToLower(vals[0]) {
	case "true", "1":
		return true, true, nil
	case "false", "0":
		return false, true, nil
	}
	return false, false, fmt.Errorf("%w: %s: invalid value %q, want true or false", errInvalidFilter, key, vals[0])
}

// matchLabelFilter reports whether labels satisfy every label filter:
// "key" (present) or "key=value" (that value). negate inverts each, for
// the prune filter "label!".
func matchLabelFilter(want map[string]bool, labels map[string]string, negate bool) bool {
	for w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, present := labels[k]
		ok := present && (!hasValue || got == v)
		if ok == negate {
			return false
		}
	}
	return true
}

// matchAny reports whether any of want satisfies f; true when want is
// empty (the filter is not set).
func matchAny(want map[string]bool, f func(string) bool) bool {
	if len(want) == 0 {
		return true
	}
	for w := range want {
		if f(w) {
			return true
		}
	}
	return false
}
