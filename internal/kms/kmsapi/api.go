// Package kmsapi is the management API of the KMS v2 cluster settings,
// /coffer/v1/kms/clusters (docs/kms.md): thin handlers over the kms service. Operators'
// routes need vault/manage (changes) or vault/read (reads) at /; the plugin's routes
// (…/plugin…) are served only to the cluster's own plugin identity, and its wrap and unwrap
// calls go to the vault in-process as that identity, so the vault's access checks, network
// rules (with the CofferServices bypass) and audit trail apply.
package kmsapi

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kms"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Error codes of the plugin's key routes: the kind of vault error, so the plugin maps it
// back to kek's sentinel errors.
const (
	CodeKeyForbidden     = "KeyForbidden"
	CodeKeyNetworkDenied = "KeyNetworkDenied"
	CodeKeyNotFound      = "KeyNotFound"
	CodeKeyDisabled      = "KeyDisabled"
	CodeKeyUnavailable   = "KeyUnavailable"
	CodeKeyInvalid       = "KeyInvalid"
)

// Handler serves /coffer/v1/kms/clusters.
type Handler struct {
	svc   *kms.Service
	authz access.Authorizer
	log   *slog.Logger
}

// New returns the handlers of svc.
func New(svc *kms.Service, az access.Authorizer, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{svc: svc, authz: az, log: log}
}

// Register mounts the routes through the management route table.
func (h *Handler) Register(rt *mgmt.Router) {
	p := mgmt.Prefix + "/kms/clusters"
	admin := func(action access.Action, f func(http.ResponseWriter, *http.Request, identity.Principal)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !mgmt.Authorize(w, r, h.authz, action, access.Scope("/")) {
				return
			}
			c, _ := mgmt.Caller(r.Context())
			f(w, r, c.Principal)
		}
	}
	plugin := func(f func(http.ResponseWriter, *http.Request, identity.Principal)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, ok := mgmt.Caller(r.Context())
			if !ok {
				mgmt.WriteError(w, http.StatusUnauthorized, mgmt.CodeUnauthorized, "not authenticated")
				return
			}
			f(w, r, c.Principal)
		}
	}
	rt.HandleFunc("POST "+p, admin(access.VaultManage, h.create))
	rt.HandleFunc("GET "+p, admin(access.VaultRead, h.list))
	rt.HandleFunc("GET "+p+"/{name}", admin(access.VaultRead, h.show))
	rt.HandleFunc("PATCH "+p+"/{name}", admin(access.VaultManage, h.update))
	rt.HandleFunc("DELETE "+p+"/{name}", admin(access.VaultManage, h.delete))
	rt.HandleFunc("POST "+p+"/{name}/rotate", admin(access.VaultManage, h.rotate))
	rt.HandleFunc("POST "+p+"/{name}/retire", admin(access.VaultManage, h.retire))
	rt.HandleFunc("GET "+p+"/{name}/plugin", plugin(h.pluginSettings))
	rt.HandleFunc("PUT "+p+"/{name}/plugin/status", plugin(h.report))
	rt.HandleFunc("GET "+p+"/{name}/plugin/key", plugin(h.getKey))
	rt.HandleFunc("POST "+p+"/{name}/plugin/wrapkey", plugin(h.wrap))
	rt.HandleFunc("POST "+p+"/{name}/plugin/unwrapkey", plugin(h.unwrap))
}

// ToWire is a cluster in the management API's shape.
func ToWire(c kms.Cluster) wire.KMSCluster {
	out := wire.KMSCluster{
		Name: c.Name, KeyManagement: c.KeyManagement, Identity: c.IdentityName, KeyCheck: c.KeyCheck,
		SecurityProfile: wire.KMSSecurityProfile{
			AzureKeyVaultKms: wire.KMSAzureKeyVaultKms{Enabled: true, KeyID: c.KeyID, KeyVaultNetworkAccess: c.NetworkAccess},
			KubernetesResourceObjectEncryptionProfile: wire.KMSKubernetesResourceObjectEncryptionProfile{InfrastructureEncryption: c.InfraEnc},
		},
		DecryptOnlyKeys: []wire.KMSDecryptKey{},
		Created:         c.Created, Updated: c.Updated,
	}
	if id, err := kek.ParseKeyID(c.KeyID); err == nil {
		out.SecurityProfile.AzureKeyVaultKms.KeyVaultResourceID = id.Vault
	}
	for _, d := range c.DecryptOnly {
		out.DecryptOnlyKeys = append(out.DecryptOnlyKeys, wire.KMSDecryptKey{KeyID: d.KeyID, KeyManagement: d.KeyManagement,
			KeyVaultNetworkAccess: d.KeyVaultNetworkAccess, Since: d.Since, Retirable: d.Retirable})
	}
	if st := c.Status; st != nil {
		out.CurrentKeyID = st.KeyID
		out.PluginStatus = &wire.KMSPluginStatus{KeyID: st.KeyID, Healthz: st.Healthz, Error: st.Error, CheckedAt: st.CheckedAt, ReportedAt: st.ReportedAt}
	}
	return out
}

func spec(r wire.KMSClusterRequest) kms.Spec {
	return kms.Spec{Name: r.Name, KeyManagement: r.KeyManagement, KeyID: r.KeyID, KeyVaultNetworkAccess: r.KeyVaultNetworkAccess,
		Identity: r.Identity, InfrastructureEncryption: r.InfrastructureEncryption}
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	var req wire.KMSClusterRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	c, err := h.svc.Create(r.Context(), caller, spec(req))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, ToWire(c))
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	var req wire.KMSClusterRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	if req.Name != "" && req.Name != r.PathValue("name") {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "a cluster cannot be renamed")
		return
	}
	c, err := h.svc.Update(r.Context(), caller, r.PathValue("name"), spec(req))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, ToWire(c))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ identity.Principal) {
	cs, err := h.svc.List(r.Context())
	if err != nil {
		h.writeError(w, err)
		return
	}
	out := wire.List[wire.KMSCluster]{Value: []wire.KMSCluster{}}
	for _, c := range cs {
		out.Value = append(out.Value, ToWire(c))
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request, _ identity.Principal) {
	c, err := h.svc.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, ToWire(c))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	if err := h.svc.Delete(r.Context(), caller, r.PathValue("name")); err != nil {
		h.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	c, err := h.svc.RotateNow(r.Context(), caller, r.PathValue("name"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, ToWire(c))
}

func (h *Handler) retire(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	var req wire.KMSRetireRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return
	}
	c, err := h.svc.Retire(r.Context(), caller, r.PathValue("name"), req.WriteKeyID)
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, ToWire(c))
}

func (h *Handler) pluginSettings(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	st, err := h.svc.PluginSettings(r.Context(), caller, r.PathValue("name"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.KMSPluginSettings{WriteKey: st.WriteKey, DecryptKeys: st.DecryptKeys, Access: st.Access, ThroughCoffer: st.ThroughCoffer})
}

func (h *Handler) report(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	var st wire.KMSPluginStatus
	if !mgmt.DecodeJSON(w, r, &st) {
		return
	}
	if err := h.svc.Report(r.Context(), caller, r.PathValue("name"), kms.PluginStatus{KeyID: st.KeyID, Healthz: st.Healthz, Error: st.Error, CheckedAt: st.CheckedAt}); err != nil {
		h.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	info, err := h.svc.GetKey(r.Context(), caller, r.PathValue("name"), r.URL.Query().Get("keyId"))
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.KMSKeyInfo{KID: info.KID, Kty: info.Type, Enabled: info.Enabled, KeyOps: info.Ops})
}

func (h *Handler) wrap(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	req, value, ok := decodeWrap(w, r)
	if !ok {
		return
	}
	kid, out, err := h.svc.WrapKey(r.Context(), caller, r.PathValue("name"), req.KeyID, value)
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.KMSWrapResponse{KID: kid, Value: base64.RawURLEncoding.EncodeToString(out)})
}

func (h *Handler) unwrap(w http.ResponseWriter, r *http.Request, caller identity.Principal) {
	req, value, ok := decodeWrap(w, r)
	if !ok {
		return
	}
	out, err := h.svc.UnwrapKey(r.Context(), caller, r.PathValue("name"), req.KeyID, value)
	if err != nil {
		h.writeError(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.KMSWrapResponse{KID: req.KeyID, Value: base64.RawURLEncoding.EncodeToString(out)})
}

func decodeWrap(w http.ResponseWriter, r *http.Request) (wire.KMSWrapRequest, []byte, bool) {
	var req wire.KMSWrapRequest
	if !mgmt.DecodeJSON(w, r, &req) {
		return req, nil, false
	}
	v, err := base64.RawURLEncoding.DecodeString(req.Value)
	if err != nil || len(v) == 0 || len(v) > 1024 {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "value must be 1 to 1024 bytes in unpadded base64url")
		return req, nil, false
	}
	return req, v, true
}

func (h *Handler) writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, kms.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, err.Error())
	case errors.Is(err, kms.ErrConflict):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	case errors.Is(err, kms.ErrForbidden):
		mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, err.Error())
	case errors.Is(err, kms.ErrInvalid), errors.Is(err, kek.ErrInvalidKeyID), errors.Is(err, identity.ErrNotFound):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, kek.ErrNetworkDenied):
		mgmt.WriteError(w, http.StatusForbidden, CodeKeyNetworkDenied, err.Error())
	case errors.Is(err, kek.ErrForbidden):
		mgmt.WriteError(w, http.StatusForbidden, CodeKeyForbidden, err.Error())
	case errors.Is(err, kek.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, CodeKeyNotFound, err.Error())
	case errors.Is(err, kek.ErrDisabled), errors.Is(err, kek.ErrUnsupportedKeyType):
		mgmt.WriteError(w, http.StatusConflict, CodeKeyDisabled, err.Error())
	case errors.Is(err, kek.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, CodeKeyInvalid, err.Error())
	case errors.Is(err, kek.ErrUnavailable):
		mgmt.WriteError(w, http.StatusServiceUnavailable, CodeKeyUnavailable, err.Error())
	default:
		h.log.Error("kms request failed", "err", err)
		mgmt.WriteFailure(w, err, "the request failed; see the server log")
	}
}
