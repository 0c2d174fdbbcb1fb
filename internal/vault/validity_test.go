package vault_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestKeyValidityMustBeAnInterval: a key whose nbf is after its exp can never be used; it
// is refused on create, import and update, and a valid interval still passes.
func TestKeyValidityMustBeAnInterval(t *testing.T) {
	f := setup(t)
	ctx := inProcess()
	f.g.allow(f.admin.ID, access.VaultManage, access.VaultRead, access.KeyCreate, access.KeyGet, access.KeyUpdate, access.KeyImport)
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "dates"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	late, early := now.Add(48*time.Hour), now.Add(24*time.Hour)
	if _, err := f.svc.CreateKey(ctx, f.admin, "dates", "backwards", vault.CreateKeyParams{Kty: "oct", Size: 256, NotBefore: &late, Expires: &early}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("create with nbf after exp: %v, want ErrInvalid", err)
	}
	k, err := f.svc.CreateKey(ctx, f.admin, "dates", "ok", vault.CreateKeyParams{Kty: "oct", Size: 256, NotBefore: &early, Expires: &late})
	if err != nil {
		t.Fatalf("create with nbf before exp: %v", err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "dates", "ok", "", vault.UpdateKeyParams{Expires: &now}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("update exp to before the key's nbf: %v, want ErrInvalid", err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "dates", "ok", "", vault.UpdateKeyParams{NotBefore: &late, Expires: &early}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("update to nbf after exp: %v, want ErrInvalid", err)
	}
	got, err := f.svc.GetKey(ctx, f.admin, "dates", "ok", "")
	if err != nil || got.Attributes.Expires == nil || !got.Attributes.Expires.Equal(late) {
		t.Fatalf("refused updates changed the key: %+v, %v (created %+v)", got.Attributes, err, k.Attributes)
	}
	if _, err := f.svc.ImportKey(ctx, f.admin, "dates", "imported", vault.ImportKeyParams{JWK: octJWK(bytes.Repeat([]byte{7}, 32)), NotBefore: &late, Expires: &early}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("import with nbf after exp: %v, want ErrInvalid", err)
	}
}
