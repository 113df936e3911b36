package shim

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Claims that do not name an absolute directory are refused before they
// reach the spare.
func TestSpareClaimValidation(t *testing.T) {
	claims := make(chan claimReq, 1)
	h := spareHandler(claims)
	// A well-formed body over the 64 KiB limit is cut short, and so
	// refused.
	huge := `{"dir": "/` + strings.Repeat("x", 70<<10) + `"}`
	for _, body := range []string{``, `{`, `{"dir": "relative"}`, `{"dir": 5}`, huge} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/claim", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("claim %.20q: status %d, want 400", body, rec.Code)
		}
	}
	select {
	case c := <-claims:
		t.Fatalf("a bad claim reached the spare: %+v", c)
	default:
	}
}

// A valid claim is handed to the spare, and its answer is the reply.
func TestSpareClaim(t *testing.T) {
	claims := make(chan claimReq)
	h := spareHandler(claims)
	go func() {
		c := <-claims
		if c.dir != "/var/lib/arrow/arrows/x" {
			c.reply <- errWrongDir
			return
		}
		c.reply <- nil
	}()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/claim", strings.NewReader(`{"dir": "/var/lib/arrow/arrows/x"}`)))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

var errWrongDir = errors.New("wrong directory")
