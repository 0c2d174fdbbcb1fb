package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cofferhq/coffer/internal/store"
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
	// CodeServiceUnavailable: the metadata database cannot be reached (503, Retry-After).
	CodeServiceUnavailable = "ServiceUnavailable"
	CodeInternal           = "InternalServerError"
)

// Innererror codes: which refusal a 403 or 400 is. The data plane and the management API
// both send them (docs/vault.md, docs/management-api.md).
const (
	InnerForbiddenByFirewall      = "ForbiddenByFirewall"
	InnerAccessDenied             = "AccessDenied"
	InnerKeyDisabled              = "KeyDisabled"
	InnerKeyExpired               = "KeyExpired"
	InnerKeyNotYetValid           = "KeyNotYetValid"
	InnerPurgeProtected           = "PurgeProtected"
	InnerKeyAlgorithmMismatch     = "KeyAlgorithmMismatch"
	InnerKeyOperationNotPermitted = "KeyOperationNotPermitted"
	// InnerAlgorithmNotSupportedByHSM is an algorithm the key's type allows but the HSM
	// token holding it cannot run (kek/rest chooses another on it).
	InnerAlgorithmNotSupportedByHSM = "AlgorithmNotSupportedByHSM"
)

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

// An answer to a typed service error: the HTTP status, the Key Vault error code and the
// innererror code that says which refusal it is (network rules, access, a disabled or
// expired key, …). The data plane and the management API answer the same error with the
// same status and inner code, so their clients classify refusals by code, never by text.
type answer struct {
	status      int
	code, inner string
}

// classify maps the service's typed errors; ok is false for an unexpected error (a 500).
func classify(err error) (a answer, ok bool) {
	switch {
	case errors.Is(err, vault.ErrNetworkDenied):
		return answer{http.StatusForbidden, CodeForbidden, InnerForbiddenByFirewall}, true
	case errors.Is(err, vault.ErrForbidden):
		return answer{http.StatusForbidden, CodeForbidden, InnerAccessDenied}, true
	case errors.Is(err, vault.ErrDisabled):
		return answer{http.StatusForbidden, CodeForbidden, InnerKeyDisabled}, true
	case errors.Is(err, vault.ErrExpired):
		return answer{http.StatusForbidden, CodeForbidden, InnerKeyExpired}, true
	case errors.Is(err, vault.ErrNotYetValid):
		return answer{http.StatusForbidden, CodeForbidden, InnerKeyNotYetValid}, true
	case errors.Is(err, vault.ErrPurgeProtected):
		return answer{http.StatusForbidden, CodeForbidden, InnerPurgeProtected}, true
	case errors.Is(err, keys.ErrTokenLimit):
		return answer{http.StatusBadRequest, CodeBadParameter, InnerAlgorithmNotSupportedByHSM}, true
	case errors.Is(err, keys.ErrUnsupported):
		return answer{http.StatusBadRequest, CodeBadParameter, InnerKeyAlgorithmMismatch}, true
	case errors.Is(err, vault.ErrOperationNotAllowed):
		return answer{http.StatusForbidden, CodeForbidden, InnerKeyOperationNotPermitted}, true
	case errors.Is(err, keys.ErrDecrypt), errors.Is(err, vault.ErrInvalid):
		return answer{http.StatusBadRequest, CodeBadParameter, ""}, true
	case errors.Is(err, vault.ErrNotFound):
		return answer{http.StatusNotFound, CodeKeyNotFound, ""}, true
	case errors.Is(err, vault.ErrConflict):
		return answer{http.StatusConflict, CodeConflict, ""}, true
	}
	return answer{}, false
}

// writeServiceError maps the service's typed errors to Key Vault's status codes and shapes.
func (h *Handler) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	if a, ok := classify(err); ok {
		writeError(w, a.status, a.code, err.Error(), a.inner)
		return
	}
	if errors.Is(err, context.Canceled) {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request cancelled", "")
		return
	}
	if store.IsConnectionLost(err) {
		// The metadata database is down or restarting: a retryable 503, as the registry
		// answers it, not a 500 (the SDKs retry 503 with Retry-After).
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeServiceUnavailable, "the vault's database is unreachable: retry shortly", "")
		return
	}
	h.cfg.Log.Error("vault request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, CodeInternal, "the vault could not complete the request; see the server log", "")
}
