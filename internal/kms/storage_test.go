package kms_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/kek/resolve"
	"github.com/cofferhq/coffer/internal/kms"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

// fixture is the KMS settings service over the real vault, access, identity and audit
// services on one metadata store, as the server wires them (internal/server/services.go).
type fixture struct {
	db     *store.DB
	opts   kms.Options
	svc    *kms.Service
	vault  *vault.Service
	plugin identity.Principal
	admin  identity.Principal
	// keys are versionless ids of RSA keys in vault "team" the plugin may use.
	keys []string
}

func newFixture(t *testing.T, db *store.DB, nkeys int) *fixture {
	t.Helper()
	ctx := context.Background()
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := access.New(ctx, db, ids, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: make([]byte, audit.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	root := make([]byte, 32)
	rand.Read(root)
	vs, err := vault.New(ctx, vault.Options{DB: db, RootKey: root, Authorizer: acc, Audit: al, Policies: acc,
		Addresses: vault.Addresses{Domain: "vault.test"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := resolve.New(resolve.Options{Vault: vs, Local: vs, Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, vault: vs, plugin: ids.SystemIdentity(), admin: identity.Principal{ID: "admin", Name: "admin", Kind: identity.KindUser}}
	f.opts = kms.Options{DB: db, Vault: vs, Local: vs, Resolver: res, Identities: ids, Policies: acc, Audit: al,
		PlatformVaultURL: vs.Addresses().VaultURL(vault.Vault{Name: kms.PlatformVaultName})}
	if f.svc, err = kms.New(ctx, f.opts); err != nil {
		t.Fatal(err)
	}
	srv := vault.AsServer(ctx)
	if _, err := vs.CreateVault(srv, identity.Principal{}, vault.Vault{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.SetPolicy(ctx, "team", f.plugin.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
		t.Fatal(err)
	}
	for i := range nkeys {
		k, err := vs.CreateKey(srv, identity.Principal{}, "team", fmt.Sprint("cmk", i), vault.CreateKeyParams{Kty: "RSA", Size: 2048})
		if err != nil {
			t.Fatal(err)
		}
		f.keys = append(f.keys, strings.TrimSuffix(k.ID, "/"+k.Version))
	}
	return f
}

// replica is another KMS service on the same database.
func (f *fixture) replica(t *testing.T) *kms.Service {
	t.Helper()
	s, err := kms.New(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) cmk(name, key string) kms.Spec {
	return kms.Spec{Name: name, KeyManagement: kms.CustomerManaged, KeyID: key, Identity: f.plugin.ID}
}

// TestStorage is the KMS settings' storage suite, on SQLite and on PostgreSQL: every
// statement (create, read, list in name order, update, status reports, delete) through the
// service, and settings changes of one cluster at once on two replicas.
func TestStorage(t *testing.T) {
	pgtest.Suite(t,
		pgtest.Case{Name: "Clusters", Run: testClusters},
		pgtest.Case{Name: "ConcurrentChanges", Run: testConcurrentChanges},
	)
}

func testClusters(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	f := newFixture(t, open(t), 2)
	if l, err := f.svc.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("fresh list %v %v", l, err)
	}
	for _, n := range []string{"prod", "dev", "b-dev"} {
		if _, err := f.svc.Create(ctx, f.admin, f.cmk(n, f.keys[0])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.Create(ctx, f.admin, f.cmk("dev", f.keys[1])); !errors.Is(err, kms.ErrConflict) {
		t.Fatalf("a taken name: %v", err)
	}
	l, err := f.svc.List(ctx)
	var names []string
	for _, c := range l {
		names = append(names, c.Name)
	}
	if err != nil || !slices.Equal(names, []string{"b-dev", "dev", "prod"}) {
		t.Fatalf("listed %v %v", names, err)
	}
	c, err := f.svc.Update(ctx, f.admin, "dev", kms.Spec{KeyManagement: kms.CustomerManaged, KeyID: f.keys[1], KeyVaultNetworkAccess: kms.NetworkPrivate})
	if err != nil || c.KeyID != f.keys[1] || len(c.DecryptOnly) != 1 || c.DecryptOnly[0].KeyID != f.keys[0] {
		t.Fatalf("update: %+v %v", c, err)
	}
	got, err := f.replica(t).Get(ctx, "dev")
	if err != nil || got.KeyID != f.keys[1] || got.NetworkAccess != kms.NetworkPrivate || len(got.DecryptOnly) != 1 || got.IdentityID != f.plugin.ID ||
		!got.Created.Equal(c.Created) {
		t.Fatalf("another replica reads %+v %v", got, err)
	}
	// The plugin's report is kept beside the settings, and survives a settings change.
	if err := f.svc.Report(ctx, f.plugin, "dev", kms.PluginStatus{KeyID: f.keys[1] + "/v", Healthz: "ok", CheckedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Report(ctx, f.admin, "dev", kms.PluginStatus{Healthz: "ok"}); !errors.Is(err, kms.ErrForbidden) {
		t.Fatalf("a report by another identity: %v", err)
	}
	ps, err := f.svc.PluginSettings(ctx, f.plugin, "dev")
	if err != nil || ps.WriteKey != f.keys[1] || !slices.Equal(ps.DecryptKeys, []string{f.keys[0]}) || !slices.Equal(ps.ThroughCoffer, []string{f.keys[1]}) {
		t.Fatalf("plugin settings %+v %v", ps, err)
	}
	if _, err := f.svc.Retire(ctx, f.admin, "dev", f.keys[1]+"/0123"); err != nil {
		t.Fatal(err)
	}
	got, _ = f.svc.Get(ctx, "dev")
	if got.Status == nil || got.Status.Healthz != "ok" || !got.DecryptOnly[0].Retirable {
		t.Fatalf("after the report and the retirement: %+v", got)
	}
	if err := f.svc.Delete(ctx, f.admin, "dev"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, f.admin, "dev"); !errors.Is(err, kms.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := f.svc.Get(ctx, "dev"); !errors.Is(err, kms.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := f.svc.Update(ctx, f.admin, "dev", kms.Spec{}); !errors.Is(err, kms.ErrNotFound) {
		t.Fatalf("update after delete: %v", err)
	}
}

// testConcurrentChanges: changes of one cluster's write key at once on two replicas keep
// every earlier write key decrypt-only (Secrets written under it must stay readable), and
// creations of one name at once make one cluster.
func testConcurrentChanges(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	f := newFixture(t, open(t), 3)
	replicas := []*kms.Service{f.svc, f.replica(t)}
	for round := range 6 {
		name := fmt.Sprint("prod", round)
		if _, err := f.svc.Create(ctx, f.admin, f.cmk(name, f.keys[0])); err != nil {
			t.Fatal(err)
		}
		for _, err := range storetest.AtOnce(len(replicas), func(i int) error {
			_, err := replicas[i].Update(ctx, f.admin, name, kms.Spec{KeyManagement: kms.CustomerManaged, KeyID: f.keys[1+i]})
			return err
		}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		c, err := f.svc.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		known := []string{c.KeyID}
		for _, d := range c.DecryptOnly {
			known = append(known, d.KeyID)
		}
		for _, k := range f.keys {
			if !slices.Contains(known, k) {
				t.Fatalf("round %d: write key %s, decrypt-only %v: key %s, a write key before, is lost", round, c.KeyID, c.DecryptOnly, k)
			}
		}
	}
	storetest.OneWins(t, "creations of one cluster", storetest.AtOnce(4, func(i int) error {
		_, err := replicas[i%2].Create(ctx, f.admin, f.cmk("same", f.keys[i%3]))
		return err
	}), kms.ErrConflict)
}
