package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// engines gives, per metadata engine, a fresh database and a way to open another pool on
// it: on PostgreSQL another replica; on SQLite (one process's database) another handle.
func engines(t *testing.T) map[string]func(t *testing.T) func() *store.DB {
	srv := pgtest.Start(t)
	return map[string]func(t *testing.T) func() *store.DB{
		"sqlite": func(t *testing.T) func() *store.DB {
			path := filepath.Join(t.TempDir(), "m.db")
			return func() *store.DB { return storetest.SQLiteAt(t, path) }
		},
		"postgresql": func(t *testing.T) func() *store.DB {
			name := srv.NewDatabase(t)
			return func() *store.DB {
				db, err := store.OpenPostgres(t.Context(), srv.URL(name), store.PostgresOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		},
	}
}

// TestStorage is the token part's storage suite, on SQLite and on PostgreSQL (one server
// for all): key sets and secrets on one database are replicas of one server, files of an
// earlier version are imported, retired keys are kept until their tokens expire.
func TestStorage(t *testing.T) {
	for name, fresh := range engines(t) {
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				run  func(t *testing.T, replica func() *store.DB)
			}{
				{"KeySetSharedByReplicas", testKeySetSharedByReplicas},
				{"SecretSharedByReplicas", testSecretSharedByReplicas},
				{"KeySetImportsFiles", testKeySetImportsFiles},
				{"RotationKeepsOldTokensUntilExpiry", testRotationKeepsOldTokensUntilExpiry},
			} {
				t.Run(c.name, func(t *testing.T) { c.run(t, fresh(t)) })
			}
		})
	}
}

// testKeySetSharedByReplicas: key sets on one database are replicas of one server.
func testKeySetSharedByReplicas(t *testing.T, replica func() *store.DB) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	ctx := t.Context()

	// Started at the same moment on an empty database: one signing key for all.
	const n = 4
	sets := make([]*KeySet, n)
	var wg sync.WaitGroup
	for i := range sets {
		wg.Add(1)
		go func() { defer wg.Done(); sets[i] = openTestKeySet(t, replica(), clk, time.Hour) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a := NewService(sets[0], Options{TenantID: "t", Now: clk.Now})
	b := NewService(sets[1], Options{TenantID: "t", Now: clk.Now})
	for _, ks := range sets {
		if got := len(ks.Public(ctx).Keys); got != 1 {
			t.Fatalf("replicas starting together made %d signing keys, want 1", got)
		}
	}

	// A token one replica issued verifies on the other.
	tok, err := a.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, tok.Raw, RegistryService); err != nil {
		t.Fatalf("a token of replica A refused by replica B: %v", err)
	}

	// A rotation on A: its new key's tokens verify on B at once (B meets an
	// unknown kid and reloads), and B signs with the new key within reloadEvery.
	if err := sets[0].Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := a.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, fresh.Raw) == kidOf(t, tok.Raw) {
		t.Fatal("Rotate kept the signing key")
	}
	if _, err := b.Verify(ctx, fresh.Raw, RegistryService); err != nil {
		t.Fatalf("replica B refused a token of the key replica A just made: %v", err)
	}
	if _, err := a.Verify(ctx, tok.Raw, RegistryService); err != nil {
		t.Fatalf("the retired key's token refused: %v", err)
	}
	clk.Advance(reloadEvery)
	fromB, err := b.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, fromB.Raw) != kidOf(t, fresh.Raw) {
		t.Fatal("replica B still signs with the key A retired")
	}

	// A rotation falling due on every replica at once makes one key.
	clk.Advance(time.Hour)
	kids := make([]string, n)
	for i, ks := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := NewService(ks, Options{TenantID: "t", Now: clk.Now})
			iss, err := s.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = kidOf(t, iss.Raw)
		}()
	}
	wg.Wait()
	for _, k := range kids {
		if k != kids[0] || k == kidOf(t, fresh.Raw) {
			t.Fatalf("replicas rotating together signed with %v", kids)
		}
	}

	// The private keys are sealed: no row holds the key's DER, and another root
	// key opens nothing.
	var sealed []byte
	if err := sets[0].db.QueryRowContext(ctx, `SELECT sealed FROM token_signing_keys WHERE kid = ?`, kids[0]).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	cur, _ := sets[0].signer(ctx)
	der, _ := x509.MarshalPKCS8PrivateKey(cur.priv)
	if bytes.Contains(sealed, der[len(der)-40:]) {
		t.Fatal("a signing key's row holds its private key in the clear")
	}
	_, err = OpenKeySet(ctx, KeySetOptions{DB: replica(), Sealer: testSealer(t, bytes.Repeat([]byte{8}, 32)), Now: clk.Now})
	if err == nil || !strings.Contains(err.Error(), "another vault root key") {
		t.Fatalf("a replica given another root key: %v, want an error naming the root key", err)
	}
}

// testSecretSharedByReplicas: the identity-header secret is made once and read by all.
func testSecretSharedByReplicas(t *testing.T, replica func() *store.DB) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	ctx := t.Context()
	sets := []*KeySet{openTestKeySet(t, replica(), clk, 0), openTestKeySet(t, replica(), clk, 0)}
	vals := make([]string, 8)
	var wg sync.WaitGroup
	for i := range vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := sets[i%2].Secret(ctx, "identity-header", "")
			if err != nil {
				t.Error(err)
			}
			vals[i] = v
		}()
	}
	wg.Wait()
	for _, v := range vals {
		if v != vals[0] || len(v) < 40 {
			t.Fatalf("replicas made different secrets: %q", vals)
		}
	}
	var sealed []byte
	if err := sets[0].db.QueryRowContext(ctx, `SELECT sealed FROM token_secrets WHERE name = 'identity-header'`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(vals[0])) {
		t.Fatal("the secret is stored in the clear")
	}

	// A secret of an earlier version's file is taken over once.
	legacy := filepath.Join(t.TempDir(), "other")
	os.WriteFile(legacy, []byte("from-the-file\n"), 0o600)
	if v, err := sets[1].Secret(ctx, "other", legacy); err != nil || v != "from-the-file" {
		t.Fatalf("legacy secret = %q, %v", v, err)
	}
	if v, err := sets[0].Secret(ctx, "other", ""); err != nil || v != "from-the-file" {
		t.Fatalf("the other replica reads %q, %v", v, err)
	}
}

// testKeySetImportsFiles: a running installation's key files move into the database.
func testKeySetImportsFiles(t *testing.T, replica func() *store.DB) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	dir := filepath.Join(t.TempDir(), "token-signing")
	os.MkdirAll(dir, 0o700)
	writeLegacy := func(created, retired int64) string {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		k := signingKey{KID: thumbprint(&priv.PublicKey), Alg: "ES256", Created: created, Retired: retired,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
		raw, _ := json.Marshal(k)
		if err := os.WriteFile(filepath.Join(dir, k.KID+".json"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return k.KID
	}
	now := clk.Now().Unix()
	current := writeLegacy(now-60, 0)
	retired := writeLegacy(now-120, now-60)

	db := replica()
	ks, err := OpenKeySet(t.Context(), KeySetOptions{DB: db, Sealer: testSealer(t, testRoot), ImportDir: dir,
		KeepAfterRetire: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s := NewService(ks, Options{TenantID: "t", Now: clk.Now})
	iss, err := s.Issue(t.Context(), Grant{Principal: alice, Audience: RegistryService})
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, iss.Raw) != current {
		t.Fatal("after the import the file's signing key does not sign")
	}
	var kids []string
	for _, k := range ks.Public(t.Context()).Keys {
		kids = append(kids, k.KID)
	}
	if len(kids) != 2 || !strings.Contains(strings.Join(kids, " "), retired) {
		t.Fatalf("published %v, want the imported current and retired keys", kids)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the imported key files are still on disk: %v", err)
	}
	// A second start finds nothing to import and the same keys.
	again, err := OpenKeySet(context.Background(), KeySetOptions{DB: db, Sealer: testSealer(t, testRoot), ImportDir: dir,
		KeepAfterRetire: time.Hour, Now: clk.Now})
	if err != nil || len(again.Public(t.Context()).Keys) != 2 {
		t.Fatalf("reopen: %v", err)
	}
}
