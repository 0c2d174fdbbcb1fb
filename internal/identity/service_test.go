package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// openTest opens a Service on a new store of newDB, returning the store too, for a second
// Service on the same database (a restart, or another replica).
func openTest(t *testing.T, newDB pgtest.Open) (*Service, *clocktest.Clock, *store.DB) {
	t.Helper()
	db := newDB(t)
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	s, err := Open(context.Background(), db, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, db
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not record argon2id and its parameters", h)
	}
	h2, _ := hashPassword("correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, tc := range []struct {
		hash, pw string
		ok       bool
		bad      bool
	}{
		{h, "correct horse", true, false},
		{h, "correct horsE", false, false},
		{h, "", false, false},
		{"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA", "x", false, true},
		{"$bcrypt$...", "x", false, true},
		{"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdA$aGFzaA", "x", false, true}, // absurd memory refused
		{dummyHash, "anything", false, false},
	} {
		ok, err := checkPassword(tc.hash, tc.pw)
		if ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("checkPassword(%q, %q) = %v, %v", tc.hash, tc.pw, ok, err)
		}
	}
}

func testAuthenticate(t *testing.T, newDB pgtest.Open) {
	s, clk, _ := openTest(t, newDB)
	ctx := context.Background()
	alice, err := s.CreateUser(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	sp, secret, err := s.CreateServicePrincipal(ctx, "deployer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, pw, err := s.CreateRepositoryToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind != KindRepositoryToken || len(pw) < 40 {
		t.Fatalf("repository token %+v password %q", tok, pw)
	}
	cases := []struct {
		name, user, secret string
		want               string // principal id; "" = refused
	}{
		{"user", "alice", "alice-password", alice.ID},
		{"user wrong password", "alice", "alice-passwor", ""},
		{"unknown user", "mallory", "alice-password", ""},
		{"service principal", sp.ClientID, secret.Value, sp.ID},
		{"sp by name is not a login", "deployer", secret.Value, ""},
		{"sp wrong secret", sp.ClientID, secret.Value[:42] + "x", ""},
		{"repository token", "ci", pw, tok.ID},
		{"repository token wrong", "ci", "alice-password", ""},
		{"empty secret", "alice", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Authenticate(ctx, tc.user, tc.secret)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalidCredentials) {
					t.Fatalf("Authenticate = %+v, %v; want ErrInvalidCredentials", p, err)
				}
				return
			}
			if err != nil || p.ID != tc.want {
				t.Fatalf("Authenticate = %+v, %v; want %s", p, err, tc.want)
			}
		})
	}
	// An expired client secret stops working.
	clk.Advance(time.Hour + time.Second)
	if _, err := s.Authenticate(ctx, sp.ClientID, secret.Value); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("expired secret: %v", err)
	}
	if _, err := s.AuthenticateClient(ctx, sp.ClientID, secret.Value); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("expired secret (client credentials): %v", err)
	}
}

func testCredentialResetAndAppend(t *testing.T, newDB pgtest.Open) {
	s, _, _ := openTest(t, newDB)
	ctx := context.Background()
	sp, first, _ := s.CreateServicePrincipal(ctx, "app", 0)
	_, second, err := s.ResetCredential(ctx, "app", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []Secret{first, second} {
		if _, err := s.AuthenticateClient(ctx, sp.ClientID, sec.Value); err != nil {
			t.Fatalf("with --append both secrets work: %v", err)
		}
	}
	info, third, err := s.ResetCredential(ctx, sp.ClientID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Credentials) != 1 || info.Credentials[0].ID != third.ID {
		t.Fatalf("after reset: %+v", info.Credentials)
	}
	if _, err := s.AuthenticateClient(ctx, sp.ClientID, first.Value); err == nil {
		t.Fatal("an old secret works after reset")
	}
	if h := info.Credentials[0].Hint; h != third.Value[:3] {
		t.Fatalf("hint %q, want the secret's first 3 characters only", h)
	}
}

func testResolveGetAndNames(t *testing.T, newDB pgtest.Open) {
	s, _, _ := openTest(t, newDB)
	ctx := context.Background()
	u, _ := s.CreateUser(ctx, "shared", "password-1")
	mi, _ := s.CreateManagedIdentity(ctx, "kms")
	for _, ref := range []string{"kms", mi.ID, mi.ClientID} {
		p, err := s.Resolve(ctx, ref)
		if err != nil || p.ID != mi.ID {
			t.Fatalf("Resolve(%q) = %+v, %v", ref, p, err)
		}
	}
	if p, err := s.Resolve(ctx, "registry"); err != nil || p.Kind != KindSystemIdentity {
		t.Fatalf("Resolve(registry) = %+v, %v", p, err)
	}
	// The same name for a user and a managed identity is allowed but ambiguous by name.
	if _, err := s.CreateManagedIdentity(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, "shared"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous name: %v", err)
	}
	if p, err := s.Resolve(ctx, u.ID); err != nil || p.Kind != KindUser {
		t.Fatalf("by id despite ambiguous name: %+v %v", p, err)
	}
	if _, err := s.Get(ctx, "no-such-id"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.CreateUser(ctx, "shared", "password-2"); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate user: %v", err)
	}
	for _, bad := range []string{"", "-x", "a b", "a/b", strings.Repeat("a", 65)} {
		if _, err := s.CreateUser(ctx, bad, "password-1"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	if _, err := s.CreateUser(ctx, "short", "1234567"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
}

func testDeleteGuardsAndRevocation(t *testing.T, newDB pgtest.Open) {
	s, _, _ := openTest(t, newDB)
	ctx := context.Background()
	mi, _ := s.CreateManagedIdentity(ctx, "encryption")
	s.AddDeleteGuard(func(ctx context.Context, p Principal) error {
		if p.ID == mi.ID {
			return errors.New("the registry's encryption uses this identity: switch the key's identity first")
		}
		return nil
	})
	err := s.Delete(ctx, KindManagedIdentity, "encryption")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "switch the key's identity first") {
		t.Fatalf("guarded delete: %v", err)
	}
	if err := s.Delete(ctx, KindSystemIdentity, "registry"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("system identity delete: %v", err)
	}

	u, _ := s.CreateUser(ctx, "bob", "bob-password")
	rt, err := s.IssueRefreshToken(ctx, u, "coffer-registry")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.RedeemRefreshToken(ctx, rt, "coffer-registry"); err != nil || p.ID != u.ID {
		t.Fatalf("redeem: %+v %v", p, err)
	}
	// A refresh token is bound to its audience: a registry client's identity token never
	// mints management tokens.
	if _, err := s.RedeemRefreshToken(ctx, rt, "coffer-management"); !errors.Is(err, ErrRefreshAudience) || !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("redeem a registry refresh token for management: %v, want ErrRefreshAudience", err)
	}
	if _, err := s.IssueRefreshToken(ctx, u, ""); err == nil {
		t.Fatal("a refresh token without an audience was issued")
	}
	for _, bad := range []string{"", "cfr1.", rt + "x", strings.Replace(rt, "cfr1.", "cfr2.", 1)} {
		if _, err := s.RedeemRefreshToken(ctx, bad, "coffer-registry"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("redeem %q: %v", bad, err)
		}
	}
	if err := s.SetPassword(ctx, "bob", "bob-password-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt, "coffer-registry"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("refresh token after passwd: %v", err)
	}
	rt2, _ := s.IssueRefreshToken(ctx, u, "coffer-registry")
	if err := s.Delete(ctx, KindUser, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, rt2, "coffer-registry"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("refresh token after delete: %v", err)
	}
	if err := s.DeleteRepositoryToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown token: %v", err)
	}
}

func testBootstrapOnceAndStatePersists(t *testing.T, newDB pgtest.Open) {
	s, clk, db := openTest(t, newDB)
	ctx := context.Background()
	need, err := s.NeedsBootstrap(ctx)
	if err != nil || !need {
		t.Fatalf("fresh store: need=%v %v", need, err)
	}
	admin, err := s.BootstrapAdmin(ctx, "first-password")
	if err != nil || admin.Name != AdminName || admin.Kind != KindUser {
		t.Fatalf("bootstrap: %+v %v", admin, err)
	}
	if err := s.Delete(ctx, KindUser, AdminName); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, db, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if s2.TenantID() != s.TenantID() || s2.SystemIdentity() != s.SystemIdentity() {
		t.Fatal("reopen changed the tenant or the system identity")
	}
	if need, _ := s2.NeedsBootstrap(ctx); need {
		t.Fatal("bootstrap would run again after admin was deleted")
	}
}

func TestLoginLimiter(t *testing.T) {
	clk := clocktest.New(time.Unix(0, 0))
	l := NewLoginLimiter(3, time.Minute, clk.Now)
	for i := 0; i < 3; i++ {
		if w := l.Check("name:a", "addr:1"); w != 0 {
			t.Fatalf("attempt %d throttled", i)
		}
		l.Fail("name:a", "addr:1")
		clk.Advance(10 * time.Second)
	}
	w := l.Check("name:a")
	if w <= 0 || w > time.Minute {
		t.Fatalf("after 3 failures wait %v", w)
	}
	if l.Check("addr:1") == 0 {
		t.Fatal("address not throttled")
	}
	if l.Check("name:b", "addr:2") != 0 {
		t.Fatal("an unrelated key is throttled")
	}
	clk.Advance(w)
	if l.Check("name:a") != 0 {
		t.Fatalf("still throttled after waiting %v", w)
	}
	if NewLoginLimiter(0, time.Minute, nil).Check("x") != 0 {
		t.Fatal("limit 0 must disable throttling")
	}

	// A success resets the name's count, not the address's.
	l = NewLoginLimiter(3, time.Minute, clk.Now)
	l.Fail("name:c", "addr:3")
	l.Fail("name:c", "addr:3")
	l.Reset("name:c")
	l.Fail("name:c", "addr:3")
	if l.Check("name:c") != 0 {
		t.Fatal("failures before a successful login still count towards the name's lockout")
	}
	if l.Check("addr:3") == 0 {
		t.Fatal("a success must not clear the address's count")
	}
}
