package httpstatus_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cofferhq/coffer/internal/httpstatus"
)

func TestRecorder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
		want    int
		headers int
	}{
		{"nothing written", func(w http.ResponseWriter) {}, 200, 0},
		{"body only", func(w http.ResponseWriter) { w.Write([]byte("x")) }, 200, 1},
		{"status then body", func(w http.ResponseWriter) { w.WriteHeader(404); w.Write([]byte("x")) }, 404, 1},
		{"informational first", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(201) }, 201, 1},
		{"second status ignored", func(w http.ResponseWriter) { w.WriteHeader(409); w.WriteHeader(500) }, 409, 1},
	} {
		headers := 0
		rec := httpstatus.NewRecorder(httptest.NewRecorder())
		rec.OnHeader = func() { headers++ }
		tc.handler(rec)
		if rec.Status() != tc.want || headers != tc.headers || rec.Answered() != (tc.headers > 0) {
			t.Errorf("%s: status %d, OnHeader ran %d times, answered %v; want %d, %d", tc.name, rec.Status(), headers, rec.Answered(), tc.want, tc.headers)
		}
	}
}
