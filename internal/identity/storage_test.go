package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// TestStorage runs the identity part's storage tests on SQLite and on PostgreSQL, through
// the Service: every statement of the package (principals of each kind, secrets, refresh
// tokens, the meta rows), uniqueness refusals, lookups by id, client id and name, and
// replicas starting together on one database.
func TestStorage(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, newDB pgtest.Open) {
		for _, c := range []struct {
			name string
			test func(*testing.T, pgtest.Open)
		}{
			{"Authenticate", testAuthenticate},
			{"CredentialResetAndAppend", testCredentialResetAndAppend},
			{"ResolveGetAndNames", testResolveGetAndNames},
			{"DeleteGuardsAndRevocation", testDeleteGuardsAndRevocation},
			{"BootstrapOnceAndStatePersists", testBootstrapOnceAndStatePersists},
			{"LoginCacheRemembersOnlySuccesses", testLoginCacheRemembersOnlySuccesses},
			{"LoginCacheInvalidation", testLoginCacheInvalidation},
			{"ListShowExistsRevoke", testListShowExistsRevoke},
			{"ReplicasOpenTogether", testReplicasOpenTogether},
		} {
			t.Run(c.name, func(t *testing.T) { c.test(t, newDB) })
		}
	})
}

// testListShowExistsRevoke: listing by kind in (kind, name) order with a service
// principal's credentials in (created, id) order, Show, ManagedIdentity by client and
// object id, Exists, and revoking refresh tokens one at a time and all at once.
func testListShowExistsRevoke(t *testing.T, newDB pgtest.Open) {
	s, clk, _ := openTest(t, newDB)
	ctx := context.Background()
	for _, n := range []string{"zeta", "alpha", "Mid", "beta"} {
		if _, err := s.CreateManagedIdentity(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateManagedIdentity(ctx, "beta"); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second managed identity named beta: %v, want ErrConflict", err)
	}
	sp, first, err := s.CreateServicePrincipal(ctx, "deployer", 0)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	_, second, err := s.ResetCredential(ctx, "deployer", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	mis, err := s.List(ctx, KindManagedIdentity)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mis {
		names = append(names, m.Name)
	}
	// Bytewise order (upper case first) on both engines.
	if fmt.Sprint(names) != "[Mid alpha beta zeta]" {
		t.Fatalf("managed identities listed as %v", names)
	}
	all, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[Kind]int{}
	for i, p := range all {
		kinds[p.Kind]++
		if i > 0 && (all[i-1].Kind > p.Kind || all[i-1].Kind == p.Kind && all[i-1].Name >= p.Name) {
			t.Fatalf("List(\"\") out of (kind, name) order at %d: %v", i, all)
		}
		if p.Kind == KindServicePrincipal && len(p.Credentials) != 2 {
			t.Fatalf("service principal listed with %d credentials, want 2", len(p.Credentials))
		}
	}
	if kinds[KindManagedIdentity] != 4 || kinds[KindServicePrincipal] != 1 || kinds[KindSystemIdentity] != 1 {
		t.Fatalf("List(\"\") kinds: %v", kinds)
	}
	info, err := s.Show(ctx, KindServicePrincipal, sp.ClientID)
	if err != nil || info.ID != sp.ID || len(info.Credentials) != 2 ||
		info.Credentials[0].ID != first.ID || info.Credentials[1].ID != second.ID {
		t.Fatalf("Show: %+v %v (want credentials %s then %s)", info, err, first.ID, second.ID)
	}
	if c := info.Credentials[1]; !c.CreatedAt.Equal(second.CreatedAt) || !c.ExpiresAt.Equal(second.ExpiresAt) || c.Hint != second.Hint {
		t.Fatalf("the second credential read back as %+v, written as %+v", c, second.CredentialInfo)
	}
	if _, err := s.Show(ctx, KindUser, "deployer"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Show of another kind: %v", err)
	}
	alpha := mis[1]
	for _, q := range [][2]string{{alpha.ClientID, ""}, {"", alpha.ID}} {
		if p, err := s.ManagedIdentity(ctx, q[0], q[1]); err != nil || p.ID != alpha.ID {
			t.Fatalf("ManagedIdentity(%q, %q) = %+v, %v", q[0], q[1], p, err)
		}
	}
	if p, err := s.ManagedIdentity(ctx, "", s.SystemIdentity().ID); err != nil || p.ID != s.SystemIdentity().ID {
		t.Fatalf("ManagedIdentity(system) = %+v, %v", p, err)
	}
	if _, err := s.ManagedIdentity(ctx, sp.ClientID, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a service principal's client id as a managed identity: %v", err)
	}
	if ok, err := s.Exists(ctx, alpha.ID); err != nil || !ok {
		t.Fatalf("Exists(alpha) = %v, %v", ok, err)
	}
	if ok, err := s.Exists(ctx, "no-such-id"); err != nil || ok {
		t.Fatalf("Exists(unknown) = %v, %v", ok, err)
	}
	if err := s.Delete(ctx, KindManagedIdentity, "alpha"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, alpha.ID); err != nil || ok {
		t.Fatalf("Exists(deleted alpha) = %v, %v", ok, err)
	}

	u, err := s.CreateUser(ctx, "erin", "erin-password")
	if err != nil {
		t.Fatal(err)
	}
	rt1, _ := s.IssueRefreshToken(ctx, u, "coffer-registry")
	rt2, _ := s.IssueRefreshToken(ctx, u, "coffer-management")
	if err := s.RevokeRefreshToken(ctx, rt1+"x"); err != nil { // wrong secret: not revoked, no error
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt1, "coffer-registry"); err != nil {
		t.Fatalf("a refresh token revoked with a wrong secret: %v", err)
	}
	if err := s.RevokeRefreshToken(ctx, rt1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt1, "coffer-registry"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("revoked refresh token: %v", err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt2, "coffer-management"); err != nil {
		t.Fatalf("the other refresh token: %v", err)
	}
	if err := s.RevokeRefreshTokens(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt2, "coffer-management"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("refresh token after revoking all: %v", err)
	}
}

// testReplicasOpenTogether: replicas starting at once on a fresh database agree on one
// tenant id and one system identity, and of administrators bootstrapped at once, one is
// made.
func testReplicasOpenTogether(t *testing.T, newDB pgtest.Open) {
	const n = 4
	db := newDB(t)
	ctx := context.Background()
	svcs := make([]*Service, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range svcs {
		wg.Go(func() { svcs[i], errs[i] = Open(ctx, db, Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	for i, s := range svcs[1:] {
		if s.TenantID() != svcs[0].TenantID() || s.SystemIdentity() != svcs[0].SystemIdentity() {
			t.Fatalf("replica %d: tenant %s system %+v; replica 0: %s %+v", i+1, s.TenantID(), s.SystemIdentity(),
				svcs[0].TenantID(), svcs[0].SystemIdentity())
		}
	}
	admins := make([]string, n)
	for i, s := range svcs {
		wg.Go(func() {
			if p, err := s.BootstrapAdmin(ctx, "first-password"); err == nil {
				admins[i] = p.ID
			}
		})
	}
	wg.Wait()
	users, err := svcs[0].List(ctx, KindUser)
	if err != nil || len(users) != 1 {
		t.Fatalf("users after concurrent bootstraps: %+v %v", users, err)
	}
	for i, id := range admins {
		if id != "" && id != users[0].ID {
			t.Fatalf("replica %d was told it made administrator %s, the database holds %s", i, id, users[0].ID)
		}
	}
	if need, err := svcs[1].NeedsBootstrap(ctx); err != nil || need {
		t.Fatalf("NeedsBootstrap after the bootstraps: %v %v", need, err)
	}
}
