package api

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLostDatabaseIsUnavailable: a vault request whose database connection is lost (the
// metadata database stopped or restarting) answers 503 with Retry-After on the data plane
// and on the management API, never a 500, so clients retry it; any other unexpected error
// stays a 500 without its text.
func TestLostDatabaseIsUnavailable(t *testing.T) {
	lost := fmt.Errorf("read key: %w", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed})
	h := &Handler{}
	w := httptest.NewRecorder()
	h.writeServiceError(w, httptest.NewRequest("GET", "/keys/k", nil), lost)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), CodeServiceUnavailable) {
		t.Fatalf("data plane: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	w = httptest.NewRecorder()
	writeMgmtError(w, lost)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "unreachable") {
		t.Fatalf("management: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	w = httptest.NewRecorder()
	writeMgmtError(w, fmt.Errorf("disk on fire"))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("an unexpected error answered %d", w.Code)
	}
}
