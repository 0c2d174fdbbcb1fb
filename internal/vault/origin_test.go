package vault_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestCallerMustSayWhereItComesFrom: a call whose context carries no mark (no
// client, no service, not the server) is refused whatever the network rules, so a new
// in-process caller that forgets to mark itself never gets the CofferServices bypass.
func TestCallerMustSayWhereItComesFrom(t *testing.T) {
	f := setup(t)
	svc := inProcess()
	if _, err := f.svc.CreateVault(svc, f.admin, vault.Vault{Name: "platform"}); err != nil {
		t.Fatal(err)
	}
	k, err := f.svc.CreateKey(svc, f.admin, "platform", "kek", vault.CreateKeyParams{Kty: "RSA", Size: 2048})
	if err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context) error {
		_, err := f.svc.GetKey(ctx, f.reg, "platform", "kek", "")
		return err
	}
	rules := func(r vault.NetworkRules) {
		t.Helper()
		if _, err := f.svc.UpdateVault(svc, f.admin, "platform", vault.VaultUpdate{NetworkRules: &r}); err != nil {
			t.Fatal(err)
		}
	}
	unmarked := context.Background()
	client := vault.WithClient(context.Background(), vault.Client{Addr: netip.MustParseAddr("192.0.2.7"), UserAgent: "sdk"})

	// Deny with the bypass for Coffer's services: only marked services pass.
	rules(vault.NetworkRules{DefaultAction: vault.ActionDeny, Bypass: vault.BypassCofferServices})
	if err := get(unmarked); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked context under Deny/CofferServices: %v, want ErrForbidden", err)
	}
	if _, _, err := f.svc.UnwrapKey(unmarked, f.reg, "platform", "kek", k.Version, "RSA-OAEP-256", []byte("x")); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked unwrap under Deny/CofferServices: %v, want ErrForbidden", err)
	}
	if _, err := f.svc.RandomBytes(unmarked, f.reg, "platform", 8); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked random bytes: %v, want ErrForbidden", err)
	}
	if err := get(svc); err != nil {
		t.Fatalf("service under Deny/CofferServices: %v", err)
	}
	if err := get(vault.AsServer(context.Background())); err != nil {
		t.Fatalf("server under Deny/CofferServices: %v", err)
	}
	if err := get(client); !errors.Is(err, vault.ErrNetworkDenied) {
		t.Fatalf("remote client outside the ip rules: %v, want ErrNetworkDenied", err)
	}

	// Deny without bypass: services are subject to the rules too.
	rules(vault.NetworkRules{DefaultAction: vault.ActionDeny, Bypass: vault.BypassNone, IPRules: []string{"192.0.2.0/24"}})
	if err := get(svc); !errors.Is(err, vault.ErrNetworkDenied) {
		t.Fatalf("service under Deny/None: %v, want ErrNetworkDenied", err)
	}
	if err := get(client); err != nil {
		t.Fatalf("remote client inside the ip rules: %v", err)
	}

	// Open network: an unmarked call is still refused.
	rules(vault.NetworkRules{DefaultAction: vault.ActionAllow})
	if err := get(unmarked); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked context under Allow: %v, want ErrForbidden", err)
	}
	if err := get(svc); err != nil {
		t.Fatalf("service under Allow: %v", err)
	}

	// Management calls are no exception: a vault is neither read, changed, listed nor
	// deleted for a caller that does not say where it comes from.
	if _, err := f.svc.GetVault(unmarked, f.admin, "platform"); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked GetVault: %v, want ErrForbidden", err)
	}
	if _, err := f.svc.CreateVault(unmarked, f.admin, vault.Vault{Name: "other"}); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked CreateVault: %v, want ErrForbidden", err)
	}
	if err := f.svc.DeleteVault(unmarked, f.admin, "platform"); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("unmarked DeleteVault: %v, want ErrForbidden", err)
	}
	if vs, err := f.svc.ListVaults(unmarked, f.admin); err != nil || len(vs) != 0 {
		t.Fatalf("unmarked ListVaults: %d vaults, %v; want none", len(vs), err)
	}
	if _, err := f.svc.GetVault(client, f.admin, "platform"); err != nil {
		t.Fatalf("GetVault from a marked client: %v", err)
	}

	// The mark set last wins: a service acting inside a client's request is the service.
	if err := get(vault.AsService(client, "registry")); err != nil {
		t.Fatalf("service mark over a client mark: %v", err)
	}

	// The audit trail names the service.
	f.audit.Flush(svc)
	recs, err := f.audit.List(svc, audit.Filter{Principal: "registry", Operation: "KeyGet"})
	if err != nil {
		t.Fatal(err)
	}
	var byService, refused int
	for _, r := range recs {
		if r.ClientAddr == "in-process" && r.UserAgent == "coffer/registry" && r.Result == audit.ResultSuccess {
			byService++
		}
		if r.ClientAddr == "in-process" && r.UserAgent == "" && r.Result == audit.ResultDenied {
			refused++
		}
	}
	if byService == 0 || refused != 2 {
		t.Fatalf("audit: %d successful calls by the service, %d refused unmarked calls (want 2): %+v", byService, refused, recs)
	}
}

// TestNewNeedsAnAuthorizer: a vault without the access part is refused at construction,
// not at request time.
func TestNewNeedsAnAuthorizer(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = vault.New(ctx, vault.Options{DB: db, RootKey: make([]byte, 32)})
	if err == nil {
		t.Fatal("vault.New accepted options without an authorizer")
	}
}

// testDeleteVaultRemovesItsPolicies: the deletion cascade is the vault's own: a vault
// created again under the same name starts with no access policies.
func testDeleteVaultRemovesItsPolicies(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	var changes []string
	f.svc.Subscribe(func(v vault.Vault, deleted bool) {
		if deleted {
			changes = append(changes, "-"+v.Name)
		} else {
			changes = append(changes, "+"+v.Name)
		}
	})
	for _, n := range []string{"team1", "team2"} {
		if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.svc.DeleteVault(ctx, f.admin, "team1"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.pol.deleted, []string{"team1"}) {
		t.Fatalf("policies removed for %v, want [team1]", f.pol.deleted)
	}
	if !slices.Equal(changes, []string{"+team1", "+team2", "-team1"}) {
		t.Fatalf("subscriber heard %v", changes)
	}
	// A refused deletion removes nothing.
	if _, err := f.svc.CreateKey(ctx, f.admin, "team2", "k", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteVault(ctx, f.admin, "team2"); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("delete a vault with keys: %v", err)
	}
	if len(f.pol.deleted) != 1 {
		t.Fatalf("policies removed for %v after a refused deletion", f.pol.deleted)
	}
	// The policies failing to go does not undo the deletion.
	f.pol.err = errors.New("store down")
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team3"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteVault(ctx, f.admin, "team3"); err != nil {
		t.Fatalf("delete with the policy store down: %v", err)
	}
	if _, err := f.svc.LookupVault(ctx, "team3"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("team3 still there: %v", err)
	}
}
