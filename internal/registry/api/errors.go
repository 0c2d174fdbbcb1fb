package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/registry"
)

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    registry.Code `json:"code"`
	Message string        `json:"message"`
	Detail  any           `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, e *registry.Error) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// statusOf maps a spec code to its HTTP status.
func statusOf(e *registry.Error) int {
	switch {
	case errors.Is(e, registry.ErrRangeNotSatisfiable):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(e, registry.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
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

// fail answers err: spec errors with their status, anything else as 500 (logged).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		if e.Code == registry.CodeTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, statusOf(e), e)
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	if errors.Is(err, blobstore.ErrAccessDenied) {
		// The content is there but may not be read or written now (the encryption key was
		// revoked): DENIED with the cause, a 4xx so that clients show the message.
		h.cfg.Log.Warn("registry content refused", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusForbidden, &registry.Error{Code: registry.CodeDenied, Message: err.Error()})
		return
	}
	h.cfg.Log.Error("registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, &registry.Error{Code: "UNKNOWN", Message: "internal error: " + err.Error()})
}

// failUpload answers an upload failure; a broken request body is the client's fault.
func (h *Handler) failUpload(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		h.fail(w, r, err)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	h.fail(w, r, &registry.Error{Code: registry.CodeBlobUploadInvalid, Message: err.Error()})
}
