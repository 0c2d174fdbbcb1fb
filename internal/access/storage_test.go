package access_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// TestStorage runs the access part's storage tests on SQLite and on PostgreSQL, through
// the Service: role assignments (create, idempotent create, list order and filters, get,
// find, delete, the last-Owner guard), vault access policies (upsert, list, delete),
// repository tokens with their scope maps, the bootstrap record, and two replicas on one
// database writing at once.
func TestStorage(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, newDB pgtest.Open) {
		for _, c := range []struct {
			name string
			test func(*testing.T, pgtest.Open)
		}{
			{"AssignmentCRUD", testAssignmentCRUD},
			{"RevocationIsImmediate", testRevocationIsImmediate},
			{"CacheTTL", testCacheTTL},
			{"AuthorizeConcurrentWrites", testAuthorizeConcurrentWrites},
			{"BootstrapOwner", testBootstrapOwner},
			{"AuthorizeRoleScopeAction", testAuthorizeRoleScopeAction},
			{"AuthorizeNothingAssigned", testAuthorizeNothingAssigned},
			{"AuthorizeDeniedMessage", testAuthorizeDeniedMessage},
			{"AuthorizeAccessPolicies", testAuthorizeAccessPolicies},
			{"AuthorizeRepositoryTokens", testAuthorizeRepositoryTokens},
			{"PolicyValidation", testPolicyValidation},
			{"ScopeNameCase", testScopeNameCase},
			{"Replicas", testReplicas},
		} {
			t.Run(c.name, func(t *testing.T) { c.test(t, newDB) })
		}
	})
}

// testReplicas: two access services on one database (two replicas). The same assignment
// created on both at once is one row; of two root Owners removed at once on different
// replicas, one removal is refused (the last-Owner guard's read and delete are one
// transaction on either engine); a token made on one replica is read on the other; and a
// revocation on one replica takes effect on the other once its cache TTL has passed.
func testReplicas(t *testing.T, newDB pgtest.Open) {
	f := newFixture(t, newDB)
	ctx := context.Background()
	other, err := access.New(ctx, f.db, f.ids, access.Options{Now: f.clock.Now, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*access.Service{f.authz, other}
	p := f.principal(t)

	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, _, err := replicas[i%2].CreateAssignment(ctx, access.AssignmentSpec{Role: "AcrPull", Assignee: p.ID, Scope: "repository/shared"})
			ids[i], errs[i] = a.ID, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("create %d of the same assignment: %s %v (first: %s)", i, ids[i], errs[i], ids[0])
		}
	}
	if list, err := other.ListAssignments(ctx, access.AssignmentFilter{PrincipalID: p.ID}); err != nil || len(list) != 1 {
		t.Fatalf("assignments after concurrent creates: %+v %v", list, err)
	}

	a1 := f.assign(t, "Owner", f.principal(t), "/")
	a2 := f.assign(t, "Owner", f.principal(t), "/")
	for range 5 {
		errs := make([]error, 2)
		for i, id := range []string{a1.ID, a2.ID} {
			wg.Go(func() { errs[i] = replicas[i].DeleteAssignment(ctx, id) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, access.ErrConflict):
				t.Fatalf("removing a root Owner: %v", err)
			}
		}
		owners, err := f.authz.ListAssignments(ctx, access.AssignmentFilter{Role: "Owner"})
		if err != nil {
			t.Fatal(err)
		}
		if ok != 1 || len(owners) != 1 {
			t.Fatalf("two root Owners removed at once on two replicas: %d removals succeeded, %d Owners left (%v)", ok, len(owners), errs)
		}
		// Put the removed one back for the next round.
		if owners[0].ID == a1.ID {
			a2 = f.assign(t, "Owner", f.principal(t), "/")
		} else {
			a1 = f.assign(t, "Owner", f.principal(t), "/")
		}
	}

	tok, _, err := f.authz.CreateRepositoryToken(ctx, "ci-push", []access.ScopeMapEntry{
		{Repository: "team/app", Actions: []string{"content/read", "content/write"}}, {Repository: "base/*", Actions: []string{"content/read"}}}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.GetRepositoryToken(ctx, "ci-push")
	if err != nil || got.ObjectID != tok.ObjectID || len(got.ScopeMap) != 2 || got.ScopeMap[0].Repository != "base/*" ||
		!got.CreatedAt.Equal(tok.CreatedAt) || got.CreatedBy != "tester" {
		t.Fatalf("token read on the other replica: %+v %v (made %+v)", got, err, tok)
	}
	if _, err := other.GetRepositoryToken(ctx, "nope"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}

	// A grant seen by replica B, revoked through replica A: B follows within its TTL.
	req := access.Request{Principal: p, Action: access.RegistryPull, Scope: "/registry/repositories/shared"}
	if err := other.Authorize(ctx, req); err != nil {
		t.Fatalf("replica B before the revocation: %v", err)
	}
	if err := f.authz.DeleteAssignment(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute + time.Second)
	if err := other.Authorize(ctx, req); !errors.Is(err, access.ErrDenied) {
		t.Fatalf("replica B a TTL after replica A revoked: %v, want denied", err)
	}
}
