package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Error answers in the Key Vault shape, and the mapping of the service's typed errors.

// Error codes the Key Vault SDKs know.
const (
	CodeBadParameter = "BadParameter"
	CodeUnauthorized = "Unauthorized"
	CodeForbidden    = "Forbidden"
	CodeKeyNotFound  = "KeyNotFound"
	CodeNotFound     = "NotFound"
	CodeConflict     = "Conflict"
	CodeThrottled    = "Throttled"
	CodeInternal     = "InternalServerError"
)

// InnerAlgorithmNotSupportedByHSM is the innererror code of an algorithm the key's type
// allows but the HSM token holding it cannot run (kek/rest chooses another on it).
const InnerAlgorithmNotSupportedByHSM = "AlgorithmNotSupportedByHSM"

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *innerError `json:"innererror,omitempty"`
}

type innerError struct {
	Code string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, code, msg, inner string) {
	d := errorDetail{Code: code, Message: msg}
	if inner != "" {
		d.InnerError = &innerError{Code: inner}
	}
	writeJSON(w, status, errorBody{Error: d})
}

// writeServiceError maps the service's typed errors to Key Vault's status codes and shapes.
func (h *Handler) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	switch {
	case errors.Is(err, vault.ErrNetworkDenied):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "ForbiddenByFirewall")
	case errors.Is(err, vault.ErrForbidden):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "AccessDenied")
	case errors.Is(err, vault.ErrDisabled):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyDisabled")
	case errors.Is(err, vault.ErrExpired):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyExpired")
	case errors.Is(err, vault.ErrNotYetValid):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyNotYetValid")
	case errors.Is(err, vault.ErrPurgeProtected):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "PurgeProtected")
	case errors.Is(err, keys.ErrTokenLimit):
		writeError(w, http.StatusBadRequest, CodeBadParameter, msg, InnerAlgorithmNotSupportedByHSM)
	case errors.Is(err, keys.ErrUnsupported):
		writeError(w, http.StatusBadRequest, CodeBadParameter, msg, "KeyAlgorithmMismatch")
	case errors.Is(err, vault.ErrOperationNotAllowed):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyOperationNotPermitted")
	case errors.Is(err, keys.ErrDecrypt), errors.Is(err, vault.ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeBadParameter, msg, "")
	case errors.Is(err, vault.ErrNotFound):
		writeError(w, http.StatusNotFound, CodeKeyNotFound, msg, "")
	case errors.Is(err, vault.ErrConflict):
		writeError(w, http.StatusConflict, CodeConflict, msg, "")
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request cancelled", "")
	default:
		h.cfg.Log.Error("vault request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "the vault could not complete the request; see the server log", "")
	}
}
