package daemon

import (
	"sync"
	"time"

	"github.com/arrowsys/arrow/api"
)

// eventBuffer is how far a subscriber may lag before it is cut off.
const eventBuffer = 256

// broker hands events to the subscribers of GET /v1/events.
type broker struct {
	mu   sync.Mutex
	subs map[chan api.Event]struct{}
}

func newBroker() *broker { return &broker{subs: make(map[chan api.Event]struct{})} }

func (b *broker) subscribe() chan api.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := make(chan api.Event, eventBuffer)
	b.subs[c] = struct{}{}
	return c
}

func (b *broker) unsubscribe(c chan api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[c]; ok {
		delete(b.subs, c)
		close(c)
	}
}

func (b *broker) publish(e api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.subs {
		select {
		case c <- e:
		default:
			// A subscriber that does not keep up is dropped, not waited
			// for: the daemon's work never blocks on a client.
			delete(b.subs, c)
			close(c)
		}
	}
}

// emit publishes an event about a.
func (d *Daemon) emit(a *arrow, typ string, exitCode *int, detail string) {
	d.mu.Lock()
	id, name := a.rec.ID, a.rec.Name
	d.mu.Unlock()
	d.events.publish(api.Event{Time: time.Now().UTC(), Type: typ, ID: id, Name: name, ExitCode: exitCode, Detail: detail})
	if typ == "oom" {
		d.metrics.ooms.Inc()
	}
}
