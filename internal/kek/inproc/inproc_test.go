package inproc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek/inproc"
	"github.com/cofferhq/coffer/internal/kek/kektest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestAgainstVaultService runs the KEK suite with the in-process driver against the real
// vault, access and identity services (no HTTP), acting as the registry's system identity
// with an access policy that the fixture removes and restores.
func TestAgainstVaultService(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
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
	const domain = ".vault.test"
	svc, err := vault.New(ctx, vault.Options{DB: db, RootKey: root,
		Authorizer: acc,
		Addresses:  vault.Addresses{Domain: strings.TrimPrefix(domain, ".")}})
	if err != nil {
		t.Fatal(err)
	}
	admin := vault.AsServer(ctx)
	if _, err := svc.CreateVault(admin, identity.Principal{}, vault.Vault{Name: "kekvault"}); err != nil {
		t.Fatal(err)
	}
	sys := ids.SystemIdentity()
	grant := func(t *testing.T) {
		if _, err := acc.SetPolicy(ctx, "kekvault", sys.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
			t.Fatal(err)
		}
	}
	grant(t)
	namer := func(ctx context.Context, vaultURL string) (string, bool, error) {
		host := strings.TrimPrefix(vaultURL, "https://")
		name, ok := strings.CutSuffix(host, domain)
		return name, ok, nil
	}
	driver := inproc.New(svc, sys, namer)
	create := func(t *testing.T, name, kty string) string {
		t.Helper()
		p := vault.CreateKeyParams{Kty: kty}
		if kty == "EC" {
			p.Curve = "P-256"
		}
		k, err := svc.CreateKey(admin, identity.Principal{}, "kekvault", name, p)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return k.ID
	}
	create(t, "ec-key", "EC")
	base := "https://kekvault" + domain
	var n atomic.Int32
	kektest.Run(t, func(t *testing.T) kektest.Fixture {
		name := fmt.Sprintf("kek-%d", n.Add(1))
		create(t, name, "RSA")
		return kektest.Fixture{
			KEK:        driver,
			RSAKey:     base + "/keys/" + name,
			ECKey:      base + "/keys/ec-key",
			MissingKey: base + "/keys/no-such-key",
			NewVersion: func(t *testing.T) string {
				k, err := svc.RotateKey(admin, identity.Principal{}, "kekvault", name)
				if err != nil {
					t.Fatal(err)
				}
				return k.ID
			},
			Revoke: func(t *testing.T) {
				if err := acc.DeletePolicy(ctx, "kekvault", sys.ID); err != nil {
					t.Fatal(err)
				}
			},
			Restore: grant,
			SetNetworkDenied: func(t *testing.T, denied bool) {
				rules := vault.NetworkRules{DefaultAction: "Allow"}
				if denied {
					// In-process callers pass unless the rules refuse Coffer's services too.
					rules = vault.NetworkRules{DefaultAction: "Deny", Bypass: "None"}
				}
				if _, err := svc.UpdateVault(admin, identity.Principal{}, "kekvault", vault.VaultUpdate{NetworkRules: &rules}); err != nil {
					t.Fatal(err)
				}
			},
			SetEnabled: func(t *testing.T, on bool) {
				page, err := svc.ListKeyVersions(admin, identity.Principal{}, "kekvault", name, 25, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range page.Items {
					if _, err := svc.UpdateKey(admin, identity.Principal{}, "kekvault", name, k.Version, vault.UpdateKeyParams{Enabled: &on}); err != nil {
						t.Fatal(err)
					}
				}
			},
		}
	})

	// The driver says it is one of Coffer's services: a Deny rule with the CofferServices
	// bypass lets it through (an unmarked call would be refused).
	t.Run("bypass", func(t *testing.T) {
		name := "kek-bypass"
		create(t, name, "RSA")
		rules := vault.NetworkRules{DefaultAction: "Deny", Bypass: "CofferServices"}
		if _, err := svc.UpdateVault(admin, identity.Principal{}, "kekvault", vault.VaultUpdate{NetworkRules: &rules}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			open := vault.NetworkRules{DefaultAction: "Allow"}
			svc.UpdateVault(admin, identity.Principal{}, "kekvault", vault.VaultUpdate{NetworkRules: &open})
		}()
		if _, err := driver.GetKey(ctx, base+"/keys/"+name); err != nil {
			t.Fatalf("in-process KEK under Deny/CofferServices: %v", err)
		}
	})
}
