package dockerapi

import (
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/jsonstream"
)

// progressMessage is one line of the JSON message stream of load and
// pull: Docker's message, plus the legacy "error" string that docker-py
// still reads beside errorDetail.
type progressMessage struct {
	jsonstream.Message
	ErrorMessage string `json:"error,omitempty"`
}

// progressStream writes the JSON message stream. Once it has started,
// the status is 200 and errors go into the stream, as dockerd's do.
type progressStream struct {
	w       http.ResponseWriter
	enc     *json.Encoder
	started bool
}

func newProgressStream(w http.ResponseWriter) *progressStream {
	return &progressStream{w: w, enc: json.NewEncoder(w)}
}

func (p *progressStream) start() {
	if p.started {
		return
	}
	p.started = true
	p.w.Header().Set("Content-Type", "application/json")
	p.w.WriteHeader(http.StatusOK)
}

func (p *progressStream) send(m jsonstream.Message) {
	p.start()
	_ = p.enc.Encode(progressMessage{Message: m})
	if f, ok := p.w.(http.Flusher); ok {
		f.Flush()
	}
}

// line sends text as the stream's output (load's "Loaded image: ...").
func (p *progressStream) line(text string) { p.send(jsonstream.Message{Stream: text + "\n"}) }

// status sends a status line (pull's "Pulling from ...").
func (p *progressStream) status(id, text string) {
	p.send(jsonstream.Message{ID: id, Status: text})
}

// fail ends the stream with err: in the stream once it started, else as
// an error answer with status code.
func (p *progressStream) fail(code int, err error) {
	if !p.started {
		writeError(p.w, code, err.Error())
		return
	}
	_ = p.enc.Encode(progressMessage{Message: jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}}, ErrorMessage: err.Error()})
	if f, ok := p.w.(http.Flusher); ok {
		f.Flush()
	}
}
