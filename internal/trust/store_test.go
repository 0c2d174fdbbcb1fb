package trust_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/trust"
)

// TestStorage is the trust part's storage suite, on SQLite and on PostgreSQL: every
// statement of its store (the metadata index, server-held keys, the changefeed, deletion,
// the policy) and writers at once, then the service's re-signing on read on each engine.
func TestStorage(t *testing.T) {
	pgtest.Suite(t,
		pgtest.Case{Name: "Index", Run: testIndex},
		pgtest.Case{Name: "KeysAndDeletion", Run: testKeysAndDeletion},
		pgtest.Case{Name: "Changefeed", Run: testChangefeed},
		pgtest.Case{Name: "Concurrent", Run: testConcurrentTrust},
		pgtest.Case{Name: "FrozenTimestampResignedOnRead", Run: testFrozenTimestampResignedOnRead},
	)
}

func openStore(t *testing.T, db *store.DB) trust.Store {
	t.Helper()
	st, err := trust.OpenStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func meta(gun, role string, version int, sha string) trust.MetaRow {
	return trust.MetaRow{GUN: gun, Repo: "team/app", Role: role, Version: version, SHA256: sha, Length: int64(100 + version), Created: int64(1_800_000_000 + version)}
}

func testIndex(t *testing.T, open pgtest.Open) {
	ctx := t.Context()
	st := openStore(t, open(t))
	const gun = "registry.test/team/app"
	if _, err := st.Current(ctx, gun, "root"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("current of nothing: %v", err)
	}
	if err := st.Commit(ctx, []trust.MetaRow{meta(gun, "root", 1, "r1"), meta(gun, "timestamp", 1, "t1")},
		trust.Change{GUN: gun, Version: 1, SHA256: "t1", Category: "update", Created: 1}); err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= 3; v++ {
		if err := st.Commit(ctx, []trust.MetaRow{meta(gun, "timestamp", v, fmt.Sprint("t", v))},
			trust.Change{GUN: gun, Version: v, SHA256: fmt.Sprint("t", v), Category: "update"}); err != nil {
			t.Fatal(err)
		}
	}
	// The same checksum again at a later version (a re-signed timestamp may repeat one).
	if err := st.Commit(ctx, []trust.MetaRow{meta(gun, "timestamp", 4, "t2")}, trust.Change{GUN: gun, Version: 4, Category: "update"}); err != nil {
		t.Fatal(err)
	}
	cur, err := st.Current(ctx, gun, "timestamp")
	if err != nil || cur != meta(gun, "timestamp", 4, "t2") {
		t.Fatalf("current %+v %v", cur, err)
	}
	if m, err := st.ByChecksum(ctx, gun, "timestamp", "t2"); err != nil || m.Version != 4 {
		t.Fatalf("by checksum: %+v %v, want the newest version with it", m, err)
	}
	if m, err := st.ByVersion(ctx, gun, "timestamp", 3); err != nil || m.SHA256 != "t3" {
		t.Fatalf("by version: %+v %v", m, err)
	}
	if _, err := st.ByVersion(ctx, gun, "timestamp", 9); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	if _, err := st.ByChecksum(ctx, gun, "root", "t2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("checksum of another role: %v", err)
	}
	// Not above the stored version: refused, and nothing of the update is kept.
	for _, v := range []int{4, 2} {
		err := st.Commit(ctx, []trust.MetaRow{meta(gun, "root", 2, "r2"), meta(gun, "timestamp", v, "old")}, trust.Change{GUN: gun, Category: "update"})
		if !errors.Is(err, trust.ErrOldVersion) {
			t.Fatalf("timestamp version %d after 4: %v", v, err)
		}
	}
	if r, _ := st.Current(ctx, gun, "root"); r.Version != 1 {
		t.Fatalf("a refused update left root version %d", r.Version)
	}
	// The policy: disabled until set; set, then changed.
	if s, err := st.Status(ctx); err != nil || s != trust.StatusDisabled {
		t.Fatalf("fresh status %q %v", s, err)
	}
	for _, s := range []string{trust.StatusEnabled, trust.StatusDisabled, trust.StatusEnabled} {
		if err := st.SetStatus(ctx, s, 5); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Status(ctx); err != nil || got != s {
			t.Fatalf("status %q %v, want %q", got, err, s)
		}
	}
}

func testKeysAndDeletion(t *testing.T, open pgtest.Open) {
	ctx := t.Context()
	st := openStore(t, open(t))
	guns := []string{"registry.test/team/app", "registry.test/team/app-other", "registry.test/other/x"}
	repos := []string{"team/app", "team/app", "other/x"}
	for i, gun := range guns {
		for _, role := range []string{"timestamp", "snapshot"} {
			if err := st.AddKey(ctx, trust.KeyRow{GUN: gun, Repo: repos[i], Role: role, KeyID: gun + "-" + role,
				VaultKey: "trust-" + role, Public: `{"keytype":"ecdsa"}`, Created: 7}); err != nil {
				t.Fatal(err)
			}
		}
		// A second timestamp key (the key id differs).
		if err := st.AddKey(ctx, trust.KeyRow{GUN: gun, Repo: repos[i], Role: "timestamp", KeyID: gun + "-ts2", VaultKey: "trust-ts2", Public: "{}"}); err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(ctx, []trust.MetaRow{{GUN: gun, Repo: repos[i], Role: "root", Version: 1, SHA256: "r" + fmt.Sprint(i)}},
			trust.Change{GUN: gun, Version: 1, Category: "update"}); err != nil {
			t.Fatal(err)
		}
	}
	// The same key id twice in a GUN is refused.
	if err := st.AddKey(ctx, trust.KeyRow{GUN: guns[0], Repo: repos[0], Role: "timestamp", KeyID: guns[0] + "-ts2", Public: "{}"}); err == nil {
		t.Fatal("a key id added twice to one GUN")
	}
	ks, err := st.Keys(ctx, guns[0], "timestamp")
	if err != nil || len(ks) != 2 || ks[0].KeyID != guns[0]+"-ts2" || ks[0].Seq <= ks[1].Seq {
		t.Fatalf("timestamp keys %+v %v: want the newest first", ks, err)
	}
	if k, err := st.Key(ctx, guns[0], ks[1].KeyID); err != nil || k != ks[1] {
		t.Fatalf("key by id: %+v %v", k, err)
	}
	if _, err := st.Key(ctx, guns[1], ks[1].KeyID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a key of another GUN: %v", err)
	}

	// By GUN: that GUN's rows only, with a deletion record.
	keys, metas, err := st.DeleteGUNs(ctx, guns[1], "", trust.Change{Category: "deletion", Created: 9})
	if err != nil || len(keys) != 3 || len(metas) != 1 || metas[0].GUN != guns[1] {
		t.Fatalf("delete one GUN: %d keys, %+v, %v", len(keys), metas, err)
	}
	if ks, _ := st.Keys(ctx, guns[0], "snapshot"); len(ks) != 1 {
		t.Fatal("deleting one GUN removed another's keys")
	}
	// By repository: every GUN of it.
	keys, metas, err = st.DeleteGUNs(ctx, "", "team/app", trust.Change{Category: "deletion", Created: 10})
	if err != nil || len(keys) != 3 || len(metas) != 1 || metas[0].GUN != guns[0] {
		t.Fatalf("delete a repository: %d keys, %+v, %v", len(keys), metas, err)
	}
	if _, err := st.Current(ctx, guns[0], "root"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("root after the deletion: %v", err)
	}
	cs, err := st.Changes(ctx, "", 0, 100, false)
	if err != nil || len(cs) != 5 || cs[3].Category != "deletion" || cs[3].GUN != guns[1] || cs[4].GUN != guns[0] {
		t.Fatalf("changes %+v %v", cs, err)
	}
	// Everything.
	st.SetStatus(ctx, trust.StatusEnabled, 1)
	keys, metas, err = st.DeleteAll(ctx)
	if err != nil || len(keys) != 3 || len(metas) != 1 || metas[0].GUN != guns[2] {
		t.Fatalf("delete all: %d keys, %+v, %v", len(keys), metas, err)
	}
	if cs, _ := st.Changes(ctx, "", 0, 100, false); len(cs) != 0 {
		t.Fatalf("%d changes after deleting all", len(cs))
	}
	if s, _ := st.Status(ctx); s != trust.StatusEnabled {
		t.Fatalf("deleting all changed the policy to %q", s)
	}
}

func testChangefeed(t *testing.T, open pgtest.Open) {
	ctx := t.Context()
	st := openStore(t, open(t))
	for i := 1; i <= 7; i++ {
		gun := "registry.test/a"
		if i%2 == 0 {
			gun = "registry.test/b"
		}
		if err := st.Commit(ctx, []trust.MetaRow{meta(gun, "timestamp", i, fmt.Sprint("s", i))},
			trust.Change{GUN: gun, Version: i, SHA256: fmt.Sprint("s", i), Category: "update", Created: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	versions := func(cs []trust.Change) []int {
		var out []int
		for _, c := range cs {
			out = append(out, c.Version)
		}
		return out
	}
	page, err := st.Changes(ctx, "", 0, 3, false)
	if err != nil || !slices.Equal(versions(page), []int{1, 2, 3}) {
		t.Fatalf("first page %v %v", versions(page), err)
	}
	next, _ := st.Changes(ctx, "", page[2].ID, 3, false)
	if !slices.Equal(versions(next), []int{4, 5, 6}) {
		t.Fatalf("second page %v", versions(next))
	}
	back, _ := st.Changes(ctx, "", next[2].ID, 2, true)
	if !slices.Equal(versions(back), []int{5, 4}) {
		t.Fatalf("backwards from 6: %v", versions(back))
	}
	only, _ := st.Changes(ctx, "registry.test/a", 0, 10, false)
	if !slices.Equal(versions(only), []int{1, 3, 5, 7}) {
		t.Fatalf("one GUN's changes %v", versions(only))
	}
	if only[0].Created != 1 || only[0].SHA256 != "s1" || only[0].Category != "update" {
		t.Fatalf("change read back as %+v", only[0])
	}
}

// testConcurrentTrust: writers at once (replicas without the GUN lock, or on different
// GUNs): one of several commits of one version wins, every change record gets an id of its
// own, every key of a GUN a sequence number of its own, and a first policy set at once
// succeeds everywhere.
func testConcurrentTrust(t *testing.T, open pgtest.Open) {
	ctx := t.Context()
	db := open(t)
	stores := []trust.Store{openStore(t, db), openStore(t, db)}
	const n = 6
	run := func(f func(i int) error) []error { return storetest.AtOnce(n, f) }
	const gun = "registry.test/team/app"
	storetest.OneWins(t, "commits of one version", run(func(i int) error {
		return stores[i%2].Commit(ctx, []trust.MetaRow{meta(gun, "timestamp", 1, fmt.Sprint("c", i))}, trust.Change{GUN: gun, Version: 1, Category: "update"})
	}), trust.ErrOldVersion)
	for _, err := range run(func(i int) error {
		g := fmt.Sprint("registry.test/g", i)
		return stores[i%2].Commit(ctx, []trust.MetaRow{meta(g, "timestamp", 1, "x")}, trust.Change{GUN: g, Version: 1, Category: "update"})
	}) {
		if err != nil {
			t.Errorf("commits to different GUNs at once: %v", err)
		}
	}
	cs, err := stores[0].Changes(ctx, "", 0, 100, false)
	if err != nil || len(cs) != n+1 {
		t.Fatalf("%d change records for %d commits (%v)", len(cs), n+1, err)
	}
	for _, err := range run(func(i int) error {
		return stores[i%2].AddKey(ctx, trust.KeyRow{GUN: gun, Repo: "team/app", Role: "timestamp", KeyID: fmt.Sprint("k", i), Public: "{}"})
	}) {
		if err != nil {
			t.Errorf("keys added to one GUN at once: %v", err)
		}
	}
	ks, _ := stores[0].Keys(ctx, gun, "timestamp")
	seqs := map[int64]bool{}
	for _, k := range ks {
		seqs[k.Seq] = true
	}
	if len(ks) != n || len(seqs) != n {
		t.Fatalf("%d keys with %d distinct sequence numbers, want %d", len(ks), len(seqs), n)
	}
	for _, err := range run(func(i int) error { return stores[i%2].SetStatus(ctx, trust.StatusEnabled, int64(i)) }) {
		if err != nil {
			t.Errorf("the first policy set at once: %v", err)
		}
	}
	if s, _ := stores[1].Status(ctx); s != trust.StatusEnabled {
		t.Fatalf("status %q", s)
	}
}
