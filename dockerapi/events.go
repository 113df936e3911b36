package dockerapi

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/arrowsys/arrow/api"
)

// eventsRoutes are the events endpoint.
func (s *Server) eventsRoutes() []route {
	return []route{{"GET /events", s.events}}
}

// eventMessage is an event as API versions before 1.52 (all that this
// server speaks) send it: Docker's message with the fields those
// versions still carry and clients of their time read (docker-compose
// 1.29 reads status).
type eventMessage struct {
	events.Message
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
}

// eventFilterKeys are the filters GET /events applies. Arrow's events are
// all of containers: filters of other kinds of object match nothing of
// theirs, as in dockerd.
var eventFilterKeys = []string{"type", "event", "container", "label", "image", "daemon", "network", "volume", "plugin", "node", "service", "secret", "config", "scope"}

// actorOf is what an event says of its container: Docker's attributes,
// its labels among them.
type actorOf struct {
	name   string
	image  string
	labels map[string]string
}

func actorFor(a *api.Arrow) actorOf {
	return actorOf{name: a.Name, image: imageName(a), labels: publicLabels(a.Config.Labels)}
}

// eventOf translates an arrow's event; who is what is known of its
// container (its name and image, its labels).
func eventOf(e *api.Event, who actorOf) eventMessage {
	attrs := map[string]string{}
	maps.Copy(attrs, who.labels)
	attrs["name"] = e.Name
	if who.image != "" {
		attrs["image"] = who.image
	}
	switch e.Type {
	case "die":
		if e.ExitCode != nil {
			attrs["exitCode"] = strconv.Itoa(*e.ExitCode)
		}
	case "kill":
		if n := signalNumber(e.Detail); n > 0 {
			attrs["signal"] = strconv.Itoa(n)
		} else if e.Detail != "" {
			attrs["signal"] = e.Detail
		}
	}
	t := e.Time
	return eventMessage{
		Message: events.Message{
			Type:     events.ContainerEventType,
			Action:   events.Action(e.Type),
			Actor:    events.Actor{ID: e.ID, Attributes: attrs},
			Scope:    "local",
			Time:     t.Unix(),
			TimeNano: t.UnixNano(),
		},
		Status: e.Type,
		ID:     e.ID,
		From:   who.image,
	}
}

// signalNumber reads the signal of a kill event, which arrowd describes as
// Go does ("terminated") or by name: Docker's events give its number.
func signalNumber(detail string) int {
	detail = strings.TrimSpace(detail)
	if sig, err := api.ParseSignal(detail); err == nil {
		return int(sig)
	}
	for n := 1; n <= 64; n++ {
		if syscall.Signal(n).String() == detail {
			return n
		}
	}
	return 0
}

// eventFilter is GET /events's filters.
type eventFilter struct{ f dockerFilters }

func newEventFilter(f dockerFilters) (*eventFilter, error) {
	for k := range f {
		if !slices.Contains(eventFilterKeys, k) {
			return nil, invalidf("invalid filter '%s'", k)
		}
	}
	return &eventFilter{f}, nil
}

func (ef *eventFilter) match(m *eventMessage) bool {
	f := ef.f
	if ts := f["type"]; len(ts) > 0 && !ts[string(m.Type)] {
		return false
	}
	for _, other := range []string{"daemon", "network", "volume", "plugin", "node", "service", "secret", "config"} {
		if len(f[other]) > 0 && !f["type"]["container"] {
			// A filter on another kind of object, and none asks for
			// containers: nothing of Arrow's matches.
			return false
		}
	}
	if ss := f["scope"]; len(ss) > 0 && !ss[m.Scope] {
		return false
	}
	if es := f["event"]; len(es) > 0 && !es[string(m.Action)] {
		return false
	}
	if cs := f["container"]; len(cs) > 0 && !anyOf(cs, func(v string) bool {
		return v == m.Actor.Attributes["name"] || strings.TrimPrefix(v, "/") == m.Actor.Attributes["name"] || len(v) >= 1 && strings.HasPrefix(m.Actor.ID, v)
	}) {
		return false
	}
	if is := f["image"]; len(is) > 0 && !anyOf(is, func(v string) bool {
		img := m.Actor.Attributes["image"]
		return v == img || imgSameName(img, v)
	}) {
		return false
	}
	if ls := f["label"]; len(ls) > 0 && !matchLabels(ls, m.Actor.Attributes) {
		return false
	}
	return true
}

// events streams the daemon's events as they happen, one JSON object
// each, flushed. Arrow keeps no history of events: those before the
// request are not replayed; since drops the live ones older than it, and
// until ends the stream.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	f, err := parseDockerFilters(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	ef, err := newEventFilter(f)
	if err != nil {
		writeErr(w, err)
		return
	}
	now := time.Now()
	var since, until time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = parseTimeParam(v, now); err != nil {
			writeErr(w, invalidf("since: %v", err))
			return
		}
	}
	if v := r.URL.Query().Get("until"); v != "" {
		if until, err = parseTimeParam(v, now); err != nil {
			writeErr(w, invalidf("until: %v", err))
			return
		}
	}
	ctx := r.Context()
	if !until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	ch := s.b.Events(ctx)
	// What is known of each container, for the events of those removed
	// (destroy) too.
	known := map[string]actorOf{}
	for _, a := range s.b.List(true) {
		known[a.ID] = actorFor(&a)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				// Cut off (the client lagged) or the daemon ends: the
				// client sees the stream end, as when dockerd stops.
				return
			}
			if a, err := s.b.Get(e.ID); err == nil {
				known[e.ID] = actorFor(&a)
			}
			who := known[e.ID]
			if e.Type == "destroy" {
				delete(known, e.ID)
			}
			if !since.IsZero() && e.Time.Before(since) {
				continue
			}
			m := eventOf(&e, who)
			if !ef.match(&m) {
				continue
			}
			if enc.Encode(m) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
