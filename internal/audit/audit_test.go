package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// testKey is the audit key of the tests: the key of a root key of 32 bytes 0x07.
var testKey = func() []byte {
	k, err := audit.DeriveKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

func open(t *testing.T, newDB pgtest.Open) (*audit.Log, *store.DB) {
	t.Helper()
	ctx := context.Background()
	db := newDB(t)
	l, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, db
}

// TestStorage runs the audit trail's storage tests (every statement of the package: appends,
// the head, list filters, verify, and the tampering the tests do with SQL of their own) on
// SQLite and on PostgreSQL.
func TestStorage(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, newDB pgtest.Open) {
		for _, c := range []struct {
			name string
			test func(*testing.T, pgtest.Open)
		}{
			{"ChainDetectsTampering", testChainDetectsTampering},
			{"ListFilters", testListFilters},
			{"RecordSyncAndReopen", testRecordSyncAndReopen},
			{"RecomputedChainAfterEditIsDetected", testRecomputedChainAfterEditIsDetected},
			{"DeletedTailIsDetected", testDeletedTailIsDetected},
			{"SequenceNumberIsNeverReused", testSequenceNumberIsNeverReused},
			{"DeletedTailWithReplayedHeadIsFoundByTheCheckpoint", testDeletedTailWithReplayedHeadIsFoundByTheCheckpoint},
			{"DowngradeToTheUnkeyedSchemeIsDetected", testDowngradeToTheUnkeyedSchemeIsDetected},
			{"DeletedMiddleRecordIsDetected", testDeletedMiddleRecordIsDetected},
			{"InsertedAndHeadTampering", testInsertedAndHeadTampering},
			{"CheckpointIsWrittenForAnExistingKeyedTrail", testCheckpointIsWrittenForAnExistingKeyedTrail},
		} {
			t.Run(c.name, func(t *testing.T) { c.test(t, newDB) })
		}
	})
}

// sqlite opens SQLite stores, for the tests that run on SQLite alone.
func sqlite(t testing.TB) *store.DB { return storetest.SQLite(t) }

func fill(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		res := audit.ResultSuccess
		if i%3 == 0 {
			res = audit.ResultDenied
		}
		l.Record(audit.Record{Component: "vault", PrincipalID: fmt.Sprintf("p%d", i%2), PrincipalName: "app", ClientAddr: "127.0.0.1",
			UserAgent: "test", Operation: "KeyWrapKey", Target: fmt.Sprintf("https://v/keys/k%d/abc", i%4), Resource: fmt.Sprintf("vaults/v/keys/k%d", i%4), Algorithm: "RSA-OAEP",
			Result: res, Duration: time.Millisecond})
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func testChainDetectsTampering(t *testing.T, newDB pgtest.Open) {
	cases := []struct {
		name  string
		sql   string
		at    int64
		fixOK bool
	}{
		{"edited result", `UPDATE audit_records SET result = 'success' WHERE seq = 4`, 4, false},
		{"edited principal", `UPDATE audit_records SET principal_id = 'someone' WHERE seq = 7`, 7, false},
		{"edited time", `UPDATE audit_records SET time_ns = time_ns + 1 WHERE seq = 2`, 2, false},
		{"removed record", `DELETE FROM audit_records WHERE seq = 5`, 6, false},
		{"rehashed record", `UPDATE audit_records SET detail = 'x', hash = 'ffff' WHERE seq = 3`, 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, db := open(t, newDB)
			fill(t, l, 10)
			ctx := context.Background()
			res, err := l.Verify(ctx, audit.VerifyOptions{})
			if err != nil || !res.OK || res.Records != 10 || res.HeadSeq != 10 {
				t.Fatalf("fresh chain: %+v %v", res, err)
			}
			if _, err := db.ExecContext(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			res, err = l.Verify(ctx, audit.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.BrokenAt != c.at || res.Problem == "" {
				t.Fatalf("after tampering: %+v, want broken at %d", res, c.at)
			}
		})
	}
}

func testListFilters(t *testing.T, newDB pgtest.Open) {
	l, _ := open(t, newDB)
	fill(t, l, 12)
	ctx := context.Background()
	cases := []struct {
		f    audit.Filter
		want int
	}{
		{audit.Filter{}, 12},
		{audit.Filter{Component: "vault"}, 12},
		{audit.Filter{Component: "registry"}, 0},
		{audit.Filter{Result: audit.ResultDenied}, 4},
		{audit.Filter{Principal: "p1"}, 6},
		{audit.Filter{Principal: "app"}, 12},
		{audit.Filter{Target: "/keys/k1/"}, 3},
		{audit.Filter{Resource: "vaults/v"}, 12},
		{audit.Filter{Resource: "vaults/v/keys/k2"}, 3},
		{audit.Filter{Resource: "vaults/v/keys/k"}, 0},
		{audit.Filter{Since: time.Now().Add(time.Hour)}, 0},
		{audit.Filter{Until: time.Now().Add(time.Hour), Limit: 5}, 5},
		{audit.Filter{AfterSeq: 10}, 2},
	}
	for i, c := range cases {
		got, err := l.List(ctx, c.f)
		if err != nil || len(got) != c.want {
			t.Errorf("case %d: %d records (%v), want %d", i, len(got), err, c.want)
		}
	}
	recs, _ := l.List(ctx, audit.Filter{Limit: 2})
	if recs[1].PrevHash != recs[0].Hash || recs[0].Seq != 1 {
		t.Fatalf("records are not chained: %+v", recs)
	}
}

func testRecordSyncAndReopen(t *testing.T, newDB pgtest.Open) {
	ctx := context.Background()
	db := newDB(t)
	for round := 0; round < 2; round++ {
		l, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.RecordSync(ctx, audit.Record{Component: "vault", Operation: "VaultCreate", Result: audit.ResultSuccess}); err != nil {
			t.Fatal(err)
		}
		l.Record(audit.Record{Component: "vault", Operation: "KeyGet", Result: audit.ResultSuccess})
		l.Close() // writes what is queued
	}
	l, _ := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey})
	defer l.Close()
	res, err := l.Verify(ctx, audit.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 4 {
		t.Fatalf("chain across restarts: %+v %v", res, err)
	}
}

// TestRetryAfterStoreFailure: records queued while the store refuses writes are kept and
// written once it accepts them again. It runs in a synctest bubble, so the writer's
// back-off after the failed write passes in virtual time.
func TestRetryAfterStoreFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, db := open(t, sqlite)
		ctx := context.Background()
		fill(t, l, 2)
		if _, err := db.ExecContext(ctx, `ALTER TABLE audit_records RENAME TO audit_records_away`); err != nil {
			t.Fatal(err)
		}
		l.Record(audit.Record{Component: "vault", Operation: "KeyUnwrapKey", Result: audit.ResultSuccess})
		if err := l.Flush(ctx); err == nil {
			t.Fatal("flush succeeded while the table was away")
		}
		if _, err := db.ExecContext(ctx, `ALTER TABLE audit_records_away RENAME TO audit_records`); err != nil {
			t.Fatal(err)
		}
		// The flush waits for the writer's retry, after its back-off.
		if err := l.Flush(ctx); err != nil {
			t.Fatalf("flush once the store accepts writes again: %v", err)
		}
		recs, _ := l.List(ctx, audit.Filter{Operation: "KeyUnwrapKey"})
		if len(recs) != 1 {
			t.Fatal("the record queued during the failure was never written")
		}
		if res, err := l.Verify(ctx, audit.VerifyOptions{}); err != nil || !res.OK || res.Records != 3 {
			t.Fatalf("chain: %+v %v", res, err)
		}
	})
}
