package access_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

func testAssignmentCRUD(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	alice, bob := f.principal(t), f.principal(t)

	a, created, err := f.authz.CreateAssignment(ctx, access.AssignmentSpec{Role: "acrpush", Assignee: alice.Name, Scope: "repository/team/app", CreatedBy: "tester"})
	if err != nil || !created {
		t.Fatalf("create: %+v %v %v", a, created, err)
	}
	if a.Role != "AcrPush" || a.PrincipalID != alice.ID || a.PrincipalName != alice.Name || a.PrincipalKind != identity.KindManagedIdentity ||
		a.Scope != "/registry/repositories/team/app" || a.CreatedBy != "tester" || a.ID == "" {
		t.Fatalf("created %+v", a)
	}
	// Same triple (by client id this time, other spellings): same assignment.
	again, created, err := f.authz.CreateAssignment(ctx, access.AssignmentSpec{Role: "AcrPush", Assignee: alice.ClientID, Scope: "/registry/repositories/team/app/"})
	if err != nil || created || again.ID != a.ID {
		t.Fatalf("idempotent create: %+v %v %v", again, created, err)
	}
	f.assign(t, "Reader", alice, "/")
	f.assign(t, "Key Vault Crypto User", bob, "vault/Team1")
	f.assign(t, "Key Vault Reader", bob, "vault/team1/key/k1")
	f.assign(t, "AcrPull", bob, "registry")

	list := func(filter access.AssignmentFilter) []string {
		t.Helper()
		got, err := f.authz.ListAssignments(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range got {
			out = append(out, a.Role+"@"+string(a.Scope))
		}
		return out
	}
	tests := []struct {
		name   string
		filter access.AssignmentFilter
		want   string
	}{
		{"all", access.AssignmentFilter{}, "Reader@/ AcrPull@/registry AcrPush@/registry/repositories/team/app Key Vault Crypto User@/vaults/team1 Key Vault Reader@/vaults/team1/keys/k1"},
		{"by principal", access.AssignmentFilter{PrincipalID: alice.ID}, "Reader@/ AcrPush@/registry/repositories/team/app"},
		{"by vault scope: at, below, inherited", access.AssignmentFilter{Scope: "/vaults/team1"}, "Reader@/ Key Vault Crypto User@/vaults/team1 Key Vault Reader@/vaults/team1/keys/k1"},
		{"by key scope", access.AssignmentFilter{Scope: "/vaults/team1/keys/k2"}, "Reader@/ Key Vault Crypto User@/vaults/team1"},
		{"by repository", access.AssignmentFilter{Scope: "/registry/repositories/team/app"}, "Reader@/ AcrPull@/registry AcrPush@/registry/repositories/team/app"},
		{"by role", access.AssignmentFilter{Role: "acrpull"}, "AcrPull@/registry"},
		{"by principal and scope", access.AssignmentFilter{PrincipalID: bob.ID, Scope: "/registry"}, "AcrPull@/registry"},
	}
	for _, tt := range tests {
		if got := strings.Join(list(tt.filter), " "); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}

	got, err := f.authz.GetAssignment(ctx, a.ID)
	if err != nil || got.ID != a.ID {
		t.Fatalf("get: %+v %v", got, err)
	}
	found, err := f.authz.FindAssignment(ctx, "AcrPush", alice.ID, "/registry/repositories/team/app")
	if err != nil || found.ID != a.ID {
		t.Fatalf("find: %+v %v", found, err)
	}
	if err := f.authz.DeleteAssignment(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.authz.GetAssignment(ctx, a.ID); !errors.Is(err, access.ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get deleted: %v", err)
	}
	if err := f.authz.DeleteAssignment(ctx, a.ID); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}

	// Bad input.
	bad := []struct {
		spec access.AssignmentSpec
		want string
	}{
		{access.AssignmentSpec{Role: "AcrPul", Assignee: alice.ID, Scope: "/"}, `unknown role "AcrPul"`},
		{access.AssignmentSpec{Role: "AcrPull", Assignee: alice.ID, Scope: "/vault/x"}, "unknown scope"},
		{access.AssignmentSpec{Role: "AcrPull", Assignee: "", Scope: "/"}, "no assignee"},
		{access.AssignmentSpec{Role: "AcrPull", Assignee: "nobody", Scope: "/"}, `"nobody"`},
	}
	for _, b := range bad {
		if _, _, err := f.authz.CreateAssignment(ctx, b.spec); !errors.Is(err, access.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("CreateAssignment(%+v) = %v, want ErrInvalid containing %q", b.spec, err, b.want)
		}
	}

	// Removing a principal's grants.
	if err := f.authz.DeletePrincipalGrants(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if got := list(access.AssignmentFilter{PrincipalID: bob.ID}); len(got) != 0 {
		t.Errorf("bob's grants after DeletePrincipalGrants: %v", got)
	}
	if f.allowed(t, bob, access.RegistryPull, "/registry/repositories/x", false) {
		t.Error("bob may still pull")
	}
}

func testRevocationIsImmediate(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	p := f.principal(t)
	k1 := access.KeyScope("team1", "k1")
	if f.allowed(t, p, access.KeyUnwrap, k1, false) {
		t.Fatal("allowed before any grant")
	}
	a := f.assign(t, "Key Vault Crypto Service Encryption User", p, "/vaults/team1")
	if !f.allowed(t, p, access.KeyUnwrap, k1, false) {
		t.Fatal("grant not seen at once")
	}
	if err := f.authz.DeleteAssignment(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, p, access.KeyUnwrap, k1, false) {
		t.Fatal("revocation not seen at once")
	}
}

// TestCacheTTL: a change written to the store by another replica (not through this
// Service) is seen once the cache TTL has passed, and not served from a stale copy after.
func testCacheTTL(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	p := f.principal(t)
	if f.allowed(t, p, access.RegistryPull, "/registry/repositories/app", false) {
		t.Fatal("allowed before any grant")
	}
	other, err := access.New(ctx, f.db, f.ids, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.CreateAssignment(ctx, access.AssignmentSpec{Role: "AcrPull", Assignee: p.ID, Scope: "/registry"}); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, p, access.RegistryPull, "/registry/repositories/app", false) {
		t.Fatal("another replica's grant seen before the TTL passed: the cache is not in use")
	}
	f.clock.Advance(61 * time.Second)
	if !f.allowed(t, p, access.RegistryPull, "/registry/repositories/app", false) {
		t.Fatal("another replica's grant not seen after the TTL")
	}
}

// TestAuthorizeConcurrentWrites runs decisions while assignments change (run with -race).
func testAuthorizeConcurrentWrites(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	p := f.principal(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := f.authz.Authorize(ctx, access.Request{Principal: p, Action: access.RegistryPull, Scope: "/registry/repositories/app"})
				if err != nil && !errors.Is(err, access.ErrDenied) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		a := f.assign(t, "AcrPull", p, fmt.Sprintf("repository/r%d", i))
		if err := f.authz.DeleteAssignment(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	// After the last write, the decision reflects the store exactly.
	if f.allowed(t, p, access.RegistryPull, "/registry/repositories/r19", false) {
		t.Fatal("stale grant after concurrent writes")
	}
}

func testBootstrapOwner(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	// No administrator yet: nothing happens.
	if err := f.authz.EnsureBootstrapOwner(ctx, nil); err != nil {
		t.Fatal(err)
	}
	admin, err := f.ids.BootstrapAdmin(ctx, "correct-horse-battery")
	if err != nil {
		t.Fatal(err)
	}
	// The process stopped before the grant: the next start finds the administrator by name.
	if err := f.authz.EnsureBootstrapOwner(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !f.allowed(t, admin, access.AccessManage, access.ScopeRoot, false) {
		t.Fatal("administrator is not Owner at /")
	}
	// Once granted, it is never granted again: an operator may remove it, once another
	// principal is Owner at / (the last root Owner is never removed: that would lock
	// everybody out of access management).
	a, err := f.authz.FindAssignment(ctx, "Owner", admin.ID, access.ScopeRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.authz.DeleteAssignment(ctx, a.ID); !errors.Is(err, access.ErrConflict) || !strings.Contains(err.Error(), "last Owner") {
		t.Fatalf("deleting the last Owner at /: %v, want ErrConflict naming the last Owner", err)
	}
	if !f.allowed(t, admin, access.AccessManage, access.ScopeRoot, false) {
		t.Fatal("the refused delete removed the last Owner anyway")
	}
	other := f.principal(t)
	f.assign(t, "Owner", other, "/")
	if err := f.authz.DeleteAssignment(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	// Now other is the last Owner at /: refused again; an Owner at a narrower scope is not
	// protected.
	b, err := f.authz.FindAssignment(ctx, "Owner", other.ID, access.ScopeRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.authz.DeleteAssignment(ctx, b.ID); !errors.Is(err, access.ErrConflict) {
		t.Fatalf("deleting the new last Owner at /: %v, want ErrConflict", err)
	}
	narrow := f.assign(t, "Owner", admin, "registry")
	if err := f.authz.DeleteAssignment(ctx, narrow.ID); err != nil {
		t.Fatalf("an Owner at /registry is not the last root Owner: %v", err)
	}
	if err := f.authz.EnsureBootstrapOwner(ctx, &admin); err != nil {
		t.Fatal(err)
	}
	if f.allowed(t, admin, access.AccessManage, access.ScopeRoot, false) {
		t.Fatal("the bootstrap grant came back after the operator removed it")
	}
}
