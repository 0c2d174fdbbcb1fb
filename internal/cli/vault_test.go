package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func vaultCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustVaultCLI[T any](t *testing.T, args ...string) T {
	t.Helper()
	out, err := vaultCLI(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("coffer %s: %v", strings.Join(args, " "), err)
	}
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("coffer %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
	return v
}

func TestVaultCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)

	v := mustVaultCLI[wire.Vault](t, "vault", "create", "team1", "--retention-days", "7", "--purge-protection", "--port", "0")
	if v.SoftDeleteRetentionDays != 7 || !v.EnablePurgeProtection || !strings.HasPrefix(v.URL, "https://team1.vault.localhost:") {
		t.Fatalf("created %+v", v)
	}
	if out, _ := vaultCLI(t, "vault", "show", "team1"); !strings.Contains(out, v.URL) {
		t.Fatalf("show:\n%s", out)
	}
	if _, err := vaultCLI(t, "vault", "update", "team1", "--purge-protection=false"); err == nil || !strings.Contains(err.Error(), "cannot be turned off") {
		t.Fatalf("purge protection turned off: %v", err)
	}
	v = mustVaultCLI[wire.Vault](t, "vault", "update", "team1", "--default-action", "Deny", "--ip-rule", "127.0.0.0/8")
	if v.NetworkRules.DefaultAction != "Deny" || v.NetworkRules.IPRules[0] != "127.0.0.0/8" || v.SoftDeleteRetentionDays != 7 {
		t.Fatalf("updated %+v", v)
	}
	found := false
	for _, x := range mustVaultCLI[[]wire.Vault](t, "vault", "list") {
		found = found || x.Name == "team1"
	}
	if !found {
		t.Fatal("team1 not listed")
	}

	// Access policies through the access part's API.
	who, err := inst.Server.Identities().Resolve(context.Background(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	mustVaultCLI[map[string]any](t, "vault", "policy", "set", "team1", "--object-id", who.ID, "--key-permissions", "get,list,create,delete,recover,purge,rotate,wrapKey,unwrapKey,backup,restore")
	if ps := mustVaultCLI[[]map[string]any](t, "vault", "policy", "list", "team1"); len(ps) != 1 {
		t.Fatalf("policies: %v", ps)
	}

	k := mustVaultCLI[wire.Key](t, "vault", "key", "create", "team1", "kek", "--kty", "RSA", "--size", "2048", "--tags", "owner=ci")
	if k.Size != 2048 || k.Tags["owner"] != "ci" {
		t.Fatalf("key %+v", k)
	}
	dek := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	w := mustVaultCLI[wire.KeyOpResult](t, "vault", "key", "wrapKey", "team1", "kek", "--alg", "RSA-OAEP-256", "--value", dek)
	if w.Kid != k.ID {
		t.Fatalf("wrapped with %s, want %s", w.Kid, k.ID)
	}
	rot := mustVaultCLI[wire.Key](t, "vault", "key", "rotate", "team1", "kek")
	if rot.Version == k.Version {
		t.Fatal("rotate kept the version")
	}
	u := mustVaultCLI[wire.KeyOpResult](t, "vault", "key", "unwrap", "team1", "kek", "--version", k.Version, "--alg", "RSA-OAEP-256",
		"--value", base64.RawURLEncoding.EncodeToString(w.Value))
	if base64.RawURLEncoding.EncodeToString(u.Value) != dek {
		t.Fatal("unwrap with the old version gave other bytes")
	}
	if vs := mustVaultCLI[[]wire.Key](t, "vault", "key", "versions", "team1", "kek"); len(vs) != 2 {
		t.Fatalf("versions: %d", len(vs))
	}
	backup := filepath.Join(t.TempDir(), "kek.backup")
	// Commands that print no resource still print only JSON with -o json.
	if b := mustVaultCLI[map[string]string](t, "vault", "key", "backup", "team1", "kek", "--file", backup); b["file"] != backup || b["key"] != "kek" {
		t.Fatalf("backup: %v", b)
	}
	mustVaultCLI[map[string]any](t, "vault", "key", "delete", "team1", "kek")
	if _, err := vaultCLI(t, "vault", "key", "show", "team1", "kek"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("show deleted key: %v", err)
	}
	if _, err := vaultCLI(t, "vault", "key", "purge", "team1", "kek"); err == nil || !strings.Contains(err.Error(), "purge protection") {
		t.Fatalf("purge under protection: %v", err)
	}
	mustVaultCLI[map[string]any](t, "vault", "key", "recover", "team1", "kek")
	if _, err := vaultCLI(t, "vault", "delete", "team1"); err == nil || !strings.Contains(err.Error(), "still holds") {
		t.Fatalf("delete a vault with keys: %v", err)
	}

	// Network rule refusal names the rule.
	mustVaultCLI[wire.Vault](t, "vault", "update", "team1", "--default-action", "Deny", "--ip-rule", "10.0.0.0/8")
	if _, err := vaultCLI(t, "vault", "key", "show", "team1", "kek"); err == nil || !strings.Contains(err.Error(), "network rules") {
		t.Fatalf("outside the network rules: %v", err)
	}
	mustVaultCLI[wire.Vault](t, "vault", "update", "team1", "--default-action", "Allow")

	// Audit: filters, then an edited record is detected.
	recs := mustVaultCLI[[]wire.AuditRecord](t, "vault", "audit", "list", "--vault", "team1", "--key", "kek", "--operation", "KeyUnwrapKey")
	if len(recs) != 1 || !strings.HasSuffix(recs[0].Target, "/keys/kek/"+k.Version) || recs[0].Algorithm != "RSA-OAEP-256" ||
		recs[0].PrincipalName != "admin" || recs[0].ClientAddr != "127.0.0.1" || recs[0].UserAgent == "" {
		t.Fatalf("unwrap records: %+v", recs)
	}
	if denied := mustVaultCLI[[]wire.AuditRecord](t, "vault", "audit", "list", "--vault", "team1", "--result", "denied"); len(denied) == 0 {
		t.Fatal("the network refusal was not audited")
	}
	if pol := mustVaultCLI[[]wire.AuditRecord](t, "vault", "audit", "list", "--operation", "AccessPolicySet", "--identity", "admin"); len(pol) != 1 {
		t.Fatalf("policy change records: %+v", pol)
	}
	res := mustVaultCLI[wire.AuditVerifyResult](t, "vault", "audit", "verify")
	if !res.OK || res.Records < 10 {
		t.Fatalf("verify: %+v", res)
	}
	if d := mustVaultCLI[map[string]string](t, "vault", "policy", "delete", "team1", "--object-id", who.ID); d["objectId"] != who.ID {
		t.Fatalf("policy delete: %v", d)
	}
	if ps := mustVaultCLI[[]map[string]any](t, "vault", "policy", "list", "team1"); len(ps) != 0 {
		t.Fatalf("policies after delete: %v", ps)
	}
	mustVaultCLI[wire.Vault](t, "vault", "create", "scratch", "--rbac", "--retention-days", "7")
	mustVaultCLI[wire.Key](t, "vault", "key", "create", "scratch", "k")
	mustVaultCLI[map[string]any](t, "vault", "key", "delete", "scratch", "k")
	if p := mustVaultCLI[map[string]string](t, "vault", "key", "purge", "scratch", "k"); p["key"] != "k" || p["done"] != "purge" {
		t.Fatalf("purge: %v", p)
	}
	if d := mustVaultCLI[map[string]string](t, "vault", "delete", "scratch"); d["deleted"] != "scratch" {
		t.Fatalf("vault delete: %v", d)
	}
	db := storetest.SQLiteAt(t, filepath.Join(inst.DataDir, "metadata.db"))
	if _, err := db.ExecContext(context.Background(), `UPDATE audit_records SET result = 'success' WHERE result = 'denied'`); err != nil {
		t.Fatal(err)
	}
	out, err := vaultCLI(t, "vault", "audit", "verify")
	var ee interface{ Error() string }
	if err == nil || !errors.As(err, &ee) || !strings.Contains(out, "BROKEN") {
		t.Fatalf("verify after an edit: %v\n%s", err, out)
	}
}
