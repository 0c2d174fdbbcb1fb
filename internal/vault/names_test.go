package vault_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
)

// testKeyNamesAreCaseInsensitive: key names are case-insensitive, as in Azure Key Vault
// (and as the scopes of role assignments are): a key whose name differs from an existing
// one only in case cannot be created, every call by any case reaches the one key, and the
// key keeps the case it was created with in its id.
func testKeyNamesAreCaseInsensitive(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.g.allow(f.admin.ID, access.KeyImport, access.KeyWrap, access.KeyUnwrap, access.KeyBackup, access.KeyRestore)
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"}); err != nil {
		t.Fatal(err)
	}
	k, err := f.svc.CreateKey(ctx, f.admin, "team1", "lowkey", vault.CreateKeyParams{Kty: "oct"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LowKey", "LOWKEY"} {
		if _, err := f.svc.CreateKey(ctx, f.admin, "team1", name, vault.CreateKeyParams{Kty: "oct"}); !errors.Is(err, vault.ErrConflict) || !strings.Contains(err.Error(), `"lowkey"`) {
			t.Errorf("create %s beside lowkey: %v, want a conflict naming lowkey", name, err)
		}
		if _, err := f.svc.ImportKey(ctx, f.admin, "team1", name, vault.ImportKeyParams{JWK: octJWK(bytes.Repeat([]byte{1}, 32))}); !errors.Is(err, vault.ErrConflict) {
			t.Errorf("import %s beside lowkey: %v, want a conflict", name, err)
		}
	}
	// The same name creates a new version, as before.
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "lowkey", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatalf("new version of lowkey: %v", err)
	}
	// Any case reaches the one key; ids keep the case it was created with.
	for _, name := range []string{"lowkey", "LowKey", "LOWKEY"} {
		got, err := f.svc.GetKey(ctx, f.admin, "TEAM1", name, k.Version)
		if err != nil || got.ID != k.ID || got.Name != "lowkey" || got.Vault != "team1" {
			t.Errorf("get %s: %+v %v, want %s", name, got, err, k.ID)
		}
		kid, wrapped, err := f.svc.WrapKey(ctx, f.admin, "team1", name, k.Version, "A256KW", bytes.Repeat([]byte{7}, 32))
		if err != nil || kid != k.ID {
			t.Errorf("wrap with %s: kid %s %v, want %s", name, kid, err, k.ID)
			continue
		}
		if _, plain, err := f.svc.UnwrapKey(ctx, f.admin, "Team1", strings.ToUpper(name), k.Version, "A256KW", wrapped); err != nil || !bytes.Equal(plain, bytes.Repeat([]byte{7}, 32)) {
			t.Errorf("unwrap with %s: %v", strings.ToUpper(name), err)
		}
	}
	// The audit trail names the key as stored, whatever the spelling asked.
	f.audit.Flush(ctx)
	if recs, _ := f.audit.List(ctx, audit.Filter{Resource: "vaults/team1/keys/lowkey", Operation: "KeyWrapKey"}); len(recs) != 3 {
		t.Errorf("audit: %d wrap records under vaults/team1/keys/lowkey, want 3", len(recs))
	}
	page, err := f.svc.ListKeyVersions(ctx, f.admin, "team1", "LOWKEY", 0, "")
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("versions by LOWKEY: %d %v", len(page.Items), err)
	}
	pol, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "LowKey", vault.RotationPolicy{})
	if err != nil || !strings.Contains(pol.ID, "/keys/lowkey/") {
		t.Fatalf("rotation policy by LowKey: %+v %v", pol, err)
	}
	rot, err := f.svc.RotateKey(ctx, f.admin, "team1", "LOWKEY")
	if err != nil || rot.Name != "lowkey" {
		t.Fatalf("rotate by LOWKEY: %+v %v", rot, err)
	}
	// Delete, recover, delete again and purge by other cases: always the one key.
	if d, err := f.svc.DeleteKey(ctx, f.admin, "team1", "LowKey"); err != nil || d.Name != "lowkey" || !strings.HasSuffix(d.RecoveryID, "/deletedkeys/lowkey") {
		t.Fatalf("delete by LowKey: %+v %v", d, err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "LOWKEY", vault.CreateKeyParams{Kty: "oct"}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("create LOWKEY beside a deleted lowkey: %v", err)
	}
	if _, err := f.svc.GetDeletedKey(ctx, f.admin, "team1", "LOWKEY"); err != nil {
		t.Fatalf("get deleted by LOWKEY: %v", err)
	}
	if r, err := f.svc.RecoverDeletedKey(ctx, f.admin, "team1", "LOWKEY"); err != nil || r.Name != "lowkey" {
		t.Fatalf("recover by LOWKEY: %+v %v", r, err)
	}
	backup, err := f.svc.BackupKey(ctx, f.admin, "team1", "LowKey")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "lowKEY"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "LOWkey"); err != nil {
		t.Fatalf("purge by LOWkey: %v", err)
	}
	// With lowkey gone the name is free in any case; a backup of lowkey then conflicts.
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "LowKey", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatalf("create LowKey after the purge: %v", err)
	}
	if _, err := f.svc.RestoreKey(ctx, f.admin, "team1", backup); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("restore lowkey beside LowKey: %v", err)
	}
	if _, err := f.svc.GetKey(ctx, f.admin, "team1", "lowkey", k.Version); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the purged version is reachable through LowKey: %v", err)
	}
	list, err := f.svc.ListKeys(ctx, f.admin, "Team1", 0, "")
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "LowKey" {
		t.Fatalf("list: %+v %v", list.Items, err)
	}
}

// testVaultNamesAreCaseInsensitive: a vault name in another case is the same vault.
func testVaultNamesAreCaseInsensitive(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	v, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "Team1"})
	if err != nil || v.Name != "team1" {
		t.Fatalf("create Team1: %+v %v, want the vault team1", v, err)
	}
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "TEAM1"}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("create TEAM1 beside team1: %v", err)
	}
	if got, err := f.svc.GetVault(ctx, f.admin, "TEAM1"); err != nil || got.Name != "team1" {
		t.Fatalf("get TEAM1: %+v %v", got, err)
	}
	days := 30
	if _, err := f.svc.UpdateVault(ctx, f.admin, "tEAM1", vault.VaultUpdate{SoftDeleteRetentionDays: &days}); err != nil {
		t.Fatalf("update tEAM1: %v", err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "TEAM1", "k", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatal(err)
	}
	if page, err := f.svc.ListKeys(ctx, f.admin, "team1", 0, ""); err != nil || len(page.Items) != 1 {
		t.Fatalf("a key created in TEAM1 is not in team1: %+v %v", page.Items, err)
	}
	if err := f.svc.VaultExists(ctx, "TeAm1"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteVault(ctx, f.admin, "TEAM1"); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("delete TEAM1 with a key in team1: %v", err)
	}
}

// testKeysDifferingOnlyInCaseFromBefore: a data directory from before names became
// case-insensitive may hold keys that differ only in case. Nothing is lost: each is served
// by its exact name, a name matching several of them in another case is refused as
// ambiguous, and no new one can be added.
func testKeysDifferingOnlyInCaseFromBefore(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.g.allow(f.admin.ID, access.KeyWrap, access.KeyUnwrap)
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"}); err != nil {
		t.Fatal(err)
	}
	one, two := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if err := vault.InsertKeyAsBefore(ctx, f.svc, "team1", "lowkey", one); err != nil {
		t.Fatal(err)
	}
	if err := vault.InsertKeyAsBefore(ctx, f.svc, "team1", "LowKey", two); err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte{9}, 32)
	wrapped := map[string][]byte{}
	for _, name := range []string{"lowkey", "LowKey"} {
		kid, w, err := f.svc.WrapKey(ctx, f.admin, "team1", name, "", "A256KW", dek)
		if err != nil || !strings.Contains(kid, "/keys/"+name+"/") {
			t.Fatalf("wrap with %s: %s %v", name, kid, err)
		}
		wrapped[name] = w
	}
	if bytes.Equal(wrapped["lowkey"], wrapped["LowKey"]) {
		t.Fatal("lowkey and LowKey wrapped with the same key")
	}
	// Each key unwraps its own and only its own.
	if _, _, err := f.svc.UnwrapKey(ctx, f.admin, "team1", "LowKey", "", "A256KW", wrapped["lowkey"]); err == nil {
		t.Fatal("LowKey unwrapped what lowkey wrapped")
	}
	if _, p, err := f.svc.UnwrapKey(ctx, f.admin, "team1", "lowkey", "", "A256KW", wrapped["lowkey"]); err != nil || !bytes.Equal(p, dek) {
		t.Fatalf("lowkey unwrap: %v", err)
	}
	if _, err := f.svc.GetKey(ctx, f.admin, "team1", "LOWKEY", ""); !errors.Is(err, vault.ErrConflict) || !strings.Contains(err.Error(), "exact name") {
		t.Fatalf("LOWKEY, matching both: %v, want a conflict asking for the exact name", err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "LOWKEY", vault.CreateKeyParams{Kty: "oct"}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("a third key differing only in case: %v", err)
	}
	// New versions by the exact name, delete and purge one of them: the other stays.
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "LowKey", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatalf("new version of LowKey: %v", err)
	}
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "LowKey"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "LowKey"); err != nil {
		t.Fatal(err)
	}
	if _, p, err := f.svc.UnwrapKey(ctx, f.admin, "team1", "LOWKEY", "", "A256KW", wrapped["lowkey"]); err != nil || !bytes.Equal(p, dek) {
		t.Fatalf("lowkey by LOWKEY once LowKey is gone: %v", err)
	}
}
