package vault_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
)

// testKeyNotBeforeAfterExpiry: a key version whose nbf is after its exp could never be
// used: refused (BadParameter) on create, import and update.
func testKeyNotBeforeAfterExpiry(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.g.allow(f.admin.ID, access.KeyImport)
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"}); err != nil {
		t.Fatal(err)
	}
	now := f.clk.Now()
	nbf, exp := now.Add(48*time.Hour), now.Add(24*time.Hour)
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct", NotBefore: &nbf, Expires: &exp}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("create with nbf after exp: %v", err)
	}
	if _, err := f.svc.ImportKey(ctx, f.admin, "team1", "k", vault.ImportKeyParams{JWK: octJWK(make([]byte, 32)), NotBefore: &nbf, Expires: &exp}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("import with nbf after exp: %v", err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct", NotBefore: &exp, Expires: &nbf}); err != nil {
		t.Fatalf("nbf before exp: %v", err)
	}
	// Update: each date alone against the one stored, and both at once.
	late := now.Add(72 * time.Hour)
	early := now.Add(time.Hour)
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "", vault.UpdateKeyParams{NotBefore: &late}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("update nbf past the stored exp: %v", err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "", vault.UpdateKeyParams{Expires: &early}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("update exp before the stored nbf: %v", err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "", vault.UpdateKeyParams{NotBefore: &nbf, Expires: &exp}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("update both, nbf after exp: %v", err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "", vault.UpdateKeyParams{NotBefore: &early, Expires: &late}); err != nil {
		t.Fatalf("update both, in order: %v", err)
	}
	// Clearing one date (the zero time) leaves nothing to compare.
	var zero time.Time
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "", vault.UpdateKeyParams{Expires: &zero}); err != nil {
		t.Fatalf("clear exp: %v", err)
	}
}

// testRetentionFixedUnderPurgeProtection: under purge protection the soft-delete retention
// is fixed (as in Azure Key Vault, where it cannot be changed once set): lowering it would
// shorten the protection of every key deleted afterwards.
func testRetentionFixedUnderPurgeProtection(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1", EnablePurgeProtection: true, SoftDeleteRetentionDays: 30}); err != nil {
		t.Fatal(err)
	}
	for _, days := range []int{7, 29, 31, 90} {
		d := days
		if _, err := f.svc.UpdateVault(ctx, f.admin, "team1", vault.VaultUpdate{SoftDeleteRetentionDays: &d}); !errors.Is(err, vault.ErrConflict) {
			t.Errorf("retention 30 → %d under purge protection: %v", days, err)
		}
	}
	same := 30
	if _, err := f.svc.UpdateVault(ctx, f.admin, "team1", vault.VaultUpdate{SoftDeleteRetentionDays: &same}); err != nil {
		t.Fatalf("the same retention again: %v", err)
	}
	if v, _ := f.svc.GetVault(ctx, f.admin, "team1"); v.SoftDeleteRetentionDays != 30 {
		t.Fatalf("retention %d, want 30", v.SoftDeleteRetentionDays)
	}
	// Without purge protection it may change; turning protection on in the same update as
	// a new retention fixes the new one.
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team2"}); err != nil {
		t.Fatal(err)
	}
	d, on := 14, true
	if _, err := f.svc.UpdateVault(ctx, f.admin, "team2", vault.VaultUpdate{SoftDeleteRetentionDays: &d}); err != nil {
		t.Fatalf("retention change without purge protection: %v", err)
	}
	d = 21
	v, err := f.svc.UpdateVault(ctx, f.admin, "team2", vault.VaultUpdate{SoftDeleteRetentionDays: &d, EnablePurgeProtection: &on})
	if err != nil || v.SoftDeleteRetentionDays != 21 || !v.EnablePurgeProtection {
		t.Fatalf("retention with purge protection turned on: %+v %v", v, err)
	}
	d = 7
	if _, err := f.svc.UpdateVault(ctx, f.admin, "team2", vault.VaultUpdate{SoftDeleteRetentionDays: &d}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("lowered after purge protection went on: %v", err)
	}
}

// testVaultPortRules: a vault's own port must be one the server can serve on: not a
// privileged port, not the main listener's.
func testVaultPortRules(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, func(o *vault.Options) {
		o.Addresses = vault.Addresses{Domain: "vault.test", ListenHost: "127.0.0.1", Port: 5000}
	})
	ctx := inProcess()
	for _, port := range []int{1, 80, 443, 1023, 5000} {
		if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "ported", Port: port}); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("create on port %d: %v, want refused", port, err)
		}
	}
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "ported", Port: 7001}); err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{443, 5000} {
		p := port
		if _, err := f.svc.UpdateVault(ctx, f.admin, "ported", vault.VaultUpdate{Port: &p}); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("update to port %d: %v, want refused", port, err)
		}
	}
	if v, _ := f.svc.GetVault(ctx, f.admin, "ported"); v.Port != 7001 {
		t.Fatalf("port %d after refused updates, want 7001", v.Port)
	}
}
