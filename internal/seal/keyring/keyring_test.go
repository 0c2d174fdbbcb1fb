package keyring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/kektest"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

const (
	platformVault = "https://coffer-platform.vault.test"
	customerVault = "https://team.vault.test"
)

type env struct {
	db       *store.DB
	platform *kektest.Memory
	customer *kektest.Memory
	clock    *clocktest.Clock
	resolver keyring.Resolver
	// identities that may reach the customer vault
	allowed map[string]bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, storetest.SQLite(t))
}

// newEnvOn is newEnv on the metadata store db (the storage suite's engines).
func newEnvOn(t *testing.T, db *store.DB) *env {
	t.Helper()
	e := &env{db: db, platform: kektest.NewMemory(platformVault), customer: kektest.NewMemory(customerVault),
		clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), allowed: map[string]bool{"uami-1": true, "uami-2": true}}
	e.resolver = keyring.ResolverFunc(func(ctx context.Context, identity, keyID string) (kek.KEK, error) {
		switch {
		case strings.HasPrefix(keyID, platformVault+"/"):
			return e.platform, nil
		case strings.HasPrefix(keyID, customerVault+"/") && (identity == keyring.SystemIdentity || e.allowed[identity]):
			return e.customer, nil
		case strings.HasPrefix(keyID, customerVault+"/"):
			return nil, errors.New("identity " + identity + " is not assigned to the registry")
		}
		return nil, errors.New("no vault at " + keyID)
	})
	mustKey(t, e.platform, "registry", "RSA")
	mustKey(t, e.customer, "cmk", "RSA")
	mustKey(t, e.customer, "ec", "EC")
	return e
}

func mustKey(t *testing.T, m *kektest.Memory, name, kty string) string {
	t.Helper()
	kid, err := m.CreateKey(name, kty)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func (e *env) open(t *testing.T) *keyring.Keyring {
	t.Helper()
	k, err := keyring.Open(context.Background(), keyring.Options{
		DB: e.db, Resolver: e.resolver, AccessCheckInterval: time.Minute, RotationCheckInterval: time.Hour, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) initPlatform(t *testing.T) *keyring.Keyring {
	t.Helper()
	k := e.open(t)
	if err := k.Initialize(context.Background(), keyring.SourcePlatform, platformVault+"/keys/registry", keyring.SystemIdentity); err != nil {
		t.Fatal(err)
	}
	return k
}

func writeObj(t *testing.T, d blobstore.Driver, path string, size int64) {
	t.Helper()
	ctx := context.Background()
	w, err := d.Writer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("coffer-layer-bytes-"), 1<<16) // ~1.2 MiB
	for left := size; left > 0; {
		n := min(left, int64(len(chunk)))
		if _, err := w.Write(chunk[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func readObj(d blobstore.Driver, path string, off int64, n int) ([]byte, error) {
	r, err := d.Reader(context.Background(), path, off)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, n)
	_, err = io.ReadFull(r, buf)
	return buf, err
}

func newDriver(t *testing.T, ks seal.KeySource) blobstore.Driver {
	t.Helper()
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return seal.NewDriver(fs, ks)
}

func testInitializeAndRestart(t *testing.T, open pgtest.Open) {
	e := newEnvOn(t, open(t))
	ctx := context.Background()
	k := e.initPlatform(t)
	gen, root, err := k.CurrentKey(ctx)
	if err != nil || gen != 1 || len(root) != seal.KeySize {
		t.Fatalf("CurrentKey = %d, %d bytes, %v", gen, len(root), err)
	}
	if err := k.Initialize(ctx, keyring.SourcePlatform, platformVault+"/keys/registry", keyring.SystemIdentity); err == nil {
		t.Fatal("a second Initialize succeeded")
	}
	// A restarted process unwraps the same root key from the store.
	k2 := e.open(t)
	root2, err := k2.Key(ctx, 1)
	if err != nil || !bytes.Equal(root, root2) {
		t.Fatalf("after restart: %v (same key: %v)", err, bytes.Equal(root, root2))
	}
	st, _ := k2.Settings()
	if st.Source != keyring.SourcePlatform || !st.RotationEnabled || !strings.HasPrefix(st.VersionedKeyID, platformVault+"/keys/registry/") {
		t.Fatalf("settings = %+v", st)
	}
}

func TestRejectsUnusableKeys(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, keyID, identity string
		setup                 func(e *env)
		want                  error
		says                  string
	}{
		{"EC key", customerVault + "/keys/ec", "uami-1", nil, kek.ErrUnsupportedKeyType, "type EC"},
		{"missing key", customerVault + "/keys/none", "uami-1", nil, kek.ErrNotFound, "get"},
		{"no get", customerVault + "/keys/cmk", "uami-1", func(e *env) { e.customer.Deny("get") }, kek.ErrForbidden, "get permission"},
		{"no wrapKey", customerVault + "/keys/cmk", "uami-1", func(e *env) { e.customer.Deny("wrapKey") }, kek.ErrForbidden, "wrapKey permission"},
		{"no unwrapKey", customerVault + "/keys/cmk", "uami-1", func(e *env) { e.customer.Deny("unwrapKey") }, kek.ErrForbidden, "unwrapKey permission"},
		{"disabled", customerVault + "/keys/cmk", "uami-1", func(e *env) { e.customer.SetEnabled("cmk", false) }, kek.ErrDisabled, "disabled"},
		{"bad key id", "https://team.vault.test/secrets/x", "uami-1", nil, kek.ErrInvalidKeyID, "keys/NAME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			k := e.initPlatform(t)
			before, _ := k.Settings()
			if c.setup != nil {
				c.setup(e)
			}
			_, err := k.Enable(ctx, c.keyID, c.identity)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Enable = %v, want %v mentioning %q", err, c.want, c.says)
			}
			if after, _ := k.Settings(); after != before {
				t.Fatalf("a refused Enable changed the settings: %+v", after)
			}
			// A fresh registry refuses the same key at creation.
			e2 := newEnv(t)
			if c.setup != nil {
				c.setup(e2)
			}
			if err := e2.open(t).Initialize(ctx, keyring.SourceCustomer, c.keyID, c.identity); !errors.Is(err, c.want) {
				t.Fatalf("Initialize = %v, want %v", err, c.want)
			}
		})
	}
}

// testRotationCostsTheSameWhateverTheData: rotating with some data stored and with ten
// times more makes the same vault calls, and everything stored still reads afterwards. The
// count does not depend on the bytes written, so the default run stores 2 MiB and 20 MiB;
// COFFER_TEST_LARGE_DATA=1 stores 10 MiB and 1 GiB, as the figures in docs/encryption.md.
func testRotationCostsTheSameWhateverTheData(t *testing.T, open pgtest.Open) {
	e := newEnvOn(t, open(t))
	ctx := context.Background()
	k := e.initPlatform(t)
	d := newDriver(t, k)
	small, large := int64(2<<20), int64(20<<20)
	if os.Getenv("COFFER_TEST_LARGE_DATA") != "" {
		small, large = 10<<20, 1<<30
	}
	rotate := func(keyID string) int {
		before := e.platform.Calls("") + e.customer.Calls("")
		if _, err := k.Rotate(ctx, keyID, "uami-1"); err != nil {
			t.Fatal(err)
		}
		return e.platform.Calls("") + e.customer.Calls("") - before
	}
	writeObj(t, d, "blobs/small", small)
	v2 := mustKey(t, e.customer, "cmk", "RSA")
	few := rotate(v2)

	writeObj(t, d, "blobs/large", large-small)
	v3 := mustKey(t, e.customer, "cmk", "RSA")
	many := rotate(v3)
	if few != many || few > 3 {
		t.Fatalf("vault calls per rotation: %d with %d MiB stored, %d with %d MiB stored; want equal and at most 3", few, small>>20, many, large>>20)
	}
	t.Logf("vault calls per rotation: %d (%d MiB stored) and %d (%d MiB stored)", few, small>>20, many, large>>20)
	want := bytes.Repeat([]byte("coffer-layer-bytes-"), 1<<16)
	for _, p := range []string{"blobs/small", "blobs/large"} {
		got, err := readObj(d, p, 0, 1<<20)
		if err != nil || !bytes.Equal(got, want[:1<<20]) {
			t.Fatalf("%s after rotation: %v", p, err)
		}
	}
	// After a restart, the root key unwraps under the new key version only.
	st, _ := k.Settings()
	if st.VersionedKeyID != v3 || st.RotationEnabled {
		t.Fatalf("settings after pinned rotation = %+v", st)
	}
	k2 := e.open(t)
	if _, err := readObj(newDriverOn(t, d, k2), "blobs/small", small/2, 1000); err != nil {
		t.Fatalf("read after restart: %v", err)
	}
}

// newDriverOn reuses the inner store of a driver made by newDriver with another key source.
func newDriverOn(t *testing.T, d blobstore.Driver, ks seal.KeySource) blobstore.Driver {
	t.Helper()
	return seal.NewDriver(innerOf(d), ks)
}

// TestRevocationAndRecovery: each way of losing the key stops reads and writes within the
// access check interval with an error naming the cause; restoring access resumes them.
func TestRevocationAndRecovery(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name            string
		revoke, restore func(m *kektest.Memory)
		kind            error
	}{
		{"access removed", func(m *kektest.Memory) { m.Deny("get", "wrapKey", "unwrapKey") }, func(m *kektest.Memory) { m.Allow("get", "wrapKey", "unwrapKey") }, kek.ErrForbidden},
		{"key disabled", func(m *kektest.Memory) { m.SetEnabled("cmk", false) }, func(m *kektest.Memory) { m.SetEnabled("cmk", true) }, kek.ErrDisabled},
		{"key deleted", func(m *kektest.Memory) { m.SetDeleted("cmk", true) }, func(m *kektest.Memory) { m.SetDeleted("cmk", false) }, kek.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			k := e.initPlatform(t)
			if _, err := k.Enable(ctx, customerVault+"/keys/cmk", "uami-1"); err != nil {
				t.Fatal(err)
			}
			d := newDriver(t, k)
			writeObj(t, d, "blobs/a", 3<<20)

			c.revoke(e.customer)
			// Within the interval the cached key still serves...
			e.clock.Advance(30 * time.Second)
			if _, err := readObj(d, "blobs/a", 0, 10); err != nil {
				t.Fatalf("read before the check is due: %v", err)
			}
			// ...and once the interval has passed, reads and writes fail.
			e.clock.Advance(31 * time.Second)
			_, rerr := readObj(d, "blobs/a", 1<<20, 10)
			_, werr := d.Writer(ctx, "blobs/b")
			for _, err := range []error{rerr, werr} {
				var ae *keyring.AccessError
				if !errors.As(err, &ae) || !errors.Is(err, seal.ErrKeyUnavailable) || !errors.Is(err, c.kind) {
					t.Fatalf("after revocation: %v; want an AccessError wrapping %v", err, c.kind)
				}
				if !strings.Contains(err.Error(), customerVault+"/keys/cmk/") || !strings.Contains(err.Error(), "uami-1") {
					t.Fatalf("the error does not name the key and identity: %v", err)
				}
			}
			st, _ := k.Status(ctx, false)
			if st.KeyAccessible || st.KeyAccessError == "" {
				t.Fatalf("status after revocation = %+v", st)
			}
			// Rotation needs the old key.
			if _, err := k.Rotate(ctx, platformVault+"/keys/registry", keyring.SystemIdentity); !errors.Is(err, seal.ErrKeyUnavailable) {
				t.Fatalf("rotate while revoked = %v", err)
			}

			c.restore(e.customer)
			e.clock.Advance(61 * time.Second)
			got, err := readObj(d, "blobs/a", 2<<20, 19)
			if err != nil || string(got) != "coffer-layer-bytes-"[(2<<20)%19:]+"coffer-layer-bytes-"[:(2<<20)%19] {
				t.Fatalf("after restore: %q, %v", got, err)
			}
			writeObj(t, d, "blobs/b", 100)
			if st, _ := k.Status(ctx, false); !st.KeyAccessible {
				t.Fatalf("status after restore = %+v", st)
			}
		})
	}
}

// TestBackgroundCheck: the background loop alone (no reads) notices revocation, and
// restored access, within one access check interval. It runs in a synctest bubble: the
// interval passes in virtual time, with no polling.
func TestBackgroundCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 200 * time.Millisecond
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		k, err := keyring.Open(ctx, keyring.Options{DB: e.db, Resolver: e.resolver, AccessCheckInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Initialize(ctx, keyring.SourcePlatform, platformVault+"/keys/registry", keyring.SystemIdentity); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { k.Run(ctx); close(done) }()
		e.platform.Deny("unwrapKey")
		synctest.Wait()
		if st, _ := k.Status(ctx, false); !st.KeyAccessible {
			t.Fatal("the key is inaccessible before any check ran")
		}
		time.Sleep(interval + interval/4)
		synctest.Wait()
		if st, _ := k.Status(ctx, false); st.KeyAccessible {
			t.Fatal("the background check did not notice the revocation")
		}
		e.platform.Allow("unwrapKey")
		time.Sleep(interval + interval/4)
		synctest.Wait()
		if st, _ := k.Status(ctx, false); !st.KeyAccessible {
			t.Fatal("the background check did not notice the restored access")
		}
		cancel()
		<-done
	})
}

func testAutomaticRotation(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	k := e.initPlatform(t)
	d := newDriver(t, k)
	writeObj(t, d, "blobs/a", 1000)

	// Versionless: a new version is picked up.
	if _, err := k.Enable(ctx, customerVault+"/keys/cmk", "uami-1"); err != nil {
		t.Fatal(err)
	}
	if rotated, err := k.CheckRotation(ctx); err != nil || rotated {
		t.Fatalf("CheckRotation with no new version = %v, %v", rotated, err)
	}
	v2 := mustKey(t, e.customer, "cmk", "RSA")
	if rotated, err := k.CheckRotation(ctx); err != nil || !rotated {
		t.Fatalf("CheckRotation after a new version = %v, %v", rotated, err)
	}
	st, _ := k.Settings()
	if st.VersionedKeyID != v2 || st.KeyID != customerVault+"/keys/cmk" || !st.RotationEnabled {
		t.Fatalf("after automatic rotation: %+v", st)
	}
	// The old version may go away: the root key is wrapped under the new one now.
	e.clock.Advance(2 * time.Minute)
	if _, err := readObj(d, "blobs/a", 0, 1000); err != nil {
		t.Fatal(err)
	}

	// Versioned: pinned until a manual rotation.
	if _, err := k.Rotate(ctx, v2, ""); err != nil {
		t.Fatal(err)
	}
	mustKey(t, e.customer, "cmk", "RSA")
	if rotated, err := k.CheckRotation(ctx); err != nil || rotated {
		t.Fatalf("CheckRotation of a pinned version = %v, %v", rotated, err)
	}
	if st, _ := k.Settings(); st.VersionedKeyID != v2 || st.RotationEnabled || st.Identity != "uami-1" {
		t.Fatalf("pinned settings = %+v", st)
	}
}

func testEnableOnceAndStatus(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	k := e.initPlatform(t)
	st, err := k.Status(ctx, true)
	if err != nil || st.Status != "disabled" || st.KeySource != keyring.SourcePlatform || !st.KeyAccessible {
		t.Fatalf("platform status = %+v, %v", st, err)
	}
	if _, err := k.Enable(ctx, customerVault+"/keys/cmk", "uami-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Enable(ctx, customerVault+"/keys/cmk", "uami-2"); !errors.Is(err, keyring.ErrAlreadyEnabled) {
		t.Fatalf("second Enable = %v", err)
	}
	if err := k.Disable(ctx); !errors.Is(err, keyring.ErrCannotDisable) || !strings.Contains(err.Error(), "cannot be disabled") {
		t.Fatalf("Disable = %v", err)
	}
	st, err = k.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(st)
	var m map[string]any
	json.Unmarshal(raw, &m)
	kv, _ := m["keyVaultProperties"].(map[string]any)
	if m["status"] != "enabled" || m["encryptedAtRest"] != true || m["keyAccessible"] != true || kv == nil {
		t.Fatalf("status JSON = %s", raw)
	}
	for _, f := range []string{"identity", "keyIdentifier", "versionedKeyIdentifier", "keyRotationEnabled", "lastKeyRotationTimestamp"} {
		if _, ok := kv[f]; !ok {
			t.Errorf("keyVaultProperties lacks %s: %s", f, raw)
		}
	}
	if kv["identity"] != "uami-1" || kv["keyIdentifier"] != customerVault+"/keys/cmk" || kv["keyRotationEnabled"] != true {
		t.Fatalf("status JSON = %s", raw)
	}
	e.customer.Deny("unwrapKey")
	st, _ = k.Status(ctx, true)
	if st.KeyAccessible || !strings.Contains(st.KeyAccessError, "unwrapKey") {
		t.Fatalf("status with access denied = %+v", st)
	}
}

func TestGuardIdentityRemoval(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	k := e.initPlatform(t)
	if _, err := k.Enable(ctx, customerVault+"/keys/cmk", "uami-1"); err != nil {
		t.Fatal(err)
	}
	err := k.GuardIdentityRemoval("object-id-x", "UAMI-1")
	if !errors.Is(err, keyring.ErrIdentityInUse) || !strings.Contains(err.Error(), "rotate-key") {
		t.Fatalf("guard = %v", err)
	}
	if err := k.GuardIdentityRemoval("uami-2"); err != nil {
		t.Fatal(err)
	}
	// After rotating to another identity, the first may go.
	if _, err := k.Rotate(ctx, customerVault+"/keys/cmk", "uami-2"); err != nil {
		t.Fatal(err)
	}
	if err := k.GuardIdentityRemoval("uami-1"); err != nil {
		t.Fatal(err)
	}
}

// testGenerations: a new root key generation seals new objects; objects of the older
// generation still read, also after a restart and after a KEK rotation (which re-wraps
// every generation).
func testGenerations(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	k := e.initPlatform(t)
	d := newDriver(t, k)
	writeObj(t, d, "blobs/old", 200_000)
	gen, err := k.NewGeneration(ctx)
	if err != nil || gen != 2 {
		t.Fatalf("NewGeneration = %d, %v", gen, err)
	}
	writeObj(t, d, "blobs/new", 200_000)
	if g, _, _ := k.CurrentKey(ctx); g != 2 {
		t.Fatalf("current generation %d", g)
	}
	r1, _ := k.Key(ctx, 1)
	r2, _ := k.Key(ctx, 2)
	if bytes.Equal(r1, r2) {
		t.Fatal("the new generation has the old root key")
	}
	before := e.platform.Calls("")
	if _, err := k.Rotate(ctx, customerVault+"/keys/cmk", "uami-1"); err != nil {
		t.Fatal(err)
	}
	if n := e.customer.Calls("") + e.platform.Calls("") - before; n != 5 {
		t.Fatalf("rotation with two generations made %d vault calls, want 5 (get, and wrap+unwrap per generation)", n)
	}
	k2 := e.open(t)
	d2 := newDriverOn(t, d, k2)
	for _, p := range []string{"blobs/old", "blobs/new"} {
		if _, err := readObj(d2, p, 100_000, 1000); err != nil {
			t.Fatalf("%s after restart: %v", p, err)
		}
	}
	if g, _, _ := k2.CurrentKey(ctx); g != 2 {
		t.Fatalf("current generation after restart %d", g)
	}
}

// testGenerationFromAnotherReplica: two keyrings on one metadata store are two replicas.
// A generation one of them creates reads at once on the other (which reloads on meeting
// it), with no clock advance, where it used to read as unavailable until the next access
// check. A generation nobody created stays unavailable, and asking for it again at once
// does not call the vault again.
func testGenerationFromAnotherReplica(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	a := e.initPlatform(t)
	b := e.open(t)
	if err := b.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	da := newDriver(t, a)
	db := newDriverOn(t, da, b)
	gen, err := a.NewGeneration(ctx)
	if err != nil || gen != 2 {
		t.Fatalf("NewGeneration = %d, %v", gen, err)
	}
	writeObj(t, da, "blobs/by-a", 200_000)
	if _, err := readObj(db, "blobs/by-a", 1000, 1000); err != nil {
		t.Fatalf("the other replica reads an object of the generation replica a created: %v", err)
	}
	ra, _ := a.Key(ctx, 2)
	rb, err := b.Key(ctx, 2)
	if err != nil || !bytes.Equal(ra, rb) {
		t.Fatalf("b.Key(2) = %v, want replica a's root key", err)
	}
	if g, _, _ := b.CurrentKey(ctx); g != 2 {
		t.Fatalf("after the reload the other replica seals under generation %d, want 2", g)
	}
	e.clock.Advance(2 * time.Second) // past the least interval between reloads for misses
	before := e.platform.Calls("")
	if _, err := b.Key(ctx, 9); !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Fatalf("Key(9) = %v, want ErrKeyUnavailable", err)
	}
	mid := e.platform.Calls("")
	if mid == before {
		t.Fatal("an unknown generation did not reload the keyring")
	}
	if _, err := b.Key(ctx, 9); !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Fatalf("Key(9) again = %v, want ErrKeyUnavailable", err)
	}
	if e.platform.Calls("") != mid {
		t.Fatal("a second miss right after a reload called the vault again")
	}
	// Once the interval has passed, a miss may reload again.
	e.clock.Advance(2 * time.Second)
	b.Key(ctx, 9)
	if e.platform.Calls("") == mid {
		t.Fatal("a miss after the interval did not reload")
	}
}

// TestRotationCheckOnAnotherReplica: two keyrings on one metadata store are two replicas.
// Replica b has not re-read the settings since a changed them (its copy is stale until its
// next access check); its rotation check and its enable must still act on the stored
// settings: a's customer-managed key is not replaced by the platform key that b last saw
// (although that key has a newer version now), a's pinned version is not unpinned, and a
// second enable on b is refused.
func TestRotationCheckOnAnotherReplica(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.initPlatform(t)
	b := e.open(t)
	if err := b.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	cmk := customerVault + "/keys/cmk"
	if _, err := a.Enable(ctx, cmk, "uami-1"); err != nil {
		t.Fatal(err)
	}
	mustKey(t, e.platform, "registry", "RSA") // the platform key's next version
	if _, err := b.CheckRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Enable(ctx, customerVault+"/keys/cmk", "uami-2"); !errors.Is(err, keyring.ErrAlreadyEnabled) {
		t.Fatalf("enable on the other replica after a's enable = %v, want ErrAlreadyEnabled", err)
	}
	if err := a.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Settings(); st.KeyID != cmk || st.Source != keyring.SourceCustomer || st.Identity != "uami-1" {
		t.Fatalf("after b's rotation check and enable, the stored settings are %+v, want a's customer-managed key", st)
	}

	v2 := mustKey(t, e.customer, "cmk", "RSA")
	if _, err := a.Rotate(ctx, v2, ""); err != nil { // pinned
		t.Fatal(err)
	}
	mustKey(t, e.customer, "cmk", "RSA")
	if rotated, err := b.CheckRotation(ctx); err != nil || rotated {
		t.Fatalf("b's rotation check of the version a pinned = %v, %v", rotated, err)
	}
	if err := a.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Settings(); st.VersionedKeyID != v2 || st.RotationEnabled {
		t.Fatalf("after b's rotation check the stored settings are %+v, want %s pinned", st, v2)
	}
}
