package token

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clocktest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

type principalSet map[string]bool

func (p principalSet) Exists(_ context.Context, id string) (bool, error) { return p[id], nil }

// TestVerifiedTokensCached: a token verified once is answered from the cache, which still
// refuses what must be refused: an altered token, the same token for another audience, an
// expired one, and one whose principal was deleted.
func TestVerifiedTokensCached(t *testing.T) {
	clk := clocktest.New(time.Unix(1_800_000_000, 0))
	principals := principalSet{alice.ID: true}
	s := NewService(openTestKeySet(t, storetest.SQLite(t), clk, 0),
		Options{TenantID: "tenant-1", TTL: 10 * time.Minute, Now: clk.Now, Principals: principals})
	ctx := context.Background()
	iss, err := s.Issue(ctx, Grant{Principal: alice, Audience: RegistryService,
		Access: []Access{{Type: "repository", Name: "app", Actions: []string{"pull"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := s.Verify(ctx, iss.Raw, RegistryService)
		if err != nil {
			t.Fatal(err)
		}
		if c.ObjectID != alice.ID || len(c.Access) != 1 || c.Access[0].Name != "app" {
			t.Fatalf("claims from the cache %+v", c)
		}
	}
	if n := len(s.verified.entries); n != 1 {
		t.Fatalf("%d cached verifications, want 1", n)
	}
	// The signature is not checked again for a cached token, so the cache must not answer
	// a token that differs in a single byte.
	b := []byte(iss.Raw)
	i := strings.IndexByte(iss.Raw, '.') + 5 // a byte of the payload
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	altered := string(b)
	if _, err := s.Verify(ctx, altered, RegistryService); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("altered token: %v, want ErrInvalidToken", err)
	}
	if _, err := s.Verify(ctx, iss.Raw, AudienceManagement); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("cached token for another audience: %v", err)
	}
	delete(principals, alice.ID)
	if _, err := s.Verify(ctx, iss.Raw, RegistryService); !errors.Is(err, ErrPrincipalGone) {
		t.Fatalf("cached token of a deleted principal: %v, want ErrPrincipalGone", err)
	}
	principals[alice.ID] = true
	clk.Advance(10*time.Minute + DefaultLeeway + time.Second)
	if _, err := s.Verify(ctx, iss.Raw, RegistryService); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("cached token after its expiry: %v", err)
	}
	if n := len(s.verified.entries); n != 0 {
		t.Fatalf("%d cached verifications after expiry, want 0", n)
	}
}
