// Package encryptionapi is the management API of encryption at rest,
// /coffer/v1/registry/encryption (docs/encryption.md): thin handlers over the encryption
// service. Every route needs a management token whose caller may access.RegistryManage at
// scope /registry.
package encryptionapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
)

// Service is what the handlers need of the encryption service (*encryption.Service).
type Service interface {
	Show(ctx context.Context) (keyring.Status, error)
	Enable(ctx context.Context, keyID, ident string) (keyring.Settings, error)
	Rotate(ctx context.Context, keyID, ident string) (keyring.Settings, error)
	Disable(ctx context.Context) error
	CheckRotation(ctx context.Context) (bool, error)
	NewRootKey(ctx context.Context) (uint32, error)
}

// Handler serves /coffer/v1/registry/encryption.
type Handler struct {
	svc   Service
	authz access.Authorizer
	log   *slog.Logger
}

// New returns the handlers of svc; az decides who may use them.
func New(svc Service, az access.Authorizer, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{svc: svc, authz: az, log: log}
}

// Register mounts the routes through the management route table, which authenticates
// the caller.
func (h *Handler) Register(rt *mgmt.Router) {
	p := mgmt.Prefix + "/registry/encryption"
	routes := map[string]http.HandlerFunc{
		"GET " + p:                  h.show,
		"POST " + p + "/enable":     h.enable,
		"POST " + p + "/rotate-key": h.rotate,
		"POST " + p + "/disable":    h.disable,
		"POST " + p + "/rotation":   h.checkRotation,
		"POST " + p + "/root-key":   h.newRootKey,
	}
	for pattern, f := range routes {
		rt.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !mgmt.Authorize(w, r, h.authz, access.RegistryManage, access.Scope("/registry")) {
				return
			}
			f(w, r)
		})
	}
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	st, err := h.svc.Show(r.Context())
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, toWire(st))
}

// toWire is the status in the management API's wire shape.
func toWire(st keyring.Status) wire.EncryptionStatus {
	kv := st.KeyVaultProperties
	return wire.EncryptionStatus{
		Status: st.Status, EncryptedAtRest: st.EncryptedAtRest, KeySource: st.KeySource,
		KeyVaultProperties: wire.KeyVaultProperties{
			Identity: kv.Identity, KeyIdentifier: kv.KeyIdentifier, VersionedKeyIdentifier: kv.VersionedKeyIdentifier,
			KeyRotationEnabled: kv.KeyRotationEnabled, LastKeyRotationTimestamp: kv.LastKeyRotationTimestamp,
		},
		KeyAccessible: st.KeyAccessible, KeyAccessError: st.KeyAccessError, LastKeyAccessCheck: st.LastKeyAccessCheck,
		RootKeyGeneration: st.RootKeyGeneration,
	}
}

func (h *Handler) change(w http.ResponseWriter, r *http.Request, do func(ctx context.Context, keyID, ident string) (keyring.Settings, error)) {
	var req wire.EncryptionKeyRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if req.KeyEncryptionKey == "" {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "keyEncryptionKey is required: the key id of an RSA key, https://VAULT-HOST/keys/NAME[/VERSION]")
		return
	}
	if _, err := do(r.Context(), req.KeyEncryptionKey, req.Identity); err != nil {
		h.writeError(w, err)
		return
	}
	h.show(w, r)
}

func (h *Handler) enable(w http.ResponseWriter, r *http.Request) { h.change(w, r, h.svc.Enable) }

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request) { h.change(w, r, h.svc.Rotate) }

func (h *Handler) disable(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, h.svc.Disable(r.Context()))
}

// checkRotation runs the automatic rotation check now (operators and tests need not wait
// for --key-rotation-check-interval).
func (h *Handler) checkRotation(w http.ResponseWriter, r *http.Request) {
	if _, err := h.svc.CheckRotation(r.Context()); err != nil {
		h.writeError(w, err)
		return
	}
	h.show(w, r)
}

// newRootKey seals new content under a fresh root key (a new generation), wrapped under
// the key in use; content sealed before stays readable under the older generations.
func (h *Handler) newRootKey(w http.ResponseWriter, r *http.Request) {
	if _, err := h.svc.NewRootKey(r.Context()); err != nil {
		h.writeError(w, err)
		return
	}
	h.show(w, r)
}

func (h *Handler) writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, keyring.ErrAlreadyEnabled), errors.Is(err, keyring.ErrCannotDisable):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	case errors.Is(err, kek.ErrInvalidKeyID), errors.Is(err, kek.ErrUnsupportedKeyType), errors.Is(err, kek.ErrForbidden),
		errors.Is(err, kek.ErrNotFound), errors.Is(err, kek.ErrDisabled), errors.Is(err, kek.ErrNetworkDenied),
		errors.Is(err, kek.ErrInvalid), errors.Is(err, identity.ErrNotFound), errors.Is(err, identity.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, seal.ErrKeyUnavailable), errors.Is(err, kek.ErrUnavailable):
		mgmt.WriteError(w, http.StatusServiceUnavailable, mgmt.CodeInternal, err.Error())
	default:
		h.log.Error("registry encryption request failed", "err", err)
		mgmt.WriteFailure(w, err, "the request failed; see the server log")
	}
}
