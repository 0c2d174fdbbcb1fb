// Package mgmt is the plumbing of Coffer's management API (/coffer/v1/...), the JSON API
// that the CLI calls: bearer authentication with a management token, authorization through
// the access part, and one error shape, {"error":{"code","message"}}. Each part mounts its
// own management routes with Protect.
package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
)

// Prefix is the path prefix of the management API.
const Prefix = "/coffer/v1"

// Error codes of the management API.
const (
	CodeBadParameter = "BadParameter"
	CodeUnauthorized = "Unauthorized"
	CodeForbidden    = "Forbidden"
	CodeNotFound     = "NotFound"
	CodeConflict     = "Conflict"
	CodeInternal     = "InternalError"
)

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

// WriteError writes {"error":{"code","message"}}.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// WriteErrorInner writes {"error":{"code","message","innererror":{"code"}}}: inner says
// which refusal of its kind the error is (for a vault key: ForbiddenByFirewall,
// KeyDisabled, …), so clients classify it without reading the message. An empty inner
// writes the plain shape.
func WriteErrorInner(w http.ResponseWriter, status int, code, inner, message string) {
	if inner == "" {
		WriteError(w, status, code, message)
		return
	}
	WriteJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": message, "innererror": map[string]string{"code": inner}}})
}

// WriteFailure answers an error that the handler did not classify. A metadata database
// that cannot be reached (stopped, restarting, a network failure) is 503 with Retry-After,
// code InternalError, which clients retry as is; anything else is 500 with message, which
// should not carry the error's own text (it may name tables, files or hosts: log it).
func WriteFailure(w http.ResponseWriter, err error, message string) {
	if store.IsConnectionLost(err) {
		writeUnavailable(w)
		return
	}
	WriteError(w, http.StatusInternalServerError, CodeInternal, message)
}

// writeUnavailable answers 503 with Retry-After: the metadata database cannot be reached.
func writeUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	WriteError(w, http.StatusServiceUnavailable, CodeInternal, "the metadata database is unreachable: retry shortly")
}

// Protect authenticates a management bearer token, then runs h with the caller in the
// request context. Missing or bad tokens get 401 with a Bearer challenge.
func Protect(v authn.Verifier, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="coffer", error="invalid_request"`)
			WriteError(w, http.StatusUnauthorized, CodeUnauthorized, "missing bearer token: run 'coffer login'")
			return
		}
		claims, err := v.Verify(r.Context(), raw, token.AudienceManagement)
		if err != nil {
			if store.IsConnectionLost(err) {
				// The token could not be checked (its principal is looked up in the
				// database): not the caller's fault, and a 401 would send it to log in again.
				writeUnavailable(w)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="coffer", error="invalid_token"`)
			WriteError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid token: "+err.Error())
			return
		}
		ctx := authn.WithCaller(r.Context(), authn.Caller{Principal: claims.Principal(), Claims: claims})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Authorize checks that the request's caller may do action at scope. On refusal it writes
// 403 and returns false.
func Authorize(w http.ResponseWriter, r *http.Request, az access.Authorizer, action access.Action, scope access.Scope) bool {
	c, ok := authn.CallerFrom(r.Context())
	if !ok {
		WriteError(w, http.StatusUnauthorized, CodeUnauthorized, "not authenticated")
		return false
	}
	if err := az.Authorize(r.Context(), access.Request{Principal: c.Principal, Action: action, Scope: scope}); err != nil {
		if errors.Is(err, access.ErrDenied) {
			WriteError(w, http.StatusForbidden, CodeForbidden, err.Error())
		} else {
			WriteFailure(w, err, "authorization failed; see the server log")
		}
		return false
	}
	return true
}

// DecodeJSON decodes the request body into v (at most 1 MiB), writing 400 on failure.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadParameter, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// Caller returns the authenticated caller of a protected request.
func Caller(ctx context.Context) (authn.Caller, bool) { return authn.CallerFrom(ctx) }
