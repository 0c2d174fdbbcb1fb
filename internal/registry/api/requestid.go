package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// requestIDHeader carries the id of a request, in the request (from a proxy) and in every
// answer: a 500 names it so that an operator finds the cause in the log.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a request id taken from the client.
const maxRequestIDLen = 128

type requestIDKey struct{}

// withRequestID gives the request its id, the incoming X-Request-Id if it is sane or a new
// random one, sets it on the answer and returns the request carrying it.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	id := r.Header.Get(requestIDHeader)
	if !saneRequestID(id) {
		var b [16]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set(requestIDHeader, id)
	return r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
}

// requestID is the id withRequestID gave r ("" if none).
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// saneRequestID accepts ids that are safe to log and echo: 1 to 128 letters, digits and
// "-_.:" (UUIDs, hex, the usual proxy formats).
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}
