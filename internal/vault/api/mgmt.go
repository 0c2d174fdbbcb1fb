package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Management serves the vault's part of the management API (/coffer/v1/vaults..., and
// /coffer/v1/audit), which the CLI calls with a management token. Key operations here call
// the same service methods as the data plane, so the same checks and audit apply.
type Management struct {
	svc   *vault.Service
	audit *audit.Log
	authz access.Authorizer
}

// NewManagement returns the management handlers; authz (the access part) decides who may
// read the audit trail.
func NewManagement(svc *vault.Service, al *audit.Log, authz access.Authorizer) *Management {
	return &Management{svc: svc, audit: al, authz: authz}
}

// Register mounts the routes on mux, each wrapped by protect (bearer authentication).
func (m *Management) Register(mux *http.ServeMux, protect func(http.Handler) http.Handler) {
	p := mgmt.Prefix
	routes := map[string]http.HandlerFunc{
		"GET " + p + "/vaults":                                    m.listVaults,
		"POST " + p + "/vaults":                                   m.createVault,
		"GET " + p + "/vaults/{vault}":                            m.getVault,
		"PATCH " + p + "/vaults/{vault}":                          m.updateVault,
		"DELETE " + p + "/vaults/{vault}":                         m.deleteVault,
		"GET " + p + "/vaults/{vault}/keys":                       m.listKeys,
		"POST " + p + "/vaults/{vault}/restore":                   m.restore,
		"GET " + p + "/vaults/{vault}/keys/{key}":                 m.getKey,
		"PUT " + p + "/vaults/{vault}/keys/{key}":                 m.importKey,
		"PATCH " + p + "/vaults/{vault}/keys/{key}":               m.updateKey,
		"DELETE " + p + "/vaults/{vault}/keys/{key}":              m.deleteKey,
		"POST " + p + "/vaults/{vault}/keys/{key}/create":         m.createKey,
		"GET " + p + "/vaults/{vault}/keys/{key}/versions":        m.listVersions,
		"POST " + p + "/vaults/{vault}/keys/{key}/rotate":         m.rotate,
		"GET " + p + "/vaults/{vault}/keys/{key}/rotationpolicy":  m.getPolicy,
		"PUT " + p + "/vaults/{vault}/keys/{key}/rotationpolicy":  m.setPolicy,
		"POST " + p + "/vaults/{vault}/keys/{key}/backup":         m.backup,
		"POST " + p + "/vaults/{vault}/keys/{key}/{op}":           m.keyOp,
		"GET " + p + "/vaults/{vault}/deletedkeys":                m.listDeleted,
		"GET " + p + "/vaults/{vault}/deletedkeys/{key}":          m.getDeleted,
		"DELETE " + p + "/vaults/{vault}/deletedkeys/{key}":       m.purge,
		"POST " + p + "/vaults/{vault}/deletedkeys/{key}/recover": m.recover,
		"GET " + p + "/audit":                                     m.auditList,
		"GET " + p + "/audit/verify":                              m.auditVerify,
	}
	for pattern, h := range routes {
		mux.Handle(pattern, protect(h))
	}
}

func caller(r *http.Request) identity.Principal {
	c, _ := mgmt.Caller(r.Context())
	return c.Principal
}

// withClient marks the request as a remote call (network rules apply to the CLI's address).
func withClient(r *http.Request) *http.Request {
	c := vault.Client{UserAgent: r.UserAgent()}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Addr = ap.Addr().Unmap()
	}
	return r.WithContext(vault.WithClient(r.Context(), c))
}

func writeMgmtError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, vault.ErrNetworkDenied), errors.Is(err, vault.ErrForbidden), errors.Is(err, vault.ErrDisabled),
		errors.Is(err, vault.ErrExpired), errors.Is(err, vault.ErrNotYetValid), errors.Is(err, vault.ErrPurgeProtected):
		mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, err.Error())
	case errors.Is(err, keys.ErrUnsupported), errors.Is(err, keys.ErrDecrypt), errors.Is(err, vault.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, vault.ErrOperationNotAllowed):
		mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, err.Error())
	case errors.Is(err, vault.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, err.Error())
	case errors.Is(err, vault.ErrConflict):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, err.Error())
	default:
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, "the vault could not complete the request: "+err.Error())
	}
}

func reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeMgmtError(w, err)
		return
	}
	mgmt.WriteJSON(w, status, v)
}

func decodeLoose(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func (m *Management) listVaults(w http.ResponseWriter, r *http.Request) {
	vs, err := m.svc.ListVaults(r.Context(), caller(r))
	reply(w, http.StatusOK, map[string]any{"value": vs}, err)
}

func (m *Management) createVault(w http.ResponseWriter, r *http.Request) {
	var v vault.Vault
	if !decodeLoose(w, r, &v) {
		return
	}
	out, err := m.svc.CreateVault(r.Context(), caller(r), v)
	reply(w, http.StatusCreated, out, err)
}

func (m *Management) getVault(w http.ResponseWriter, r *http.Request) {
	out, err := m.svc.GetVault(r.Context(), caller(r), r.PathValue("vault"))
	reply(w, http.StatusOK, out, err)
}

func (m *Management) updateVault(w http.ResponseWriter, r *http.Request) {
	var u vault.VaultUpdate
	if !decodeLoose(w, r, &u) {
		return
	}
	out, err := m.svc.UpdateVault(r.Context(), caller(r), r.PathValue("vault"), u)
	reply(w, http.StatusOK, out, err)
}

func (m *Management) deleteVault(w http.ResponseWriter, r *http.Request) {
	err := m.svc.DeleteVault(r.Context(), caller(r), r.PathValue("vault"))
	if err != nil {
		writeMgmtError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// KeyListPage is the management API's listing shape.
type KeyListPage struct {
	Value     []vault.Key `json:"value"`
	SkipToken string      `json:"skipToken,omitempty"`
}

func (m *Management) listKeys(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListKeys(r.Context(), caller(r), r.PathValue("vault"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, KeyListPage{Value: page.Items, SkipToken: page.Next}, err)
}

func (m *Management) listVersions(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListKeyVersions(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, KeyListPage{Value: page.Items, SkipToken: page.Next}, err)
}

func (m *Management) getKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	k, err := m.svc.GetKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), r.URL.Query().Get("version"))
	reply(w, http.StatusOK, k, err)
}

// CreateKeyRequest is the management API's key creation body.
type CreateKeyRequest struct {
	Kty       string            `json:"kty"`
	Size      int               `json:"size,omitempty"`
	Curve     string            `json:"curve,omitempty"`
	KeyOps    []string          `json:"keyOps,omitempty"`
	Enabled   *bool             `json:"enabled,omitempty"`
	NotBefore *time.Time        `json:"nbf,omitempty"`
	Expires   *time.Time        `json:"exp,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

func (m *Management) createKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req CreateKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.CreateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), vault.CreateKeyParams{
		Kty: req.Kty, Size: req.Size, Curve: req.Curve, KeyOps: req.KeyOps, Enabled: req.Enabled,
		NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, k, err)
}

// ImportKeyRequest is the management API's import body.
type ImportKeyRequest struct {
	Key       keys.JWK          `json:"key"`
	HSM       bool              `json:"hsm,omitempty"`
	Enabled   *bool             `json:"enabled,omitempty"`
	NotBefore *time.Time        `json:"nbf,omitempty"`
	Expires   *time.Time        `json:"exp,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

func (m *Management) importKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req ImportKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.ImportKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), vault.ImportKeyParams{
		JWK: req.Key, HSM: req.HSM, Enabled: req.Enabled, NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, k, err)
}

// UpdateKeyRequest is the management API's update body. A zero time clears nbf/exp.
type UpdateKeyRequest struct {
	KeyOps    []string           `json:"keyOps,omitempty"`
	Enabled   *bool              `json:"enabled,omitempty"`
	NotBefore *time.Time         `json:"nbf,omitempty"`
	Expires   *time.Time         `json:"exp,omitempty"`
	Tags      *map[string]string `json:"tags,omitempty"`
}

func (m *Management) updateKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req UpdateKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.UpdateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), r.URL.Query().Get("version"),
		vault.UpdateKeyParams{KeyOps: req.KeyOps, Enabled: req.Enabled, NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, k, err)
}

func (m *Management) deleteKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	d, err := m.svc.DeleteKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, d, err)
}

func (m *Management) rotate(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	k, err := m.svc.RotateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, k, err)
}

func (m *Management) getPolicy(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	p, err := m.svc.GetRotationPolicy(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, p, err)
}

func (m *Management) setPolicy(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var p vault.RotationPolicy
	if !decodeLoose(w, r, &p) {
		return
	}
	out, err := m.svc.SetRotationPolicy(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), p)
	reply(w, http.StatusOK, out, err)
}

func (m *Management) backup(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	blob, err := m.svc.BackupKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, map[string]keys.B64{"value": blob}, err)
}

func (m *Management) restore(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req struct {
		Value keys.B64 `json:"value"`
	}
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.RestoreKey(r.Context(), caller(r), r.PathValue("vault"), req.Value)
	reply(w, http.StatusOK, k, err)
}

// KeyOpRequest is the body of a key operation through the management API.
type KeyOpRequest struct {
	Version   string   `json:"version,omitempty"`
	Alg       string   `json:"alg"`
	Value     keys.B64 `json:"value,omitempty"`
	IV        keys.B64 `json:"iv,omitempty"`
	AAD       keys.B64 `json:"aad,omitempty"`
	Tag       keys.B64 `json:"tag,omitempty"`
	Digest    keys.B64 `json:"digest,omitempty"`
	Signature keys.B64 `json:"signature,omitempty"`
}

// KeyOpResult is the answer of a key operation through the management API.
type KeyOpResult struct {
	Kid      string   `json:"kid"`
	Value    keys.B64 `json:"value,omitempty"`
	IV       keys.B64 `json:"iv,omitempty"`
	Tag      keys.B64 `json:"tag,omitempty"`
	Verified *bool    `json:"verified,omitempty"`
}

func (m *Management) keyOp(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	op := keyOps[r.PathValue("op")]
	if op == "" {
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, "unknown key operation "+r.PathValue("op"))
		return
	}
	var req KeyOpRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	ctx, v, k := r.Context(), r.PathValue("vault"), r.PathValue("key")
	switch op {
	case vault.OpSign:
		kid, sig, err := m.svc.Sign(ctx, caller(r), v, k, req.Version, req.Alg, req.Digest)
		reply(w, http.StatusOK, KeyOpResult{Kid: kid, Value: sig}, err)
	case vault.OpVerify:
		kid, ok, err := m.svc.Verify(ctx, caller(r), v, k, req.Version, req.Alg, req.Digest, req.Signature)
		reply(w, http.StatusOK, KeyOpResult{Kid: kid, Verified: &ok}, err)
	default:
		kid, res, err := m.svc.Crypt(ctx, caller(r), v, k, req.Version, op, keys.CipherParams{Alg: req.Alg, Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
		reply(w, http.StatusOK, KeyOpResult{Kid: kid, Value: res.Value, IV: res.IV, Tag: res.Tag}, err)
	}
}

func (m *Management) listDeleted(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListDeletedKeys(r.Context(), caller(r), r.PathValue("vault"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, map[string]any{"value": page.Items, "skipToken": page.Next}, err)
}

func (m *Management) getDeleted(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	d, err := m.svc.GetDeletedKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, d, err)
}

func (m *Management) purge(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	if err := m.svc.PurgeDeletedKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key")); err != nil {
		writeMgmtError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Management) recover(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	k, err := m.svc.RecoverDeletedKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, k, err)
}

// auditScope authorizes reading the audit trail: vault/read on the vault filtered on, or
// at the root for the whole trail.
func (m *Management) auditAllowed(w http.ResponseWriter, r *http.Request) bool {
	scope := access.ScopeRoot
	if v := r.URL.Query().Get("vault"); v != "" {
		scope = access.VaultScope(v)
	}
	return mgmt.Authorize(w, r, m.authz, access.VaultRead, scope)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, errors.New("times are RFC 3339 (2026-01-02T15:04:05Z) or a duration ago (1h)")
}

func (m *Management) auditList(w http.ResponseWriter, r *http.Request) {
	if !m.auditAllowed(w, r) {
		return
	}
	q := r.URL.Query()
	f := audit.Filter{Principal: q.Get("identity"), Operation: q.Get("operation"), Result: q.Get("result")}
	if v := q.Get("vault"); v != "" {
		f.Resource = "vaults/" + v
		if k := q.Get("key"); k != "" {
			f.Resource += "/keys/" + k
		}
	} else if k := q.Get("key"); k != "" {
		f.Target = "/keys/" + k + "/"
	}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "since: "+err.Error())
		return
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "until: "+err.Error())
		return
	}
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	f.AfterSeq, _ = strconv.ParseInt(q.Get("after"), 10, 64)
	if err := m.audit.Flush(r.Context()); err != nil {
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, err.Error())
		return
	}
	recs, err := m.audit.List(r.Context(), f)
	if err != nil {
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, err.Error())
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	mgmt.WriteJSON(w, http.StatusOK, map[string]any{"value": recs})
}

func (m *Management) auditVerify(w http.ResponseWriter, r *http.Request) {
	r.URL.RawQuery = "" // the chain is verified whole
	if !m.auditAllowed(w, r) {
		return
	}
	if err := m.audit.Flush(r.Context()); err != nil {
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, err.Error())
		return
	}
	res, err := m.audit.Verify(r.Context())
	if err != nil {
		mgmt.WriteError(w, http.StatusInternalServerError, mgmt.CodeInternal, err.Error())
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, res)
}
