package dockerapi

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseResFilters(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want map[string][]string
		err  bool
	}{
		{"", map[string][]string{}, false},
		{`{"label":{"a=b":true,"c":true,"off":false}}`, map[string][]string{"label": {"a=b", "c"}}, false},
		{`{"label":["a=b","c"]}`, map[string][]string{"label": {"a=b", "c"}}, false},
		{`{"dangling":["true"],"label":[]}`, map[string][]string{"dangling": {"true"}}, false},
		{`{"colour":["red"]}`, nil, true},
		{`{"label":"a"}`, nil, true},
		{`{"label":`, nil, true},
		{`{"label":["` + strings.Repeat("x", maxResFilterBytes) + `"]}`, nil, true},
	} {
		r := httptest.NewRequest("GET", "/x?filters="+url.QueryEscape(tc.raw), nil)
		f, err := parseResFilters(r, "label", "dangling")
		if tc.err {
			if err == nil || !errors.Is(err, errInvalidFilter) {
				t.Errorf("%.40s: %v, want an invalid filter", tc.raw, err)
			}
			continue
		}
		if err != nil || len(f) != len(tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.raw, f, err, tc.want)
			continue
		}
		for k, vs := range tc.want {
			if strings.Join(f.values(k), ",") != strings.Join(vs, ",") {
				t.Errorf("%s: %s = %v, want %v", tc.raw, k, f.values(k), vs)
			}
		}
	}
}

func TestBoolValueAndLabels(t *testing.T) {
	for _, tc := range []struct {
		vals     []string
		v, ok, e bool
	}{
		{nil, false, false, false},
		{[]string{"true"}, true, true, false},
		{[]string{"1"}, true, true, false},
		{[]string{"False"}, false, true, false},
		{[]string{"maybe"}, false, false, true},
		{[]string{"true", "false"}, false, false, true},
	} {
		f := resFilters{}
		for _, v := range tc.vals {
			if f["dangling"] == nil {
				f["dangling"] = map[string]bool{}
			}
			f["dangling"][v] = true
		}
		v, ok, err := f.boolValue("dangling")
		if v != tc.v || ok != tc.ok || (err != nil) != tc.e {
			t.Errorf("%v: %v %v %v", tc.vals, v, ok, err)
		}
	}
	labels := map[string]string{"a": "1", "b": ""}
	for _, tc := range []struct {
		want   []string
		negate bool
		match  bool
	}{
		{[]string{"a"}, false, true},
		{[]string{"a=1", "b"}, false, true},
		{[]string{"a=2"}, false, false},
		{[]string{"b="}, false, true},
		{[]string{"c"}, false, false},
		{[]string{"c"}, true, true},
		{[]string{"a"}, true, false},
	} {
		want := map[string]bool{}
		for _, w := range tc.want {
			want[w] = true
		}
		if got := matchLabelFilter(want, labels, tc.negate); got != tc.match {
			t.Errorf("%v negate %v: %v, want %v", tc.want, tc.negate, got, tc.match)
		}
	}
}

func TestParseUntil(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"24h", now.Add(-24 * time.Hour), false},
		{"1700000000", time.Unix(1700000000, 0), false},
		{"1700000000.5", time.Unix(1700000000, 5e8), false},
		{"2024-05-06T07:08:09Z", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), false},
		{"2024-05-06", time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC), false},
		{"yesterday", time.Time{}, true},
	} {
		got, err := parseUntil(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
