package keyring_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/cofferhq/coffer/internal/seal/keyring"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestStorage is the keyring's storage suite, on SQLite and on PostgreSQL: its tests of
// initialization, restart, rotation, generations and another replica's generation, and
// keyrings of several replicas on one database changing it at once.
func TestStorage(t *testing.T) {
	pgtest.Suite(t,
		pgtest.Case{Name: "InitializeAndRestart", Run: testInitializeAndRestart},
		pgtest.Case{Name: "RotationCostsTheSameWhateverTheData", Run: testRotationCostsTheSameWhateverTheData},
		pgtest.Case{Name: "AutomaticRotation", Run: testAutomaticRotation},
		pgtest.Case{Name: "EnableOnceAndStatus", Run: testEnableOnceAndStatus},
		pgtest.Case{Name: "Generations", Run: testGenerations},
		pgtest.Case{Name: "GenerationFromAnotherReplica", Run: testGenerationFromAnotherReplica},
		pgtest.Case{Name: "InitializeOnReplicas", Run: testInitializeOnReplicas},
		pgtest.Case{Name: "GenerationsOnReplicas", Run: testGenerationsOnReplicas},
		pgtest.Case{Name: "RotationBesideNewGeneration", Run: testRotationBesideNewGeneration},
	)
}

// testInitializeOnReplicas: replicas initializing one database at once: one does, the
// others are told it is initialized, and all use the one root key.
func testInitializeOnReplicas(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	const n = 4
	rings := make([]*keyring.Keyring, n)
	for i := range rings {
		rings[i] = e.open(t)
	}
	errs := storetest.AtOnce(n, func(i int) error {
		return rings[i].Initialize(ctx, keyring.SourcePlatform, platformVault+"/keys/registry", keyring.SystemIdentity)
	})
	storetest.OneWins(t, "initializations of one database", errs, keyring.ErrAlreadyInitialized)
	var first []byte
	for i, k := range rings {
		if err := k.CheckAccess(ctx); err != nil {
			t.Fatal(err)
		}
		gen, root, err := k.CurrentKey(ctx)
		if err != nil || gen != 1 {
			t.Fatalf("replica %d: generation %d %v", i, gen, err)
		}
		if first == nil {
			first = root
		} else if !bytes.Equal(root, first) {
			t.Fatalf("replica %d holds another root key", i)
		}
	}
}

// testGenerationsOnReplicas: new generations made on several replicas at once are each
// made once, numbered without gaps, and readable by every replica.
func testGenerationsOnReplicas(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	rings := []*keyring.Keyring{e.initPlatform(t), e.open(t), e.open(t)}
	for _, k := range rings[1:] {
		if err := k.CheckAccess(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const each = 2
	made := make(chan uint32, len(rings)*each)
	for _, err := range storetest.AtOnce(len(rings), func(i int) error {
		for range each {
			gen, err := rings[i].NewGeneration(ctx)
			if err != nil {
				return err
			}
			made <- gen
		}
		return nil
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(made)
	seen := map[uint32]bool{}
	for g := range made {
		if seen[g] {
			t.Fatalf("generation %d made twice", g)
		}
		seen[g] = true
	}
	top := uint32(1 + len(rings)*each)
	for g := uint32(2); g <= top; g++ {
		if !seen[g] {
			t.Fatalf("generations made %v: %d is missing", seen, g)
		}
	}
	for i, k := range rings {
		for g := uint32(1); g <= top; g++ {
			if _, err := k.Key(ctx, g); err != nil {
				t.Fatalf("replica %d cannot read generation %d: %v", i, g, err)
			}
		}
	}
	assertWrappedUnderCurrent(t, e)
}

// testRotationBesideNewGeneration: a KEK rotation on one replica while another adds a
// generation leaves every generation wrapped under the key the settings name (a
// generation wrapped under the old key would become unreadable once it is retired).
func testRotationBesideNewGeneration(t *testing.T, open pgtest.Open) {
	ctx := context.Background()
	e := newEnvOn(t, open(t))
	a, b := e.initPlatform(t), e.open(t)
	if err := b.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	targets := []struct{ key, identity string }{
		{customerVault + "/keys/cmk", "uami-1"},
		{platformVault + "/keys/registry", keyring.SystemIdentity},
	}
	for round := range 6 {
		to := targets[round%2]
		errs := storetest.AtOnce(2, func(i int) error {
			var err error
			if i == 0 {
				_, err = a.Rotate(ctx, to.key, to.identity)
			} else {
				_, err = b.NewGeneration(ctx)
			}
			return err
		})
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: rotate: %v; new generation: %v", round, errs[0], errs[1])
		}
		assertWrappedUnderCurrent(t, e)
	}
	// A replica starting now reads every generation through the current key alone.
	e.customer.SetEnabled("cmk", false) // the last round moved back to the platform key
	c := e.open(t)
	if err := c.CheckAccess(ctx); err != nil {
		t.Fatalf("a new replica cannot unwrap the root keys: %v", err)
	}
}

// assertWrappedUnderCurrent checks the stored keyring: every generation wrapped under
// the KEK version the settings name.
func assertWrappedUnderCurrent(t *testing.T, e *env) {
	t.Helper()
	var current string
	if err := e.db.QueryRow(`SELECT versioned_key_id FROM seal_settings WHERE id = 1`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Query(`SELECT generation, kek_kid FROM seal_root_keys ORDER BY generation`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var gen int64
		var kid string
		if err := rows.Scan(&gen, &kid); err != nil {
			t.Fatal(err)
		}
		if kid != current {
			t.Fatalf("generation %d is wrapped under %s, the settings name %s", gen, kid, current)
		}
	}
}
