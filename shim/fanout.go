package shim

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// frame is a chunk of one output stream.
type frame struct {
	stream byte
	data   []byte
}

// subscriberBuffer is how many chunks an attached client may lag behind
// before it is cut off. The application never waits for a slow client:
// its output goes to the log regardless.
const subscriberBuffer = 256

// fanout copies the application's output to the attached clients.
type fanout struct {
	mu     sync.Mutex
	subs   map[chan frame]struct{}
	closed bool
}

func newFanout() *fanout { return &fanout{subs: make(map[chan frame]struct{})} }

// stream returns a writer for one stream's output.
func (f *fanout) stream(s byte) *fanoutWriter { return &fanoutWriter{f: f, s: s} }

func (f *fanout) subscribe() chan frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan frame, subscriberBuffer)
	if f.closed {
		close(c)
		return c
	}
	f.subs[c] = struct{}{}
	return c
}

func (f *fanout) unsubscribe(c chan frame) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[c]; ok {
		delete(f.subs, c)
		close(c)
	}
}

func (f *fanout) publish(s byte, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return
	}
	fr := frame{stream: s, data: append([]byte(nil), p...)}
	for c := range f.subs {
		select {
		case c <- fr:
		default:
			// Too slow: cut it off rather than hold up the application.
			delete(f.subs, c)
			close(c)
		}
	}
}

// close ends every subscription: the run is over.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for c := range f.subs {
		close(c)
	}
	f.subs = nil
}

type fanoutWriter struct {
	f *fanout
	s byte
}

func (w *fanoutWriter) Write(p []byte) (int, error) {
	w.f.publish(w.s, p)
	return len(p), nil
}

// signalNotify relays the signals that ask a shim to stop its arrow. A
// shim has no terminal; SIGHUP and SIGPIPE mean nothing to it.
func signalNotify(c chan<- os.Signal) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
}
