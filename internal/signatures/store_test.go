package signatures_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/signatures"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestStorage is the signature policy store's suite (every statement of SQLStore), on
// SQLite and on PostgreSQL: the version every change bumps (which replicas reload on),
// anchors with their times to the nanosecond, name conflicts, and callers at once.
func TestStorage(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, open pgtest.Open) {
		t.Run("StateAndVersions", func(t *testing.T) {
			ctx := t.Context()
			st, err := signatures.OpenSQLStore(ctx, open(t))
			if err != nil {
				t.Fatal(err)
			}
			if v, err := st.Version(ctx); err != nil || v != 0 {
				t.Fatalf("fresh version %d %v, want 0", v, err)
			}
			if s, err := st.Load(ctx); err != nil || s.Version != 0 || len(s.Policy) != 0 || len(s.Anchors) != 0 || !s.Updated.IsZero() {
				t.Fatalf("fresh state %+v %v", s, err)
			}
			created := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
			v1, err := st.PutAnchor(ctx, signatures.StoredAnchor{Name: "zeta", Kind: "notation", StoreType: "ca", Material: "PEM-Z", Created: created})
			if err != nil || v1 != 1 {
				t.Fatalf("put: %d %v", v1, err)
			}
			refreshed := created.Add(time.Minute)
			if _, err := st.PutAnchor(ctx, signatures.StoredAnchor{Name: "Alpha", Kind: "cosign", StoreType: "key", Material: "PEM-A",
				Created: created, KeyURL: "https://team.vault.test/keys/cosign", KeyStatus: "ok", Refreshed: &refreshed}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.PutAnchor(ctx, signatures.StoredAnchor{Name: "zeta", Kind: "notation", Material: "other", Created: created}); !errors.Is(err, signatures.ErrExists) {
				t.Fatalf("a taken name: %v", err)
			}
			doc := []byte(`{"repositories":[]}`)
			now := created.Add(time.Hour)
			v3, err := st.SetPolicy(ctx, doc, now)
			if err != nil || v3 != 3 {
				t.Fatalf("set policy: %d %v", v3, err)
			}
			s, err := st.Load(ctx)
			if err != nil || s.Version != 3 || string(s.Policy) != string(doc) || !s.Updated.Equal(now) || len(s.Anchors) != 2 {
				t.Fatalf("state %+v %v", s, err)
			}
			a, z := s.Anchors[0], s.Anchors[1]
			if a.Name != "Alpha" || z.Name != "zeta" {
				t.Fatalf("anchors in the order %s, %s: want bytewise name order", a.Name, z.Name)
			}
			if !a.Created.Equal(created) || a.Refreshed == nil || !a.Refreshed.Equal(refreshed) || a.KeyURL == "" || a.KeyStatus != "ok" || a.Material != "PEM-A" {
				t.Fatalf("vault key anchor read back as %+v", a)
			}
			if z.Refreshed != nil || z.KeyURL != "" || z.Kind != "notation" || z.StoreType != "ca" {
				t.Fatalf("certificate anchor read back as %+v", z)
			}

			later := refreshed.Add(time.Hour)
			if v, err := st.UpdateAnchorKey(ctx, "Alpha", "PEM-A2", "disabled", later); err != nil || v != 4 {
				t.Fatalf("refresh: %d %v", v, err)
			}
			if _, err := st.UpdateAnchorKey(ctx, "zeta", "x", "ok", later); !errors.Is(err, signatures.ErrNotFound) {
				t.Fatalf("refresh of an anchor that holds no vault key: %v", err)
			}
			if _, err := st.UpdateAnchorKey(ctx, "nobody", "x", "ok", later); !errors.Is(err, signatures.ErrNotFound) {
				t.Fatalf("refresh of a missing anchor: %v", err)
			}
			if v, err := st.DeleteAnchor(ctx, "zeta"); err != nil || v != 5 {
				t.Fatalf("delete: %d %v", v, err)
			}
			if _, err := st.DeleteAnchor(ctx, "zeta"); !errors.Is(err, signatures.ErrNotFound) {
				t.Fatalf("delete twice: %v", err)
			}
			s, err = st.Load(ctx)
			if err != nil || s.Version != 5 || len(s.Anchors) != 1 || s.Anchors[0].Material != "PEM-A2" || s.Anchors[0].KeyStatus != "disabled" ||
				!s.Anchors[0].Refreshed.Equal(later) || !s.Updated.After(later) {
				t.Fatalf("state after refresh and delete %+v %v", s, err)
			}
			if v, _ := st.Version(ctx); v != 5 {
				t.Fatalf("version %d, want 5", v)
			}
		})

		t.Run("Concurrent", func(t *testing.T) {
			ctx := t.Context()
			db := open(t)
			a, err := signatures.OpenSQLStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			b, err := signatures.OpenSQLStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			stores := []*signatures.SQLStore{a, b}
			// One name at once: one caller gets it, the others ErrExists.
			const n = 6
			storetest.OneWins(t, "puts of one anchor name", storetest.AtOnce(n, func(i int) error {
				_, err := stores[i%2].PutAnchor(ctx, signatures.StoredAnchor{Name: "same", Kind: "notation", Material: fmt.Sprint(i), Created: time.Now()})
				return err
			}), signatures.ErrExists)
			// Changes at once each get a version of their own: none is lost.
			versions := make([]int64, n)
			for _, err := range storetest.AtOnce(n, func(i int) error {
				var err error
				if i%2 == 0 {
					versions[i], err = stores[i%2].PutAnchor(ctx, signatures.StoredAnchor{Name: fmt.Sprint("a", i), Kind: "notation", Created: time.Now()})
				} else {
					versions[i], err = stores[i%2].SetPolicy(ctx, []byte(fmt.Sprint(i)), time.Now())
				}
				return err
			}) {
				if err != nil {
					t.Fatal(err)
				}
			}
			slices.Sort(versions)
			for i, v := range versions {
				if v != int64(i+2) {
					t.Fatalf("versions of concurrent changes %v, want 2..%d once each", versions, n+1)
				}
			}
			if s, err := a.Load(ctx); err != nil || s.Version != n+1 || len(s.Anchors) != 1+n/2 {
				t.Fatalf("state %d anchors at version %d (%v)", len(s.Anchors), s.Version, err)
			}
		})
	})
}
