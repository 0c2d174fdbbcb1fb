package access_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// BenchmarkAuthorize measures one decision from the in-memory copy, against a baseline
// measured in the same run: the single indexed SQLite query an uncached decision would need
// at the very least. The "x_vs_sqlite" metric is how many times cheaper a decision is.
func BenchmarkAuthorize(b *testing.B) {
	f := newFixture(b, func(t testing.TB) *store.DB { return storetest.SQLite(t) })
	ctx := context.Background()
	p := f.principal(b)
	// Some realistic noise: other principals with grants at many scopes.
	for i := 0; i < 200; i++ {
		q := f.principal(b)
		f.assign(b, "AcrPush", q, fmt.Sprintf("repository/app%d", i))
		f.assign(b, "Key Vault Crypto User", q, fmt.Sprintf("vault/v%d", i))
	}
	f.assign(b, "AcrPull", p, "registry")
	f.assign(b, "Key Vault Crypto Service Encryption User", p, "vault/team1")
	if _, err := f.authz.SetPolicy(ctx, "team2", p.ID, []string{"get", "wrapKey", "unwrapKey"}); err != nil {
		b.Fatal(err)
	}

	// The baseline runs first, as a sub-benchmark of its own (testing.Benchmark cannot be
	// nested in a running benchmark).
	var baselineNs float64
	b.Run("baseline-sqlite-lookup", func(b *testing.B) {
		for b.Loop() {
			rows, err := f.db.QueryContext(ctx, `SELECT role, scope FROM access_role_assignments WHERE principal_id = ?`, p.ID)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var role, scope string
				rows.Scan(&role, &scope)
			}
			rows.Close()
		}
		baselineNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})

	cases := []struct {
		name string
		req  access.Request
		ok   bool
	}{
		{"rbac-allow", access.Request{Principal: p, Action: access.KeyUnwrap, Scope: access.KeyScope("team1", "k1")}, true},
		{"rbac-allow-registry", access.Request{Principal: p, Action: access.RegistryPull, Scope: access.RepositoryScope("team/app")}, true},
		{"policy-allow", access.Request{Principal: p, Action: access.KeyUnwrap, Scope: access.KeyScope("team2", "k1"), VaultUsesPolicies: true}, true},
		{"deny", access.Request{Principal: p, Action: access.KeyDelete, Scope: access.KeyScope("team1", "k1")}, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if err := f.authz.Authorize(ctx, c.req); (err == nil) != c.ok {
				b.Fatalf("decision %v, want allowed=%v", err, c.ok)
			}
			b.ReportAllocs()
			for b.Loop() {
				f.authz.Authorize(ctx, c.req)
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if baselineNs > 0 {
				b.ReportMetric(baselineNs/perOp, "x_vs_sqlite")
			}
		})
	}
}
