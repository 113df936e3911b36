package dockerapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/arrowsys/arrow/api"
)

func TestEventOf(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	code := 3
	who := actorOf{name: "web1", image: "busybox", labels: map[string]string{"com.docker.compose.service": "web"}}
	for _, tc := range []struct {
		e     api.Event
		attrs map[string]string
	}{
		{api.Event{Type: "die", ExitCode: &code}, map[string]string{"exitCode": "3"}},
		{api.Event{Type: "kill", Detail: "terminated"}, map[string]string{"signal": "15"}},
		{api.Event{Type: "kill", Detail: "user defined signal 1"}, map[string]string{"signal": "10"}},
		{api.Event{Type: "kill", Detail: "SIGKILL"}, map[string]string{"signal": "9"}},
		{api.Event{Type: "start"}, map[string]string{}},
	} {
		tc.e.Time, tc.e.ID, tc.e.Name = at, "abc", "web1"
		m := eventOf(&tc.e, who)
		if m.Type != events.ContainerEventType || string(m.Action) != tc.e.Type || m.Actor.ID != "abc" || m.Time != at.Unix() || m.TimeNano != at.UnixNano() || m.Scope != "local" {
			t.Errorf("%s: %+v", tc.e.Type, m.Message)
		}
		if m.Status != tc.e.Type || m.ID != "abc" || m.From != "busybox" {
			t.Errorf("%s: the fields of API 1.51 and before: %q %q %q", tc.e.Type, m.Status, m.ID, m.From)
		}
		attrs := m.Actor.Attributes
		if attrs["name"] != "web1" || attrs["image"] != "busybox" || attrs["com.docker.compose.service"] != "web" {
			t.Errorf("%s: attributes %v", tc.e.Type, attrs)
		}
		for k, v := range tc.attrs {
			if attrs[k] != v {
				t.Errorf("%s: attribute %s = %q, want %q", tc.e.Type, k, attrs[k], v)
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"Type":"container"`, `"Action":"` + tc.e.Type + `"`, `"status":"` + tc.e.Type + `"`, `"timeNano":`} {
			if !strings.Contains(string(b), key) {
				t.Errorf("%s: %s lacks %s", tc.e.Type, b, key)
			}
		}
	}
}

func TestEventFilter(t *testing.T) {
	e := api.Event{Type: "die", ID: "abcdef", Name: "web1", Time: time.Now()}
	m := eventOf(&e, actorOf{name: "web1", image: "busybox:latest", labels: map[string]string{"com.docker.compose.project": "p"}})
	for _, tc := range []struct {
		f    dockerFilters
		want bool
	}{
		{dockerFilters{}, true},
		{dockerFilters{"type": {"container": true}}, true},
		{dockerFilters{"type": {"image": true}}, false},
		{dockerFilters{"event": {"die": true, "start": true}}, true},
		{dockerFilters{"event": {"start": true}}, false},
		{dockerFilters{"container": {"web1": true}}, true},
		{dockerFilters{"container": {"abc": true}}, true},
		{dockerFilters{"container": {"db": true}}, false},
		{dockerFilters{"label": {"com.docker.compose.project=p": true}}, true},
		{dockerFilters{"label": {"com.docker.compose.project=q": true}}, false},
		{dockerFilters{"image": {"busybox": true}}, true},
		{dockerFilters{"image": {"alpine": true}}, false},
		{dockerFilters{"network": {"n1": true}}, false},
		{dockerFilters{"scope": {"local": true}}, true},
	} {
		ef, err := newEventFilter(tc.f)
		if err != nil {
			t.Fatalf("%v: %v", tc.f, err)
		}
		if got := ef.match(&m); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.f, got, tc.want)
		}
	}
	if _, err := newEventFilter(dockerFilters{"colour": {"red": true}}); err == nil {
		t.Error("an unknown filter accepted")
	}
}
