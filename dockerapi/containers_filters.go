package dockerapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/arrowsys/arrow/api"
)

// dockerFilters are a request's filters: each key's set of values.
type dockerFilters map[string]map[string]bool

// maxFilterBytes bounds the filters query parameter.
const maxFilterBytes = 64 << 10

// parseDockerFilters reads the filters query parameter, in the shape of
// API 1.22 and later ({"label": {"a=b": true}}) or the older one that
// docker-py still sends ({"label": ["a=b"]}).
func parseDockerFilters(r *http.Request) (dockerFilters, error) {
	s := r.URL.Query().Get("filters")
	if s == "" {
		return dockerFilters{}, nil
	}
	if len(s) > maxFilterBytes {
		return nil, invalidf("filters: longer than %d bytes", maxFilterBytes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, invalidf("invalid filter: filters: %v", err)
	}
	out := dockerFilters{}
	for k, v := range raw {
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
			return nil, invalidf("invalid filter: %q: want a list or a set of values", k)
		}
		if len(set) > 0 {
			out[k] = set
		}
	}
	return out, nil
}

// parseTimeParam parses since and until as dockerd does: Unix seconds
// (with a fraction), an RFC 3339 time, or a duration before now.
func parseTimeParam(s string, now time.Time) (time.Time, error) {
	return api.ParseSince(s, now)
}
