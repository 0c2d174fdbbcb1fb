package trust_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/notary/cryptoservice"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/trustmanager"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
	"github.com/theupdateframework/notary/tuf/utils"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/trust"
	"github.com/cofferhq/coffer/internal/vault"
)

// clock is a settable time for the trust service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a trust service over the real store, vault, access and identity services
// (no HTTP), with a clock the test moves.
type fixture struct {
	svc   *trust.Service
	vault *vault.Service
	sys   identity.Principal
	clock *clock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureOn(t, storetest.SQLite(t))
}

// newFixtureOn is newFixture on the metadata store db (the storage suite's engines).
func newFixtureOn(t testing.TB, db *store.DB) *fixture {
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
	root := make([]byte, 32)
	rand.Read(root)
	al, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: make([]byte, audit.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := vault.New(ctx, vault.Options{DB: db, RootKey: root, Authorizer: acc, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	svc, err := trust.Open(ctx, trust.Options{DB: db, Blobs: blobs, Vault: vs, Identity: ids.SystemIdentity(), Now: c.Now,
		Grant: func(ctx context.Context, v, id string, perms []string) error {
			_, err := acc.SetPolicy(ctx, v, id, perms)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetStatus(ctx, trust.StatusEnabled); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, vault: vs, sys: ids.SystemIdentity(), clock: c}
}

// publish creates gun as docker does (root and targets from the publisher, snapshot and
// timestamp managed by the server) and returns the root the client trusts.
func (f *fixture) publish(t testing.TB, gun string) *data.SignedRoot {
	t.Helper()
	ctx := context.Background()
	cs := cryptoservice.NewCryptoService(trustmanager.NewKeyMemoryStore(passphrase.ConstantRetriever("x")))
	rk, err := cs.Create(data.CanonicalRootRole, data.GUN(gun), data.ECDSAKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, _, _ := cs.GetPrivateKey(rk.ID())
	cert, err := cryptoservice.GenerateCertificate(priv, data.GUN(gun), time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := cs.Create(data.CanonicalTargetsRole, data.GUN(gun), data.ECDSAKey)
	serverKey := func(role data.RoleName) data.PublicKey {
		b, err := f.svc.Key(ctx, gun, role)
		if err != nil {
			t.Fatal(err)
		}
		k, err := data.UnmarshalPublicKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	repo := tuf.NewRepo(cs)
	if err := repo.InitRoot(data.NewBaseRole(data.CanonicalRootRole, 1, utils.CertToKey(cert)),
		data.NewBaseRole(data.CanonicalTimestampRole, 1, serverKey(data.CanonicalTimestampRole)),
		data.NewBaseRole(data.CanonicalSnapshotRole, 1, serverKey(data.CanonicalSnapshotRole)),
		data.NewBaseRole(data.CanonicalTargetsRole, 1, tk), false); err != nil {
		t.Fatal(err)
	}
	repo.InitTargets(data.CanonicalTargetsRole)
	meta, _ := data.NewFileMeta(strings.NewReader(`"image"`), "sha256")
	if _, err := repo.AddTargets(data.CanonicalTargetsRole, data.Files{"v1": meta}); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(10 * 365 * 24 * time.Hour)
	root, err := repo.SignRoot(exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := repo.SignTargets(data.CanonicalTargetsRole, exp)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(root)
	tb, _ := json.Marshal(targets)
	if err := f.svc.Update(ctx, gun, []trust.Part{{Role: data.CanonicalRootRole, Data: rb}, {Role: data.CanonicalTargetsRole, Data: tb}}); err != nil {
		t.Fatal(err)
	}
	var sr data.SignedRoot
	if err := json.Unmarshal(rb, &sr); err != nil {
		t.Fatal(err)
	}
	return &sr
}

// verified reads role's current metadata and checks its signature against the root.
func (f *fixture) verified(t testing.TB, gun string, root *data.SignedRoot, role data.RoleName) (*data.Signed, data.SignedCommon) {
	t.Helper()
	m, err := f.svc.Get(context.Background(), gun, role)
	if err != nil {
		t.Fatalf("get %s: %v", role, err)
	}
	var s data.Signed
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatal(err)
	}
	base, err := root.BuildBaseRole(role)
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.VerifySignatures(&s, base); err != nil {
		t.Fatalf("%s served with a signature its root does not accept: %v", role, err)
	}
	var sc data.SignedMeta
	json.Unmarshal(m.Data, &sc)
	return &s, sc.Signed
}

// testFrozenTimestampResignedOnRead: once the timestamp has expired, a read never serves
// the frozen one: the server signs a newer version (in the vault) whose signature the
// root accepts; once the server-managed snapshot has expired too, it is re-signed and the
// new timestamp names it.
func testFrozenTimestampResignedOnRead(t *testing.T, open pgtest.Open) {
	f := newFixtureOn(t, open(t))
	const gun = "registry.test/team/app"
	root := f.publish(t, gun)
	_, ts0 := f.verified(t, gun, root, data.CanonicalTimestampRole)
	_, sn0 := f.verified(t, gun, root, data.CanonicalSnapshotRole)
	// Reads while it is fresh serve the same timestamp.
	if _, again := f.verified(t, gun, root, data.CanonicalTimestampRole); again.Version != ts0.Version {
		t.Fatalf("a fresh timestamp was re-signed on read: version %d → %d", ts0.Version, again.Version)
	}

	f.clock.Add(ts0.Expires.Sub(f.clock.Now()) + time.Minute) // the timestamp is now expired
	_, ts1 := f.verified(t, gun, root, data.CanonicalTimestampRole)
	if ts1.Version <= ts0.Version || !ts1.Expires.After(f.clock.Now()) {
		t.Fatalf("expired timestamp served: version %d (was %d), expires %s, now %s", ts1.Version, ts0.Version, ts1.Expires, f.clock.Now())
	}
	if _, sn := f.verified(t, gun, root, data.CanonicalSnapshotRole); sn.Version != sn0.Version {
		t.Fatalf("an unexpired snapshot was re-signed: %d → %d", sn0.Version, sn.Version)
	}

	f.clock.Add(sn0.Expires.Sub(f.clock.Now()) + time.Minute) // the snapshot too
	_, ts2 := f.verified(t, gun, root, data.CanonicalTimestampRole)
	_, sn2 := f.verified(t, gun, root, data.CanonicalSnapshotRole)
	if sn2.Version <= sn0.Version || !sn2.Expires.After(f.clock.Now()) || ts2.Version <= ts1.Version {
		t.Fatalf("after the snapshot expired: snapshot %d expires %s, timestamp %d (was %d)", sn2.Version, sn2.Expires, ts2.Version, ts1.Version)
	}
	var tsFull data.SignedTimestamp
	m, _ := f.svc.Get(context.Background(), gun, data.CanonicalTimestampRole)
	json.Unmarshal(m.Data, &tsFull)
	snMeta, _ := f.svc.Get(context.Background(), gun, data.CanonicalSnapshotRole)
	snBytes := snMeta.Data
	if err := data.CheckHashes(snBytes, data.CanonicalSnapshotRole.String(), tsFull.Signed.Meta[data.CanonicalSnapshotRole.String()].Hashes); err != nil {
		t.Fatalf("the re-signed timestamp does not name the re-signed snapshot: %v", err)
	}
}
