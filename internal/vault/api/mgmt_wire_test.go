package api_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/mgmt/wire/wiretest"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/api"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// TestManagementWireTypesEncodeAsTheVaultTypesDid: the management API answers the same
// bytes it did when it wrote vault.Key, vault.Vault, audit.Record... directly.
func TestManagementWireTypesEncodeAsTheVaultTypesDid(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	later := now.Add(time.Hour)
	full := vault.Key{ID: "https://v/keys/k/1", Vault: "v", Name: "k", Version: "1",
		JWK: keys.JWK{Kid: "kid", Kty: "RSA", KeyOps: []string{"wrapKey"}, N: keys.B64{1, 2, 250}, E: keys.B64{1, 0, 1},
			Crv: "P-256", X: keys.B64{3}, Y: keys.B64{4}, K: keys.B64{5}, D: keys.B64{6}, KeyHSM: keys.B64{7}},
		Attributes: vault.Attributes{Enabled: true, NotBefore: &now, Expires: &later, Created: now, Updated: later,
			RecoveryLevel: "Recoverable", RecoverableDays: 7, Exportable: true, HSMPlatform: "x"},
		Tags: map[string]string{"b": "2", "a": "1"}, Managed: true, Size: 2048}
	for _, k := range []vault.Key{full, {}, {Tags: map[string]string{}}} {
		wiretest.SameJSON(t, "key", k, api.KeyOut(k))
		d := vault.DeletedKey{Key: k, RecoveryID: "r", DeletedDate: now, ScheduledPurgeDate: later}
		wiretest.SameJSON(t, "deleted key", d, api.DeletedKeyOut(d))
	}
	for _, v := range []vault.Vault{
		{Name: "v", URL: "https://v", EnableRbacAuthorization: true, SoftDeleteRetentionDays: 7, EnablePurgeProtection: true,
			NetworkRules: vault.NetworkRules{DefaultAction: "Deny", IPRules: []string{"10.0.0.0/8"}, Bypass: "None"}, Port: 8443, Created: now, Updated: later},
		{},
	} {
		wiretest.SameJSON(t, "vault", v, api.VaultOut(v))
	}
	var p vault.RotationPolicy
	p.ID = "id"
	p.Attributes.ExpiryTime, p.Attributes.Created, p.Attributes.Updated = "P1Y", now, later
	var la vault.LifetimeAction
	la.Action.Type, la.Trigger.TimeAfterCreate = "Rotate", "P90D"
	for _, lifetime := range [][]vault.LifetimeAction{nil, {}, {la, {}}} {
		p.LifetimeActions = lifetime
		wiretest.SameJSON(t, "rotation policy", p, api.RotationPolicyOut(p))
	}
	for _, r := range []audit.Record{
		{Seq: 3, Time: now, Component: "vault", PrincipalID: "p", PrincipalName: "n", PrincipalKind: "user", ClientAddr: "1.2.3.4",
			UserAgent: "ua", Operation: "KeyGet", Target: "t", Resource: "vaults/v", Algorithm: "RS256", Result: "denied",
			Detail: "d", Duration: 1500 * time.Microsecond, PrevHash: "a", Hash: "b"},
		{},
	} {
		wiretest.SameJSON(t, "audit record", r, api.AuditRecordOut(r))
		var back wire.AuditRecord
		raw, _ := json.Marshal(r)
		if err := json.Unmarshal(raw, &back); err != nil || back.Duration() != r.Duration.Truncate(time.Microsecond) {
			t.Errorf("audit record duration: %v, %v", back.Duration(), err)
		}
	}
	res := audit.VerifyResult{OK: false, Records: 4, HeadSeq: 4, HeadHash: "h", BrokenAt: 2, Problem: "p"}
	wiretest.SameJSON(t, "verify result", res, wire.AuditVerifyResult{OK: res.OK, Records: res.Records, HeadSeq: res.HeadSeq, HeadHash: res.HeadHash, BrokenAt: res.BrokenAt, Problem: res.Problem})
	wiretest.SameJSON(t, "backup", map[string]keys.B64{"value": {1, 2, 3}}, wire.KeyBackup{Value: wire.Bytes{1, 2, 3}})
	wiretest.SameJSON(t, "deleted key page", map[string]any{"value": []vault.DeletedKey(nil), "skipToken": ""}, wire.DeletedKeyList{})

	// Binary members decode as leniently, and fail with the same messages.
	for _, in := range []string{`"AQID"`, `"AQID=="`, `"+/+/"`, `"-_-_"`, `null`, `"a"`, `"$$"`, `"+/$"`, `3`} {
		var a keys.B64
		var b wire.Bytes
		ea, eb := json.Unmarshal([]byte(in), &a), json.Unmarshal([]byte(in), &b)
		if string(a) != string(b) || (ea == nil) != (eb == nil) || (ea != nil && ea.Error() != eb.Error()) {
			t.Errorf("decode %s: keys.B64 %v, %v; wire.Bytes %v, %v", in, a, ea, b, eb)
		}
	}
}
