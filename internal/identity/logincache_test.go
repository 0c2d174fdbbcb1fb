package identity

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// countArgon2 makes s count the argon2id verifications it runs.
func countArgon2(s *Service) *atomic.Int64 {
	var n atomic.Int64
	s.checkPassword = func(encoded, pw string) (bool, error) {
		n.Add(1)
		return checkPassword(encoded, pw)
	}
	return &n
}

func testLoginCacheRemembersOnlySuccesses(t *testing.T, newDB pgtest.Open) {
	s, clk, _ := openTest(t, newDB)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "carol", "carol-password")
	if err != nil {
		t.Fatal(err)
	}
	n := countArgon2(s)
	for i := 0; i < 5; i++ {
		p, err := s.Authenticate(ctx, "carol", "carol-password")
		if err != nil || p.ID != u.ID {
			t.Fatalf("login %d: %+v %v", i+1, p, err)
		}
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("5 logins with the same password ran argon2id %d times, want 1", got)
	}
	// A wrong password is never answered from the cache, and still costs argon2id.
	for _, wrong := range []string{"carol-passworD", "carol-password ", "x"} {
		before := n.Load()
		if _, err := s.Authenticate(ctx, "carol", wrong); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("wrong password %q after a cached login: %v", wrong, err)
		}
		if n.Load() == before {
			t.Fatalf("wrong password %q was answered without argon2id", wrong)
		}
	}
	// The entry expires.
	clk.Advance(loginCacheTTL)
	before := n.Load()
	if _, err := s.Authenticate(ctx, "carol", "carol-password"); err != nil {
		t.Fatal(err)
	}
	if n.Load() == before {
		t.Fatalf("a login %v after the first was still answered from the cache", loginCacheTTL)
	}
}

func testLoginCacheInvalidation(t *testing.T, newDB pgtest.Open) {
	s, _, db := openTest(t, newDB)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, "dave", "dave-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password"); err != nil {
		t.Fatal(err)
	}
	// A password change empties the entry at once.
	if err := s.SetPassword(ctx, "dave", "dave-password-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("old password after a password change: %v", err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password-2"); err != nil {
		t.Fatalf("new password: %v", err)
	}

	// A change made by another replica (another Service on the same database) is seen too:
	// a cached login is only accepted while the stored credential is the one it was made with.
	other, err := Open(ctx, db, Options{Now: s.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SetPassword(ctx, "dave", "dave-password-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password-2"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("old password after another replica changed it: %v", err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password-3"); err != nil {
		t.Fatal(err)
	}

	// Deletion empties it.
	if err := s.Delete(ctx, KindUser, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "dave", "dave-password-3"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("deleted user's cached login: %v", err)
	}

	// A service principal's reset secret and a deleted repository token stop at once.
	_, sec, err := s.CreateServicePrincipal(ctx, "ci", 0)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Show(ctx, KindServicePrincipal, "ci")
	if _, err := s.Authenticate(ctx, info.ClientID, sec.Value); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ResetCredential(ctx, "ci", 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, info.ClientID, sec.Value); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("reset client secret's cached login: %v", err)
	}
	_, pw, err := s.CreateRepositoryToken(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "pipeline", pw); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRepositoryToken(ctx, "pipeline"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "pipeline", pw); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("deleted repository token's cached login: %v", err)
	}
}

func TestLoginCacheIsBounded(t *testing.T) {
	c := newLoginCache(4, time.Minute)
	now := time.Unix(0, 0)
	for i := 0; i < 10; i++ {
		c.put(c.key("user", string(rune('a'+i))), loginEntry{principalID: "p", expires: now.Add(time.Minute)}, now)
	}
	if n := c.len(); n > 4 {
		t.Fatalf("cache of 4 holds %d entries", n)
	}
}
