package vault_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/vault"
)

// TestStorage is the vault's storage suite: every SQL statement of the vault (vaults, keys,
// versions, paging, soft delete, recovery, purge, backup and restore, rotation policies,
// the lifecycle run) through the service's own API, on SQLite and on PostgreSQL, including
// the races SQLite's single writer used to settle: several callers (or replicas, each its
// own Service on the one database) at once.
func TestStorage(t *testing.T) {
	pgtest.Suite(t,
		pgtest.Case{Name: "InProcessAPI", Run: testInProcessAPI},
		pgtest.Case{Name: "VaultProperties", Run: testVaultProperties},
		pgtest.Case{Name: "VaultPortRules", Run: testVaultPortRules},
		pgtest.Case{Name: "DeleteVaultRemovesItsPolicies", Run: testDeleteVaultRemovesItsPolicies},
		pgtest.Case{Name: "Lifecycle", Run: testLifecycle},
		pgtest.Case{Name: "MaterialSealed", Run: testMaterialSealed},
		pgtest.Case{Name: "KeyNotBeforeAfterExpiry", Run: testKeyNotBeforeAfterExpiry},
		pgtest.Case{Name: "RetentionFixedUnderPurgeProtection", Run: testRetentionFixedUnderPurgeProtection},
		pgtest.Case{Name: "KeyNamesAreCaseInsensitive", Run: testKeyNamesAreCaseInsensitive},
		pgtest.Case{Name: "VaultNamesAreCaseInsensitive", Run: testVaultNamesAreCaseInsensitive},
		pgtest.Case{Name: "KeysDifferingOnlyInCaseFromBefore", Run: testKeysDifferingOnlyInCaseFromBefore},
		pgtest.Case{Name: "Paging", Run: testPaging},
		pgtest.Case{Name: "UpdateAndPolicyStored", Run: testUpdateAndPolicyStored},
		pgtest.Case{Name: "BackupRestorePurge", Run: testBackupRestorePurge},
		pgtest.Case{Name: "ConcurrentVersions", Run: testConcurrentVersions},
		pgtest.Case{Name: "ConcurrentVaults", Run: testConcurrentVaults},
		pgtest.Case{Name: "ConcurrentUpdates", Run: testConcurrentUpdates},
		pgtest.Case{Name: "DeleteVaultBesideCreateKey", Run: testDeleteVaultBesideCreateKey},
		pgtest.Case{Name: "LifecycleOnReplicas", Run: testLifecycleOnReplicas},
	)
}

// replica is another Service on f's database: what a second replica runs.
func (f *fixture) replica(t testing.TB) *vault.Service {
	t.Helper()
	s, err := vault.New(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testPaging: ListKeys, ListDeletedKeys and ListKeyVersions page by $skiptoken in name
// (bytewise) and version order, without losing or repeating an item.
func testPaging(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"}); err != nil {
		t.Fatal(err)
	}
	// Upper case sorts before lower case bytewise, whatever the database's locale.
	names := []string{"B-key", "a-key", "c-key", "Z-key", "m-key", "d-key", "e-key"}
	for _, n := range names {
		if _, err := f.svc.CreateKey(ctx, f.admin, "team1", n, vault.CreateKeyParams{Kty: "oct"}); err != nil {
			t.Fatal(err)
		}
	}
	sorted := slices.Sorted(slices.Values(names))
	all := func(list func(skip string) ([]string, string, error)) []string {
		var got []string
		skip := ""
		for range 10 {
			items, next, err := list(skip)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) > 3 {
				t.Fatalf("a page of %d items, asked for 3", len(items))
			}
			got = append(got, items...)
			if next == "" {
				return got
			}
			skip = next
		}
		t.Fatal("paging does not end")
		return nil
	}
	live := func(skip string) ([]string, string, error) {
		p, err := f.svc.ListKeys(ctx, f.admin, "team1", 3, skip)
		return field(p, func(k vault.Key) string { return k.Name }), p.Next, err
	}
	if got := all(live); !slices.Equal(got, sorted) {
		t.Fatalf("listed keys %v, want %v", got, sorted)
	}
	if _, err := f.svc.ListKeys(ctx, f.admin, "team1", 3, "%%%"); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("bad skiptoken: %v", err)
	}

	// Deleted keys leave the live listing for the deleted one.
	var deleted []string
	for _, n := range sorted[:4] {
		if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", n); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, n)
	}
	gone := func(skip string) ([]string, string, error) {
		p, err := f.svc.ListDeletedKeys(ctx, f.admin, "team1", 3, skip)
		return field(p, func(k vault.DeletedKey) string { return k.Name }), p.Next, err
	}
	if got := all(gone); !slices.Equal(got, deleted) {
		t.Fatalf("listed deleted keys %v, want %v", got, deleted)
	}
	if got := all(live); !slices.Equal(got, sorted[4:]) {
		t.Fatalf("listed live keys %v after deleting %v, want %v", got, deleted, sorted[4:])
	}

	// Versions page oldest first.
	var versions []string
	for range 7 {
		k, err := f.svc.CreateKey(ctx, f.admin, "team1", "versioned", vault.CreateKeyParams{Kty: "oct"})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, k.Version)
	}
	vs := func(skip string) ([]string, string, error) {
		p, err := f.svc.ListKeyVersions(ctx, f.admin, "team1", "versioned", 3, skip)
		return field(p, func(k vault.Key) string { return k.Version }), p.Next, err
	}
	if got := all(vs); !slices.Equal(got, versions) {
		t.Fatalf("listed versions %v, want %v", got, versions)
	}
}

// field is one field of every item of a page.
func field[T any](p vault.Page[T], f func(T) string) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, f(it))
	}
	return out
}

// testUpdateAndPolicyStored: what UpdateKey and SetRotationPolicy store is what every
// later read returns (the cache is bypassed: CacheTTL is 1 ns).
func testUpdateAndPolicyStored(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"})
	k, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "EC", Curve: "P-256", Tags: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	exp := f.clk.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	tags := map[string]string{"b": "2"}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", k.Version, vault.UpdateKeyParams{Enabled: &off, Expires: &exp, Tags: &tags, KeyOps: []string{"sign"}}); err != nil {
		t.Fatal(err)
	}
	got, err := f.replica(t).GetKey(ctx, f.admin, "team1", "k", "")
	if err != nil || got.Attributes.Enabled || got.Attributes.Expires == nil || !got.Attributes.Expires.Equal(exp) ||
		got.Tags["b"] != "2" || len(got.Tags) != 1 || !slices.Equal(got.JWK.KeyOps, []string{"sign"}) {
		t.Fatalf("after the update another service reads %+v %v", got, err)
	}
	if _, err := f.svc.UpdateKey(ctx, f.admin, "team1", "k", "no-such-version", vault.UpdateKeyParams{Enabled: &off}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("update of a missing version: %v", err)
	}

	var p vault.RotationPolicy
	n := vault.LifetimeAction{}
	n.Trigger.TimeBeforeExpiry = "P7D"
	n.Action.Type = "Notify"
	p.LifetimeActions = []vault.LifetimeAction{n}
	p.Attributes.ExpiryTime = "P30D"
	set, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "K", p)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	p.Attributes.ExpiryTime = "P60D"
	again, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "k", p)
	if err != nil || !again.Attributes.Created.Equal(set.Attributes.Created) || !again.Attributes.Updated.After(set.Attributes.Created) {
		t.Fatalf("second policy: %+v %v (first created %s)", again.Attributes, err, set.Attributes.Created)
	}
	read, err := f.replica(t).GetRotationPolicy(ctx, f.admin, "team1", "k")
	if err != nil || read.Attributes.ExpiryTime != "P60D" || len(read.LifetimeActions) != 1 || read.LifetimeActions[0].Action.Type != "Notify" {
		t.Fatalf("policy read back: %+v %v", read, err)
	}
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "k", p); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("policy of a deleted key: %v", err)
	}
}

// testBackupRestorePurge: a backup restores every version after a purge, under the same
// versions; a taken name is refused; recover and purge are refused in the wrong state.
func testBackupRestorePurge(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.g.allow(f.admin.ID, access.KeyBackup, access.KeyRestore)
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"})
	var versions []string
	for range 3 {
		k, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct"})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, k.Version)
	}
	blob, err := f.svc.BackupKey(ctx, f.admin, "team1", "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RestoreKey(ctx, f.admin, "team1", blob); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("restore over a live key: %v", err)
	}
	if _, err := f.svc.RecoverDeletedKey(ctx, f.admin, "team1", "k"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("recover a live key: %v", err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "k"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("purge a live key: %v", err)
	}
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", "k"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := f.svc.RestoreKey(ctx, f.admin, "team1", blob); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("restore over a deleted key: %v", err)
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct"}); !errors.Is(err, vault.ErrConflict) {
		t.Fatalf("a version of a deleted key: %v", err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "k"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.PurgeDeletedKey(ctx, f.admin, "team1", "k"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("purge twice: %v", err)
	}
	var rows int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_key_versions WHERE vault = 'team1'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d version rows after the purge (%v)", rows, err)
	}
	if _, err := f.svc.RestoreKey(ctx, f.admin, "team1", blob); err != nil {
		t.Fatal(err)
	}
	p, err := f.svc.ListKeyVersions(ctx, f.admin, "team1", "k", 0, "")
	got := field(p, func(k vault.Key) string { return k.Version })
	if err != nil || !slices.Equal(got, versions) {
		t.Fatalf("restored versions %v %v, want %v", got, err, versions)
	}
	// A version added after the restore comes after the restored ones.
	k, err := f.svc.CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct"})
	if newest, _ := f.svc.GetKey(ctx, f.admin, "team1", "k", ""); err != nil || newest.Version != k.Version {
		t.Fatalf("after the restore the newest version is %s, want %s (%v)", newest.Version, k.Version, err)
	}
}

// testConcurrentVersions: callers adding versions to one key at once, the first of them
// creating it, each get a version of their own with a sequence number of its own (a
// duplicated number would make version paging skip one).
func testConcurrentVersions(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"})
	other := f.replica(t)
	replicas := []*vault.Service{f.svc, other}
	made := make([]string, 8)
	for i, err := range storetest.AtOnce(len(made), func(i int) error {
		k, err := replicas[i%2].CreateKey(ctx, f.admin, "team1", "k", vault.CreateKeyParams{Kty: "oct"})
		made[i] = k.Version
		return err
	}) {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	var listed []string
	skip := ""
	for {
		p, err := f.svc.ListKeyVersions(ctx, f.admin, "team1", "k", 3, skip)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, field(p, func(k vault.Key) string { return k.Version })...)
		if skip = p.Next; skip == "" {
			break
		}
	}
	slices.Sort(made)
	slices.Sort(listed)
	if !slices.Equal(listed, made) {
		t.Fatalf("versions paged %v, made %v", listed, made)
	}
}

// testConcurrentVaults: of callers creating one vault at once, one succeeds and the others
// get a conflict; of vaults created at once on one port, one gets it.
func testConcurrentVaults(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	replicas := []*vault.Service{f.svc, f.replica(t)}
	errs := storetest.AtOnce(6, func(i int) error {
		_, err := replicas[i%2].CreateVault(ctx, f.admin, vault.Vault{Name: "same"})
		return err
	})
	storetest.OneWins(t, "creations of one vault", errs, vault.ErrConflict)
	errs = storetest.AtOnce(6, func(i int) error {
		_, err := replicas[i%2].CreateVault(ctx, f.admin, vault.Vault{Name: fmt.Sprintf("ported%d", i), Port: 7100})
		return err
	})
	storetest.OneWins(t, "creations of vaults on one port", errs, vault.ErrConflict)
	all, _ := f.svc.AllVaults(ctx)
	on := 0
	for _, v := range all {
		if v.Port == 7100 {
			on++
		}
	}
	if on != 1 {
		t.Fatalf("%d vaults have port 7100, want 1", on)
	}
}

// testConcurrentUpdates: two updates of one version at once, each of another attribute,
// keep both changes.
func testConcurrentUpdates(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1"})
	other := f.replica(t)
	for i := range 5 {
		k, err := f.svc.CreateKey(ctx, f.admin, "team1", fmt.Sprint("k", i), vault.CreateKeyParams{Kty: "oct"})
		if err != nil {
			t.Fatal(err)
		}
		off := false
		tags := map[string]string{"round": fmt.Sprint(i)}
		updates := []vault.UpdateKeyParams{{Enabled: &off}, {Tags: &tags}}
		for _, err := range storetest.AtOnce(2, func(j int) error {
			_, err := []*vault.Service{f.svc, other}[j].UpdateKey(ctx, f.admin, "team1", k.Name, k.Version, updates[j])
			return err
		}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := f.svc.GetKey(ctx, f.admin, "team1", k.Name, k.Version)
		if err != nil || got.Attributes.Enabled || got.Tags["round"] != fmt.Sprint(i) {
			t.Fatalf("round %d: enabled %v, tags %v (%v): an update was lost", i, got.Attributes.Enabled, got.Tags, err)
		}
	}
}

// testDeleteVaultBesideCreateKey: a vault deleted while a key is created in it either
// keeps the key (the deletion refused) or goes without leaving the key behind.
func testDeleteVaultBesideCreateKey(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	other := f.replica(t)
	for i := range 8 {
		name := fmt.Sprint("vault", i)
		if _, err := f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: name}); err != nil {
			t.Fatal(err)
		}
		errs := storetest.AtOnce(2, func(j int) error {
			if j == 0 {
				return f.svc.DeleteVault(ctx, f.admin, name)
			}
			_, err := other.CreateKey(ctx, f.admin, name, "k", vault.CreateKeyParams{Kty: "oct"})
			return err
		})
		delErr, keyErr := errs[0], errs[1]
		var keys int
		if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_keys WHERE vault = ?`, name).Scan(&keys); err != nil {
			t.Fatal(err)
		}
		_, lookErr := f.svc.LookupVault(ctx, name)
		switch {
		case delErr == nil && (keys != 0 || keyErr == nil):
			t.Fatalf("round %d: the vault was deleted and the key creation answered %v, leaving %d key rows", i, keyErr, keys)
		case delErr == nil && !errors.Is(keyErr, vault.ErrNotFound):
			t.Fatalf("round %d: key creation in a deleted vault: %v, want not found", i, keyErr)
		case delErr != nil && (!errors.Is(delErr, vault.ErrConflict) || keyErr != nil || keys != 1 || lookErr != nil):
			t.Fatalf("round %d: deletion %v, creation %v, %d key rows, vault %v", i, delErr, keyErr, keys, lookErr)
		}
	}
}

// testLifecycleOnReplicas: lifecycle runs of several replicas at once serve a rotation
// trigger with one new version, send a near-expiry notice once, and purge a key once.
func testLifecycleOnReplicas(t *testing.T, open pgtest.Open) {
	f := setupOn(t, open, nil)
	ctx := inProcess()
	f.svc.CreateVault(ctx, f.admin, vault.Vault{Name: "team1", SoftDeleteRetentionDays: 7})
	replicas := []*vault.Service{f.svc, f.replica(t), f.replica(t), f.replica(t)}
	runAll := func() {
		for _, err := range storetest.AtOnce(len(replicas), func(i int) error { return replicas[i].RunLifecycle(ctx) }) {
			if err != nil {
				t.Error(err)
			}
		}
	}
	rot := vault.LifetimeAction{}
	rot.Trigger.TimeAfterCreate = "P30D"
	rot.Action.Type = "Rotate"
	var rp vault.RotationPolicy
	rp.LifetimeActions = []vault.LifetimeAction{rot}
	exp := f.clk.Now().Add(40 * 24 * time.Hour)
	for _, n := range []string{"r1", "r2", "r3"} {
		if _, err := f.svc.CreateKey(ctx, f.admin, "team1", n, vault.CreateKeyParams{Kty: "oct"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", n, rp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.CreateKey(ctx, f.admin, "team1", "expiring", vault.CreateKeyParams{Kty: "oct", Expires: &exp}); err != nil {
		t.Fatal(err)
	}
	notify := vault.LifetimeAction{}
	notify.Trigger.TimeBeforeExpiry = "P30D"
	notify.Action.Type = "Notify"
	var np vault.RotationPolicy
	np.LifetimeActions = []vault.LifetimeAction{notify}
	if _, err := f.svc.SetRotationPolicy(ctx, f.admin, "team1", "expiring", np); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"p1", "p2"} {
		f.svc.CreateKey(ctx, f.admin, "team1", n, vault.CreateKeyParams{Kty: "oct"})
		if _, err := f.svc.DeleteKey(ctx, f.admin, "team1", n); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(31 * 24 * time.Hour)
	runAll()
	for _, n := range []string{"r1", "r2", "r3"} {
		p, err := f.svc.ListKeyVersions(ctx, f.admin, "team1", n, 0, "")
		if err != nil || len(p.Items) != 2 {
			t.Errorf("key %s has %d versions after %d replicas ran the lifecycle at once, want 2 (%v)", n, len(p.Items), len(replicas), err)
		}
	}
	f.audit.Flush(ctx)
	count := func(op string) int {
		recs, err := f.audit.List(ctx, audit.Filter{Operation: op})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	if n := count("KeyNearExpiryNotify"); n != 1 {
		t.Errorf("%d near-expiry notices for one version, want 1", n)
	}
	if n := count("KeyPurgeScheduled"); n != 2 {
		t.Errorf("%d scheduled purges recorded for 2 keys, want 2", n)
	}
	for _, n := range []string{"p1", "p2"} {
		if _, err := f.svc.GetDeletedKey(ctx, f.admin, "team1", n); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("%s not purged: %v", n, err)
		}
	}
	if n := count("KeyRotateByPolicy"); n != 3 {
		t.Errorf("%d rotations by policy recorded for 3 keys, want 3", n)
	}
}
