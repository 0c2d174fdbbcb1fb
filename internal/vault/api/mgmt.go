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
	"github.com/cofferhq/coffer/internal/mgmt/wire"
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

// Register mounts the routes on the management router (which authenticates them).
func (m *Management) Register(rt *mgmt.Router) {
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
		rt.Handle(pattern, h)
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
	a, ok := classify(err)
	if !ok {
		mgmt.WriteFailure(w, err, "the vault could not complete the request: "+err.Error())
		return
	}
	// The management API's own codes, with the data plane's inner code beside them.
	code := mgmt.CodeForbidden
	switch a.status {
	case http.StatusBadRequest:
		code = mgmt.CodeBadParameter
	case http.StatusNotFound:
		code = mgmt.CodeNotFound
	case http.StatusConflict:
		code = mgmt.CodeConflict
	}
	mgmt.WriteErrorInner(w, a.status, code, a.inner, err.Error())
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
	r = withClient(r)
	vs, err := m.svc.ListVaults(r.Context(), caller(r))
	reply(w, http.StatusOK, wire.List[wire.Vault]{Value: wire.MapSlice(vs, VaultOut)}, err)
}

func (m *Management) createVault(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var v wire.Vault
	if !decodeLoose(w, r, &v) {
		return
	}
	out, err := m.svc.CreateVault(r.Context(), caller(r), vaultIn(v))
	reply(w, http.StatusCreated, VaultOut(out), err)
}

func (m *Management) getVault(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	out, err := m.svc.GetVault(r.Context(), caller(r), r.PathValue("vault"))
	reply(w, http.StatusOK, VaultOut(out), err)
}

func (m *Management) updateVault(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var u wire.VaultUpdate
	if !decodeLoose(w, r, &u) {
		return
	}
	out, err := m.svc.UpdateVault(r.Context(), caller(r), r.PathValue("vault"), vaultUpdateIn(u))
	reply(w, http.StatusOK, VaultOut(out), err)
}

func (m *Management) deleteVault(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	err := m.svc.DeleteVault(r.Context(), caller(r), r.PathValue("vault"))
	if err != nil {
		writeMgmtError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Management) listKeys(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListKeys(r.Context(), caller(r), r.PathValue("vault"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, wire.KeyList{Value: wire.MapSlice(page.Items, KeyOut), SkipToken: page.Next}, err)
}

func (m *Management) listVersions(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListKeyVersions(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, wire.KeyList{Value: wire.MapSlice(page.Items, KeyOut), SkipToken: page.Next}, err)
}

func (m *Management) getKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	k, err := m.svc.GetKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), r.URL.Query().Get("version"))
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) createKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req wire.CreateKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.CreateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), vault.CreateKeyParams{
		Kty: req.Kty, Size: req.Size, Curve: req.Curve, KeyOps: req.KeyOps, Enabled: req.Enabled,
		NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) importKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req wire.ImportKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.ImportKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), vault.ImportKeyParams{
		JWK: jwkIn(req.Key), HSM: req.HSM, Enabled: req.Enabled, NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) updateKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req wire.UpdateKeyRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.UpdateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), r.URL.Query().Get("version"),
		vault.UpdateKeyParams{KeyOps: req.KeyOps, Enabled: req.Enabled, NotBefore: req.NotBefore, Expires: req.Expires, Tags: req.Tags})
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) deleteKey(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	d, err := m.svc.DeleteKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, DeletedKeyOut(d), err)
}

func (m *Management) rotate(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	k, err := m.svc.RotateKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) getPolicy(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	p, err := m.svc.GetRotationPolicy(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, RotationPolicyOut(p), err)
}

func (m *Management) setPolicy(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var p wire.RotationPolicy
	if !decodeLoose(w, r, &p) {
		return
	}
	out, err := m.svc.SetRotationPolicy(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"), rotationPolicyIn(p))
	reply(w, http.StatusOK, RotationPolicyOut(out), err)
}

func (m *Management) backup(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	blob, err := m.svc.BackupKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, wire.KeyBackup{Value: wire.Bytes(blob)}, err)
}

func (m *Management) restore(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	var req wire.KeyBackup
	if !decodeLoose(w, r, &req) {
		return
	}
	k, err := m.svc.RestoreKey(r.Context(), caller(r), r.PathValue("vault"), keys.B64(req.Value))
	reply(w, http.StatusOK, KeyOut(k), err)
}

func (m *Management) keyOp(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	op := keyOps[r.PathValue("op")]
	if op == "" {
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, "unknown key operation "+r.PathValue("op"))
		return
	}
	var req wire.KeyOpRequest
	if !decodeLoose(w, r, &req) {
		return
	}
	ctx, v, k := r.Context(), r.PathValue("vault"), r.PathValue("key")
	switch op {
	case vault.OpSign:
		kid, sig, err := m.svc.Sign(ctx, caller(r), v, k, req.Version, req.Alg, keys.B64(req.Digest))
		reply(w, http.StatusOK, wire.KeyOpResult{Kid: kid, Value: wire.Bytes(sig)}, err)
	case vault.OpVerify:
		kid, ok, err := m.svc.Verify(ctx, caller(r), v, k, req.Version, req.Alg, keys.B64(req.Digest), keys.B64(req.Signature))
		reply(w, http.StatusOK, wire.KeyOpResult{Kid: kid, Verified: &ok}, err)
	default:
		kid, res, err := m.svc.Crypt(ctx, caller(r), v, k, req.Version, op, keys.CipherParams{Alg: req.Alg, Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
		reply(w, http.StatusOK, wire.KeyOpResult{Kid: kid, Value: res.Value, IV: res.IV, Tag: res.Tag}, err)
	}
}

func (m *Management) listDeleted(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	n, _ := strconv.Atoi(r.URL.Query().Get("maxresults"))
	page, err := m.svc.ListDeletedKeys(r.Context(), caller(r), r.PathValue("vault"), n, r.URL.Query().Get("skiptoken"))
	reply(w, http.StatusOK, wire.DeletedKeyList{Value: wire.MapSlice(page.Items, DeletedKeyOut), SkipToken: page.Next}, err)
}

func (m *Management) getDeleted(w http.ResponseWriter, r *http.Request) {
	r = withClient(r)
	d, err := m.svc.GetDeletedKey(r.Context(), caller(r), r.PathValue("vault"), r.PathValue("key"))
	reply(w, http.StatusOK, DeletedKeyOut(d), err)
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
	reply(w, http.StatusOK, KeyOut(k), err)
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
		mgmt.WriteFailure(w, err, err.Error())
		return
	}
	recs, err := m.audit.List(r.Context(), f)
	if err != nil {
		mgmt.WriteFailure(w, err, err.Error())
		return
	}
	out := make([]wire.AuditRecord, len(recs))
	for i, rec := range recs {
		out[i] = AuditRecordOut(rec)
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.List[wire.AuditRecord]{Value: out})
}

func (m *Management) auditVerify(w http.ResponseWriter, r *http.Request) {
	expect := r.URL.Query().Get("expectHead")
	r.URL.RawQuery = "" // the chain is verified whole
	if !m.auditAllowed(w, r) {
		return
	}
	var o audit.VerifyOptions
	if expect != "" {
		h, err := audit.ParseHead(expect)
		if err != nil {
			mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "expectHead: "+err.Error())
			return
		}
		o.ExpectHead = &h
	}
	if err := m.audit.Flush(r.Context()); err != nil {
		mgmt.WriteFailure(w, err, err.Error())
		return
	}
	res, err := m.audit.Verify(r.Context(), o)
	if err != nil {
		mgmt.WriteFailure(w, err, err.Error())
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.AuditVerifyResult{OK: res.OK, Records: res.Records, HeadSeq: res.HeadSeq,
		HeadHash: res.HeadHash, BrokenAt: res.BrokenAt, Problem: res.Problem, KeyedFrom: res.KeyedFrom,
		CheckpointSeq: res.CheckpointSeq, ExpectedHead: res.ExpectedHead})
}

// ---- wire conversions ----

// VaultOut is v on the wire.
func VaultOut(v vault.Vault) wire.Vault {
	return wire.Vault{Name: v.Name, URL: v.URL, EnableRbacAuthorization: v.EnableRbacAuthorization,
		SoftDeleteRetentionDays: v.SoftDeleteRetentionDays, EnablePurgeProtection: v.EnablePurgeProtection,
		NetworkRules: wire.NetworkRules(v.NetworkRules), Port: v.Port, HSM: v.HSM, Created: v.Created, Updated: v.Updated}
}

func vaultIn(v wire.Vault) vault.Vault {
	return vault.Vault{Name: v.Name, URL: v.URL, EnableRbacAuthorization: v.EnableRbacAuthorization,
		SoftDeleteRetentionDays: v.SoftDeleteRetentionDays, EnablePurgeProtection: v.EnablePurgeProtection,
		NetworkRules: vault.NetworkRules(v.NetworkRules), Port: v.Port, HSM: v.HSM, Created: v.Created, Updated: v.Updated}
}

func vaultUpdateIn(u wire.VaultUpdate) vault.VaultUpdate {
	out := vault.VaultUpdate{EnableRbacAuthorization: u.EnableRbacAuthorization, SoftDeleteRetentionDays: u.SoftDeleteRetentionDays,
		EnablePurgeProtection: u.EnablePurgeProtection, Port: u.Port}
	if u.NetworkRules != nil {
		nr := vault.NetworkRules(*u.NetworkRules)
		out.NetworkRules = &nr
	}
	return out
}

func jwkOut(j keys.JWK) wire.JWK {
	return wire.JWK{Kid: j.Kid, Kty: j.Kty, KeyOps: j.KeyOps, N: wire.Bytes(j.N), E: wire.Bytes(j.E), D: wire.Bytes(j.D),
		DP: wire.Bytes(j.DP), DQ: wire.Bytes(j.DQ), QI: wire.Bytes(j.QI), P: wire.Bytes(j.P), Q: wire.Bytes(j.Q),
		K: wire.Bytes(j.K), KeyHSM: wire.Bytes(j.KeyHSM), Crv: j.Crv, X: wire.Bytes(j.X), Y: wire.Bytes(j.Y)}
}

func jwkIn(j wire.JWK) keys.JWK {
	return keys.JWK{Kid: j.Kid, Kty: j.Kty, KeyOps: j.KeyOps, N: keys.B64(j.N), E: keys.B64(j.E), D: keys.B64(j.D),
		DP: keys.B64(j.DP), DQ: keys.B64(j.DQ), QI: keys.B64(j.QI), P: keys.B64(j.P), Q: keys.B64(j.Q),
		K: keys.B64(j.K), KeyHSM: keys.B64(j.KeyHSM), Crv: j.Crv, X: keys.B64(j.X), Y: keys.B64(j.Y)}
}

// KeyOut is k on the wire.
func KeyOut(k vault.Key) wire.Key {
	a := k.Attributes
	return wire.Key{ID: k.ID, Vault: k.Vault, Name: k.Name, Version: k.Version, JWK: jwkOut(k.JWK),
		Attributes: wire.KeyAttributes{Enabled: a.Enabled, NotBefore: a.NotBefore, Expires: a.Expires, Created: a.Created,
			Updated: a.Updated, RecoveryLevel: a.RecoveryLevel, RecoverableDays: a.RecoverableDays, Exportable: a.Exportable,
			HSMPlatform: a.HSMPlatform},
		Tags: k.Tags, Managed: k.Managed, Size: k.Size}
}

// DeletedKeyOut is d on the wire.
func DeletedKeyOut(d vault.DeletedKey) wire.DeletedKey {
	return wire.DeletedKey{Key: KeyOut(d.Key), RecoveryID: d.RecoveryID, DeletedDate: d.DeletedDate, ScheduledPurgeDate: d.ScheduledPurgeDate}
}

// RotationPolicyOut is p on the wire.
func RotationPolicyOut(p vault.RotationPolicy) wire.RotationPolicy {
	return wire.RotationPolicy{ID: p.ID,
		LifetimeActions: wire.MapSlice(p.LifetimeActions, func(la vault.LifetimeAction) wire.LifetimeAction {
			return wire.LifetimeAction{Trigger: wire.LifetimeTrigger(la.Trigger), Action: wire.LifetimeActionType(la.Action)}
		}),
		Attributes: wire.RotationPolicyAttributes(p.Attributes)}
}

func rotationPolicyIn(p wire.RotationPolicy) vault.RotationPolicy {
	out := vault.RotationPolicy{ID: p.ID}
	out.LifetimeActions = wire.MapSlice(p.LifetimeActions, func(la wire.LifetimeAction) vault.LifetimeAction {
		var v vault.LifetimeAction
		v.Trigger.TimeAfterCreate, v.Trigger.TimeBeforeExpiry = la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry
		v.Action.Type = la.Action.Type
		return v
	})
	out.Attributes.ExpiryTime, out.Attributes.Created, out.Attributes.Updated = p.Attributes.ExpiryTime, p.Attributes.Created, p.Attributes.Updated
	return out
}

// AuditRecordOut is r on the wire.
func AuditRecordOut(r audit.Record) wire.AuditRecord {
	return wire.AuditRecord{Seq: r.Seq, Time: r.Time, Component: r.Component, PrincipalID: r.PrincipalID,
		PrincipalName: r.PrincipalName, PrincipalKind: r.PrincipalKind, ClientAddr: r.ClientAddr, UserAgent: r.UserAgent,
		Operation: r.Operation, Target: r.Target, Resource: r.Resource, Algorithm: r.Algorithm, Result: r.Result,
		Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash, DurationMicros: r.Duration.Microseconds()}
}
