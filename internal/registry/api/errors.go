package api

import (
	"errors"
	"net/http"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/store"
)

// statusOf maps a spec code to its HTTP status.
func statusOf(e *registry.Error) int {
	switch {
	case errors.Is(e, registry.ErrRangeNotSatisfiable):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(e, registry.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(e, registry.ErrReferenced):
		return http.StatusConflict
	}
	switch e.Code {
	case registry.CodeBlobUnknown, registry.CodeBlobUploadUnknown, registry.CodeManifestUnknown, registry.CodeNameUnknown:
		return http.StatusNotFound
	case registry.CodeUnauthorized:
		return http.StatusUnauthorized
	case registry.CodeDenied:
		return http.StatusForbidden
	case registry.CodeUnsupported:
		return http.StatusMethodNotAllowed
	case registry.CodeTooManyRequests:
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// fail answers err: spec errors with their status, anything else as 500 (the cause
// logged with the request id, never sent).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		if e.Code == registry.CodeTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		registryauth.WriteError(w, statusOf(e), e)
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	if errors.Is(err, blobstore.ErrAccessDenied) {
		// The content is there but may not be read or written now (the encryption key was
		// revoked): DENIED with the cause, a 4xx so that clients show the message.
		h.cfg.Log.WarnContext(r.Context(), "registry content refused", "method", r.Method, "path", r.URL.Path, "request_id", requestID(r), "err", err)
		registryauth.WriteError(w, http.StatusForbidden, &registry.Error{Code: registry.CodeDenied, Message: err.Error()})
		return
	}
	if store.IsConnectionLost(err) {
		// The metadata database is down or unreachable: the request may be retried as is
		// (distribution's UNAVAILABLE, 503), and nothing it asked for was acknowledged.
		h.cfg.Log.WarnContext(r.Context(), "registry request failed: metadata database unreachable", "method", r.Method, "path", r.URL.Path, "request_id", requestID(r), "err", err)
		registryauth.WriteUnavailable(w)
		return
	}
	// The cause may name tables, files or hosts: it goes to the log only, and the client
	// gets the request id to quote.
	id := requestID(r)
	h.cfg.Log.ErrorContext(r.Context(), "registry request failed", "method", r.Method, "path", r.URL.Path, "request_id", id, "err", err)
	registryauth.WriteError(w, http.StatusInternalServerError, &registry.Error{Code: "UNKNOWN",
		Message: "internal server error: the server log has the cause under request id " + id,
		Detail:  map[string]string{"requestId": id}})
}

// failUpload answers an upload failure; a broken request body is the client's fault. A
// refused key is not: it is answered as on every other endpoint (403 DENIED with the cause,
// as pulls are), never as the client's BLOB_UPLOAD_INVALID.
func (h *Handler) failUpload(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) || errors.Is(err, blobstore.ErrAccessDenied) || store.IsConnectionLost(err) {
		h.fail(w, r, err) // a database that went away is a 503, not the client's bad upload
		return
	}
	if r.Context().Err() != nil {
		return
	}
	h.fail(w, r, &registry.Error{Code: registry.CodeBlobUploadInvalid, Message: err.Error()})
}
