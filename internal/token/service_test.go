package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// testRoot is the vault root key of the tests' key sets.
var testRoot = bytes.Repeat([]byte{7}, 32)

func testSealer(t testing.TB, root []byte) *Sealer {
	t.Helper()
	s, err := NewSealer(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openTestKeySet(t testing.TB, db *store.DB, clk *clocktest.Clock, rotate time.Duration) *KeySet {
	t.Helper()
	ks, err := OpenKeySet(t.Context(), KeySetOptions{DB: db, Sealer: testSealer(t, testRoot),
		RotateAfter: rotate, KeepAfterRetire: 10*time.Minute + DefaultLeeway + time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func newTestService(t *testing.T, db *store.DB, clk *clocktest.Clock, rotate time.Duration) *Service {
	t.Helper()
	return NewService(openTestKeySet(t, db, clk, rotate), Options{TenantID: "tenant-1", TTL: 10 * time.Minute, Now: clk.Now})
}

var alice = identity.Principal{ID: "0b7a9c1e-0000-4000-8000-000000000001", Kind: identity.KindUser, Name: "alice"}

func TestIssueVerifyRoundTrip(t *testing.T) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	s := newTestService(t, storetest.SQLite(t), clk, 0)
	grant := []Access{{Type: "repository", Name: "app", Actions: []string{"pull"}}}
	iss, err := s.Issue(context.Background(), Grant{Principal: alice, Audience: RegistryService, Access: grant})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(context.Background(), iss.Raw, RegistryService)
	if err != nil {
		t.Fatal(err)
	}
	if c.ObjectID != alice.ID || c.Name != "alice" || c.TenantID != "tenant-1" || c.Issuer != Issuer("tenant-1") {
		t.Fatalf("claims %+v", c)
	}
	if len(c.Access) != 1 || c.Access[0].Name != "app" || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("access %+v", c.Access)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != 10*time.Minute {
		t.Fatalf("lifetime %v, want the TTL", got)
	}
}

func TestVerifyRefuses(t *testing.T) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	s := newTestService(t, storetest.SQLite(t), clk, 0)
	ctx := context.Background()
	iss, err := s.Issue(ctx, Grant{Principal: alice, Audience: AudienceManagement})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(iss.Raw, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"name":"alice"`, `"name":"admin"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]

	other := newTestService(t, storetest.SQLite(t), clk, 0) // another server's keys
	foreign, _ := other.Issue(ctx, Grant{Principal: alice, Audience: AudienceManagement})
	// Same kid, wrong tenant: another issuer.
	otherTenant := NewService(s.keys, Options{TenantID: "tenant-2", Now: clk.Now})
	wrongIss, _ := otherTenant.Issue(ctx, Grant{Principal: alice, Audience: AudienceManagement})
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	cases := []struct {
		name, raw, aud string
		advance        time.Duration
		want           string
	}{
		{"tampered payload", tampered, AudienceManagement, 0, "signature"},
		{"signed by another key set", foreign.Raw, AudienceManagement, 0, "signature"},
		{"wrong audience", iss.Raw, RegistryService, 0, "audience"},
		{"wrong issuer", wrongIss.Raw, AudienceManagement, 0, "issuer"},
		{"alg none", noneAlg, AudienceManagement, 0, ""},
		{"garbage", "not.a.jwt", AudienceManagement, 0, "malformed"},
		{"expired", iss.Raw, AudienceManagement, 10*time.Minute + DefaultLeeway + time.Second, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.advance)
			defer clk.Advance(-tc.advance)
			_, err := s.Verify(ctx, tc.raw, tc.aud)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// Within the leeway an expired token still verifies (clock skew).
	clk.Advance(10*time.Minute + DefaultLeeway/2)
	if _, err := s.Verify(ctx, iss.Raw, AudienceManagement); err != nil {
		t.Fatalf("token within leeway refused: %v", err)
	}
}

// testRotationKeepsOldTokensUntilExpiry (in TestStorage): a retired key verifies its tokens
// until they expire, across a restart, then its row goes.
func testRotationKeepsOldTokensUntilExpiry(t *testing.T, replica func() *store.DB) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	db := replica()
	s := newTestService(t, db, clk, time.Hour)
	ctx := context.Background()
	old, err := s.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	if err != nil {
		t.Fatal(err)
	}
	oldKID := kidOf(t, old.Raw)

	// Issue a token near the end of the first key's life.
	clk.Advance(time.Hour - 5*time.Minute)
	late, _ := s.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	clk.Advance(5 * time.Minute) // the key is now due for rotation
	fresh, _ := s.Issue(ctx, Grant{Principal: alice, Audience: RegistryService})
	if kidOf(t, fresh.Raw) == oldKID {
		t.Fatal("the signing key did not rotate after its rotation age")
	}
	if kidOf(t, late.Raw) != oldKID {
		t.Fatal("test setup: late token should use the old key")
	}
	if _, err := s.Verify(ctx, late.Raw, RegistryService); err != nil {
		t.Fatalf("a token of the retired key was refused before it expired: %v", err)
	}
	jwks := s.keys.Public(ctx)
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want the new and the retired one", len(jwks.Keys))
	}

	// A restart on the same database keeps both keys.
	s2 := newTestService(t, db, clk, time.Hour)
	if _, err := s2.Verify(ctx, late.Raw, RegistryService); err != nil {
		t.Fatalf("after restart, a retired key's token was refused: %v", err)
	}
	if _, err := s2.Verify(ctx, fresh.Raw, RegistryService); err != nil {
		t.Fatalf("after restart, the current key's token was refused: %v", err)
	}

	// Once every token of the old key has expired, the old key is no longer published
	// and its row is removed.
	clk.Advance(30 * time.Minute)
	if got := len(s2.keys.Public(ctx).Keys); got != 1 {
		t.Fatalf("JWKS has %d keys an hour after retirement, want 1", got)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM token_signing_keys WHERE kid = ?`, oldKID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("retired key's row still present (%d, %v)", n, err)
	}
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(h), `"kid":"`)
	kid, _, _ := strings.Cut(rest, `"`)
	return kid
}
