package encryption_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/encryption"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestOpenProvisionsThePlatformKeyOnce: a fresh registry gets the platform vault and key
// (rotation policy, the system identity's access policy) and is encrypted under the
// versionless key; opening again finds them; the access check interval is bounded.
func TestOpenProvisionsThePlatformKeyOnce(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := access.New(ctx, db, ids, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	rand.Read(root)
	const base = "https://coffer-platform.vault.test"
	svc, err := vault.New(ctx, vault.Options{DB: db, RootKey: root,
		Authorizer: acc, Addresses: vault.Addresses{Scheme: "https", Domain: "vault.test"}})
	if err != nil {
		t.Fatal(err)
	}
	namer := func(ctx context.Context, vaultURL string) (string, bool, error) {
		return encryption.PlatformVaultName, vaultURL == base, nil
	}
	resolver := keyring.ResolverFunc(func(ctx context.Context, ident, keyID string) (kek.KEK, error) {
		return inproc.New(svc, ids.SystemIdentity(), namer), nil
	})
	opts := encryption.Options{DB: db, Resolver: resolver, Vault: svc, Identities: ids, Policies: acc,
		PlatformVaultURL: base, AccessCheckInterval: time.Minute, RotationCheckInterval: time.Hour}

	for _, bad := range []time.Duration{0, 61 * time.Second} {
		o := opts
		o.AccessCheckInterval = bad
		if _, err := encryption.Open(ctx, o); err == nil || !strings.Contains(err.Error(), "--key-access-check-interval") {
			t.Fatalf("access check interval %s: %v", bad, err)
		}
	}
	for i := range 2 {
		enc, err := encryption.Open(ctx, opts)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		st, err := enc.Show(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.KeySource != keyring.SourcePlatform || !st.KeyAccessible || st.KeyVaultProperties.KeyIdentifier != base+"/keys/"+encryption.PlatformKeyName ||
			!st.KeyVaultProperties.KeyRotationEnabled || st.KeyVaultProperties.Identity != keyring.SystemIdentity {
			t.Fatalf("open %d: show = %+v", i, st)
		}
	}
	pol, err := svc.GetRotationPolicy(vault.AsServer(ctx), identity.Principal{}, encryption.PlatformVaultName, encryption.PlatformKeyName)
	if err != nil || len(pol.LifetimeActions) != 1 || pol.LifetimeActions[0].Trigger.TimeAfterCreate != "P90D" {
		t.Fatalf("platform key rotation policy = %+v, %v", pol, err)
	}
	// An identity the registry does not use may be deleted (the guard for one it uses is
	// TestEncryptionCommandsAndGuards).
	if err := mustOpen(t, opts).GuardIdentityRemoval(ctx, identity.Principal{ID: "other", ClientID: "other-client"}); err != nil {
		t.Fatalf("an unused identity is guarded: %v", err)
	}
}

func mustOpen(t *testing.T, o encryption.Options) *encryption.Service {
	t.Helper()
	enc, err := encryption.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
