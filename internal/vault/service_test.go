package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

// grants is a test authorizer: principal id → allowed actions.
type grants struct {
	mu  sync.Mutex
	got map[string]map[access.Action]bool
}

func (g *grants) allow(id string, actions ...access.Action) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.got[id] == nil {
		g.got[id] = map[access.Action]bool{}
	}
	for _, a := range actions {
		g.got[id][a] = true
	}
}

func (g *grants) revoke(id string, a access.Action) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.got[id], a)
}

func (g *grants) Authorize(_ context.Context, r access.Request) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.got[r.Principal.ID][r.Action] {
		return nil
	}
	return fmt.Errorf("%w: %s lacks %s", access.ErrDenied, r.Principal.Name, r.Action)
}

type fixture struct {
	svc   *vault.Service
	db    *store.DB
	audit *audit.Log
	g     *grants
	clk   *clocktest.Clock
	pol   *policies
	admin identity.Principal
	reg   identity.Principal
	// opts made svc: another service on them is another replica on the same database.
	opts vault.Options
}

// policies records the vaults whose access policies the service removed.
type policies struct {
	mu      sync.Mutex
	deleted []string
	err     error
}

func (p *policies) DeleteVaultPolicies(_ context.Context, vault string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleted = append(p.deleted, vault)
	return p.err
}

// inProcess is the context of a test acting as one of Coffer's services.
func inProcess() context.Context { return vault.AsService(context.Background(), "registry") }

func setup(t *testing.T) *fixture { return setupB(t) }

func setupB(t testing.TB) *fixture { return setupWith(t, nil) }

// setupWith is setup with options adjusted by mutate.
func setupWith(t testing.TB, mutate func(*vault.Options)) *fixture {
	t.Helper()
	return setupOn(t, func(t testing.TB) *store.DB { return storetest.SQLite(t) }, mutate)
}

// setupOn is setupWith on a metadata store open gives (the storage suite's engines).
func setupOn(t testing.TB, open pgtest.Open, mutate func(*vault.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	db := open(t)
	al, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: make([]byte, audit.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	root, _, err := vault.LoadRootKey(filepath.Join(t.TempDir(), "root.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, audit: al, g: &grants{got: map[string]map[access.Action]bool{}}, clk: clocktest.New(time.Now()), pol: &policies{},
		admin: identity.Principal{ID: "admin-id", Name: "admin", Kind: identity.KindUser},
		reg:   identity.Principal{ID: "reg-id", Name: "registry", Kind: identity.KindSystemIdentity}}
	opts := vault.Options{DB: db, Audit: al, RootKey: root, Now: f.clk.Now, CacheTTL: time.Nanosecond,
		Authorizer: f.g, Policies: f.pol}
	if mutate != nil {
		mutate(&opts)
	}
	f.opts = opts
	f.svc = f.replica(t)
	f.g.allow(f.admin.ID, access.VaultManage, access.VaultRead, access.KeyCreate, access.KeyGet, access.KeyList, access.KeyDelete,
		access.KeyRecover, access.KeyPurge, access.KeyUpdate, access.KeySetRotationPolicy, access.KeyGetRotationPolicy, access.KeyRotate)
	f.g.allow(f.reg.ID, access.KeyGet, access.KeyWrap, access.KeyUnwrap)
	return f
}

// testInProcessAPI is the API the registry's key-encryption key uses: typed errors say why
// access failed.
func testInProcessAPI(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "platform"}); err != nil {
		t.Fatal(err)
	}
	k, err := f.svc.CreateKey(ctx, f.admin, "platform", "registry-kek", vault.CreateKeyParams{Kty: "RSA", Size: 2048})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.GetKey(ctx, f.reg, "platform", "registry-kek", "")
	if err != nil || got.ID != k.ID || got.Kty() != "RSA" || !got.Attributes.Enabled || got.Size != 2048 {
		t.Fatalf("get: %+v %v", got, err)
	}
	root := []byte("0123456789abcdef0123456789abcdef")
	kid, wrapped, err := f.svc.WrapKey(ctx, f.reg, "platform", "registry-kek", "", "RSA-OAEP-256", root)
	if err != nil || kid != k.ID {
		t.Fatalf("wrap: %s %v", kid, err)
	}
	_, plain, err := f.svc.UnwrapKey(ctx, f.reg, "platform", "registry-kek", k.Version, "RSA-OAEP-256", wrapped)
	if err != nil || !bytes.Equal(plain, root) {
		t.Fatalf("unwrap: %v", err)
	}

	unwrap := func() error {
		_, _, err := f.svc.UnwrapKey(ctx, f.reg, "platform", "registry-kek", k.Version, "RSA-OAEP-256", wrapped)
		return err
	}
	// Permission removed → ErrForbidden (and access.ErrDenied).
	f.g.revoke(f.reg.ID, access.KeyUnwrap)
	if err := unwrap(); !errors.Is(err, vault.ErrForbidden) || !errors.Is(err, access.ErrDenied) {
		t.Fatalf("revoked: %v", err)
	}
	f.g.allow(f.reg.ID, access.KeyUnwrap)
	// Disabled → ErrDisabled.
	off := false
	if _, err := f.svc.UpdateKey(ctx, f.admin, "platform", "registry-kek", "", vault.UpdateKeyParams{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); !errors.Is(err, vault.ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	on := true
	f.svc.UpdateKey(ctx, f.admin, "platform", "registry-kek", "", vault.UpdateKeyParams{Enabled: &on})
	// Network rules without bypass for Coffer's services → ErrNetworkDenied; with it, allowed.
	deny := vault.NetworkRules{DefaultAction: "Deny", Bypass: "None"}
	if _, err := f.svc.UpdateVault(ctx, f.admin, "platform", vault.VaultUpdate{NetworkRules: &deny}); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); !errors.Is(err, vault.ErrNetworkDenied) {
		t.Fatalf("network: %v", err)
	}
	deny.Bypass = "CofferServices"
	f.svc.UpdateVault(ctx, f.admin, "platform", vault.VaultUpdate{NetworkRules: &deny})
	if err := unwrap(); err != nil {
		t.Fatalf("bypass: %v", err)
	}
	// Deleted → ErrNotFound; recovered → works.
	if _, err := f.svc.DeleteKey(ctx, f.admin, "platform", "registry-kek"); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if _, err := f.svc.RecoverDeletedKey(ctx, f.admin, "platform", "registry-kek"); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); err != nil {
		t.Fatalf("recovered: %v", err)
	}
	// Every call is audited under the caller.
	f.audit.Flush(ctx)
	recs, _ := f.audit.List(ctx, audit.Filter{Principal: "registry", Operation: "KeyUnwrapKey"})
	if len(recs) < 5 || recs[0].Target != k.ID || recs[0].Algorithm != "RSA-OAEP-256" || recs[0].ClientAddr != "in-process" {
		t.Fatalf("audit: %d records, first %+v", len(recs), recs)
	}
	denied, _ := f.audit.List(ctx, audit.Filter{Principal: "reg-id", Result: audit.ResultDenied})
	if len(denied) != 2 {
		t.Fatalf("denied records: %d", len(denied))
	}
}

func testVaultProperties(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "Bad_Name"}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "short", SoftDeleteRetentionDays: 3}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("retention 3: %v", err)
	}
	v, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1", EnablePurgeProtection: true})
	if err != nil || v.SoftDeleteRetentionDays != 90 || v.NetworkRules.DefaultAction != "Allow" {
		t.Fatalf("defaults: %+v %v", v, err)
	}
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	off := false
	if _, err := f.svc.UpdateVault(ctx, f.admin, "team1", vault.VaultUpdate{EnablePurgeProtection: &off}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("purge protection turned off: %v", err)
	}
	bad := vault.NetworkRules{DefaultAction: "Deny", IPRules: []string{"not-an-ip"}}
	if _, err := f.svc.UpdateVault(ctx, f.admin, "team1", vault.VaultUpdate{NetworkRules: &bad}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("bad rule: %v", err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteVault(ctx, f.admin, "team1"); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("delete a vault with keys: %v", err)
	}
	stranger := identity.Principal{ID: "x", Name: "x"}
	if _, err := f.svc.GetVault(ctx, stranger, "team1"); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("stranger: %v", err)
	}
	if vs, _ := f.svc.ListVaults(ctx, stranger); len(vs) != 0 {
		t.Fatalf("stranger lists %d vaults", len(vs))
	}
}

// testLifecycle: rotation policies are carried out on schedule and deleted keys are purged
// after their retention, purge protection or not.
func testLifecycle(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1", EnablePurgeProtection: true, SoftDeleteRetentionDays: 7})
	k, err := f.svc.CreateKey(ctx, f.admin, "team1", "rotating", vault.CreateKeyParams{Kty: "EC", Curve: "P-256"})
	if err != nil {
		t.Fatal(err)
	}
	var p vault.RotationPolicy
	rot := vault.LifetimeAction{}
	rot.Trigger.TimeAfterCreate = "P30D"
	rot.Action.Type = "rotate"
	p.LifetimeActions = []vault.LifetimeAction{rot}
	p.Attributes.ExpiryTime = "P90D"
	if _, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "rotating", p); err != nil {
		t.Fatal(err)
	}
	f.svc.RunLifecycle(ctx)
	if got, _ := f.svc.GetKey(ctx, f.admin, "team1", "rotating", ""); got.Version != k.Version {
		t.Fatal("rotated before the trigger")
	}
	f.clk.Advance(31 * 24 * time.Hour)
	if err := f.svc.RunLifecycle(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := f.svc.GetKey(ctx, f.admin, "team1", "rotating", "")
	if got.Version == k.Version || got.Attributes.Expires == nil || got.JWK.Crv != "P-256" {
		t.Fatalf("not rotated by policy: %+v", got)
	}
	if d := got.Attributes.Expires.Sub(f.clk.Now()); d < 89*24*time.Hour || d > 91*24*time.Hour {
		t.Fatalf("new version expires in %s, want 90 days", d)
	}
	f.svc.RunLifecycle(ctx)
	if again, _ := f.svc.GetKey(ctx, f.admin, "team1", "rotating", ""); again.Version != got.Version {
		t.Fatal("rotated twice for one trigger")
	}

	// Purge protection holds a deleted key until its scheduled purge date; then the
	// lifecycle job purges it.
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "rotating"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "rotating"); !errors.Is(err, vault.ErrPurgeProtected) {
		t.Fatalf("purge under protection: %v", err)
	}
	f.clk.Advance(8 * 24 * time.Hour)
	f.svc.RunLifecycle(ctx)
	if _, err := f.svc.GetDeletedKey(ctx, f.admin, "team1", "rotating"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("not purged after retention: %v", err)
	}
}

// TestRootKeyFile: the vault root key file is private and stable across loads.
func TestRootKeyFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys", "vault-root.key")
	k1, where, err := vault.LoadRootKey(file, "")
	if err != nil || where != file {
		t.Fatal(err)
	}
	st, _ := os.Stat(file)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("root key file mode %o", st.Mode().Perm())
	}
	k2, _, _ := vault.LoadRootKey(file, "")
	if !bytes.Equal(k1, k2) {
		t.Fatal("root key changed across loads")
	}
	os.Chmod(file, 0o644)
	if _, _, err := vault.LoadRootKey(file, ""); err == nil {
		t.Fatal("a world-readable root key was accepted")
	}
	if _, _, err := vault.LoadRootKey(file, "bm90IDMyIGJ5dGVz"); err == nil {
		t.Fatal("a short environment root key was accepted")
	}

}

// testMaterialSealed: no private key byte is stored in the clear.
func testMaterialSealed(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"})
	f.g.allow(f.admin.ID, access.KeyImport, access.KeyUnwrap, access.KeyWrap)
	secret := bytes.Repeat([]byte{0x5a}, 32)
	if _, err := f.svc.ImportKey(ctx, f.admin, "team1", "imp", vault.ImportKeyParams{JWK: octJWK(secret)}); err != nil {
		t.Fatal(err)
	}
	rows, err := f.db.QueryContext(ctx, `SELECT sealed, public_jwk FROM vault_key_versions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var sealed []byte
		var pub string
		rows.Scan(&sealed, &pub)
		if bytes.Contains(sealed, secret[:16]) || bytes.Contains([]byte(pub), []byte("WlpaWlpa")) {
			t.Fatal("key material stored in the clear")
		}
	}
}
