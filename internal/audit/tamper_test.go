package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// unkeyedDigest is the unkeyed chain of docs/audit.md (scheme 1), which anyone holding the
// database can compute: the attacker's tool.
func unkeyedDigest(prev string, seq, timeNS int64, fields []string, durUS int64) string {
	h := sha256.New()
	all := append([]string{"coffer-audit-v1", prev, fmt.Sprint(seq), fmt.Sprint(timeNS)}, fields...)
	all = append(all, fmt.Sprint(durUS))
	for _, f := range all {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// recomputeUnkeyed rewrites prev_hash and hash of every record from seq on with the
// unkeyed chain, as an attacker who edited a record would to make the chain hold again.
func recomputeUnkeyed(t *testing.T, db *store.DB, from int64) {
	t.Helper()
	ctx := context.Background()
	type row struct {
		seq, ns, us int64
		f           []string
	}
	rows, err := db.QueryContext(ctx, `SELECT seq, time_ns, component, principal_id, principal_name, principal_kind,
		client_addr, user_agent, operation, target, resource, algorithm, result, detail, duration_us FROM audit_records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var all []row
	for rows.Next() {
		var r row
		r.f = make([]string, 12)
		dst := []any{&r.seq, &r.ns}
		for i := range r.f {
			dst = append(dst, &r.f[i])
		}
		dst = append(dst, &r.us)
		if err := rows.Scan(dst...); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	rows.Close()
	prev := ""
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		for _, r := range all {
			if r.seq < from {
				if err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_records WHERE seq = ?`, r.seq).Scan(&prev); err != nil {
					return err
				}
				continue
			}
			h := unkeyedDigest(prev, r.seq, r.ns, r.f, r.us)
			if _, err := tx.ExecContext(ctx, `UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?`, prev, h, r.seq); err != nil {
				return err
			}
			prev = h
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, l *audit.Log) audit.VerifyResult {
	t.Helper()
	res, err := l.Verify(context.Background(), audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestRecomputedChainAfterEditIsDetected: editing a record and recomputing the rest of the
// chain (which needs no secret in the unkeyed scheme) must not pass verify.
func testRecomputedChainAfterEditIsDetected(t *testing.T, newDB pgtest.Open) {
	l, db := open(t, newDB)
	fill(t, l, 10)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `UPDATE audit_records SET result = 'success', detail = '' WHERE seq = 4`); err != nil {
		t.Fatal(err)
	}
	recomputeUnkeyed(t, db, 4)
	if res := mustVerify(t, l); res.OK || res.BrokenAt != 4 {
		t.Fatalf("edited record 4 and recomputed the chain: %+v, want broken at 4", res)
	}
}

// TestDeletedTailIsDetected: removing the last records must not leave a chain that verifies.
func testDeletedTailIsDetected(t *testing.T, newDB pgtest.Open) {
	l, db := open(t, newDB)
	fill(t, l, 10)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_records WHERE seq > 8`); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, l); res.OK || res.BrokenAt != 9 {
		t.Fatalf("deleted records 9 and 10: %+v, want broken at 9", res)
	}
}

// TestSequenceNumberIsNeverReused: after the tail was deleted, the next record must not take
// a deleted record's sequence number (which would hide the deletion).
func testSequenceNumberIsNeverReused(t *testing.T, newDB pgtest.Open) {
	l, db := open(t, newDB)
	fill(t, l, 10)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_records WHERE seq > 8`); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordSync(ctx, audit.Record{Component: "vault", Operation: "KeyGet", Result: audit.ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	recs, err := l.List(ctx, audit.Filter{Operation: "KeyGet"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("%v %v", recs, err)
	}
	if recs[0].Seq != 11 {
		t.Errorf("the record after a deleted tail took sequence %d, want 11 (9 and 10 were used)", recs[0].Seq)
	}
	if res := mustVerify(t, l); res.OK || res.BrokenAt != 11 {
		t.Errorf("deleted tail then a new record: %+v, want broken at 11 (9 and 10 missing)", res)
	}
}

// openCP opens a trail with a checkpoint file in a temporary directory.
func openCP(t *testing.T, db *store.DB, cp string) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func exec(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

func wantBroken(t *testing.T, what string, res audit.VerifyResult, at int64, problem string) {
	t.Helper()
	if res.OK || res.BrokenAt != at || !strings.Contains(res.Problem, problem) {
		t.Errorf("%s: %+v, want broken at %d with %q", what, res, at, problem)
	}
}

// TestDeletedTailWithReplayedHeadIsFoundByTheCheckpoint: an attacker who deletes the tail
// and puts back the high-water mark of an earlier copy of the database leaves a chain that
// holds inside the database; the checkpoint beside the root key, and an expected head kept
// elsewhere, still find it. The next record does not reuse a deleted number, across a
// restart too.
func testDeletedTailWithReplayedHeadIsFoundByTheCheckpoint(t *testing.T, newDB pgtest.Open) {
	ctx := context.Background()
	db := newDB(t)
	cpFile := filepath.Join(t.TempDir(), "audit-checkpoint")
	l := openCP(t, db, cpFile)
	fill(t, l, 8)
	var seq, kf int64
	var hash, mac string
	if err := db.QueryRowContext(ctx, `SELECT seq, hash, keyed_from, mac FROM audit_head`).Scan(&seq, &hash, &kf, &mac); err != nil {
		t.Fatal(err)
	}
	fill(t, l, 2)
	res := mustVerify(t, l)
	if !res.OK || res.HeadSeq != 10 || res.CheckpointSeq != 10 || res.KeyedFrom != 1 {
		t.Fatalf("fresh chain: %+v", res)
	}
	head := audit.Head{Seq: res.HeadSeq, Hash: res.HeadHash}
	if st, err := os.Stat(cpFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint file: %v %v", st, err)
	}

	exec(t, db, `DELETE FROM audit_records WHERE seq > 8`)
	exec(t, db, `UPDATE audit_head SET seq = ?, hash = ?, keyed_from = ?, mac = ?`, seq, hash, kf, mac)
	wantBroken(t, "deleted tail, replayed head", mustVerify(t, l), 9, "before the checkpoint beside the root key at 10: records 9–10 were removed")

	// Without the checkpoint, the expected head finds it.
	bare, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if res := mustVerify(t, bare); !res.OK {
		t.Fatalf("without checkpoint or expected head the cut trail holds (the case the checkpoint is for): %+v", res)
	}
	res, err = bare.Verify(ctx, audit.VerifyOptions{ExpectHead: &head})
	if err != nil {
		t.Fatal(err)
	}
	wantBroken(t, "deleted tail, expected head", res, 9, "before the expected head at 10")
	other := audit.Head{Seq: 8, Hash: strings.Repeat("0", 64)}
	res, _ = bare.Verify(ctx, audit.VerifyOptions{ExpectHead: &other})
	wantBroken(t, "expected head that differs", res, 8, "record 8 is not the one the expected head names")
	bare.Close()

	// The next record follows the checkpoint, also after a restart.
	l.Close()
	l = openCP(t, db, cpFile)
	if err := l.RecordSync(ctx, audit.Record{Component: "vault", Operation: "KeyGet", Result: audit.ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	recs, _ := l.List(ctx, audit.Filter{Operation: "KeyGet"})
	if len(recs) != 1 || recs[0].Seq != 11 {
		t.Fatalf("record after the cut: %+v, want sequence 11", recs)
	}
	wantBroken(t, "after the next record", mustVerify(t, l), 11, "records 9–10 were removed")
}

// TestDowngradeToTheUnkeyedSchemeIsDetected: rewriting keyed records as unkeyed ones
// (which needs no key) is refused, whether the high-water mark is left, deleted or the
// checkpoint alone remembers where the keyed chain starts.
func testDowngradeToTheUnkeyedSchemeIsDetected(t *testing.T, newDB pgtest.Open) {
	for _, c := range []struct {
		name       string
		dropHead   bool
		checkpoint bool
		at         int64
		problem    string
	}{
		{"head kept", false, false, 4, "keyed from sequence 1"},
		{"head deleted", true, false, 4, "keyed from sequence 1"},
		{"head deleted, checkpoint", true, true, 4, "keyed from sequence 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := newDB(t)
			cp := ""
			if c.checkpoint {
				cp = filepath.Join(t.TempDir(), "audit-checkpoint")
			}
			l := openCP(t, db, cp)
			fill(t, l, 10)
			exec(t, db, `UPDATE audit_records SET scheme = 1, detail = 'rewritten' WHERE seq >= 4`)
			recomputeUnkeyed(t, db, 4)
			if c.dropHead {
				exec(t, db, `DELETE FROM audit_head`)
			}
			wantBroken(t, "downgraded", mustVerify(t, l), c.at, c.problem)
		})
	}
	// With every record downgraded and the head deleted, the checkpoint still knows.
	db := newDB(t)
	l := openCP(t, db, filepath.Join(t.TempDir(), "audit-checkpoint"))
	fill(t, l, 5)
	exec(t, db, `UPDATE audit_records SET scheme = 1`)
	recomputeUnkeyed(t, db, 1)
	exec(t, db, `DELETE FROM audit_head`)
	wantBroken(t, "whole chain downgraded", mustVerify(t, l), 1, "keyed from sequence 1")
}

// TestDeletedMiddleRecordIsDetected: a record removed from the middle, with the chain
// recomputed around the gap and the numbers closed up, does not verify.
func testDeletedMiddleRecordIsDetected(t *testing.T, newDB pgtest.Open) {
	l, db := open(t, newDB)
	fill(t, l, 10)
	exec(t, db, `DELETE FROM audit_records WHERE seq = 5`)
	wantBroken(t, "deleted record 5", mustVerify(t, l), 6, "records 5 were removed")
	exec(t, db, `UPDATE audit_records SET seq = seq - 1 WHERE seq > 5`)
	recomputeUnkeyed(t, db, 5)
	wantBroken(t, "closed up and recomputed", mustVerify(t, l), 5, "rewritten without the key")
}

// TestInsertedAndHeadTampering: a record appended behind Coffer's back, an edited or a
// deleted high-water mark, and a forged checkpoint are each reported.
func testInsertedAndHeadTampering(t *testing.T, newDB pgtest.Open) {
	ctx := context.Background()
	t.Run("appended record", func(t *testing.T) {
		l, db := open(t, newDB)
		fill(t, l, 3)
		exec(t, db, `INSERT INTO audit_records SELECT seq + 1, time_ns, component, principal_id, principal_name, principal_kind,
			client_addr, user_agent, operation, target, resource, algorithm, result, detail, duration_us, hash, hash, scheme
			FROM audit_records WHERE seq = 3`)
		wantBroken(t, "appended", mustVerify(t, l), 4, "")
	})
	t.Run("edited head", func(t *testing.T) {
		l, db := open(t, newDB)
		fill(t, l, 3)
		exec(t, db, `UPDATE audit_head SET seq = 2`)
		wantBroken(t, "edited head", mustVerify(t, l), 2, "does not verify")
	})
	t.Run("deleted head", func(t *testing.T) {
		l, db := open(t, newDB)
		fill(t, l, 3)
		exec(t, db, `DELETE FROM audit_head`)
		wantBroken(t, "deleted head", mustVerify(t, l), 3, "missing")
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		db := newDB(t)
		cp := filepath.Join(t.TempDir(), "audit-checkpoint")
		l := openCP(t, db, cp)
		fill(t, l, 3)
		raw, err := os.ReadFile(cp)
		if err != nil {
			t.Fatal(err)
		}
		forged := strings.Replace(string(raw), `"seq": 3`, `"seq": 2`, 1)
		if forged == string(raw) {
			t.Fatalf("checkpoint file: %s", raw)
		}
		if err := os.WriteFile(cp, []byte(forged), 0o600); err != nil {
			t.Fatal(err)
		}
		wantBroken(t, "forged checkpoint", mustVerify(t, l), 1, "checkpoint beside the root key does not verify")
		l.Close()
		if _, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: testKey, Checkpoint: cp}); err == nil ||
			!strings.Contains(err.Error(), "MAC does not verify") {
			t.Fatalf("open with a forged checkpoint: %v", err)
		}
	})
	t.Run("another key", func(t *testing.T) {
		l, db := open(t, newDB)
		fill(t, l, 3)
		l.Close()
		k2, _ := audit.DeriveKey(bytes.Repeat([]byte{8}, 32))
		l2, err := audit.Open(ctx, db, slog.New(slog.DiscardHandler), audit.Options{Key: k2})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		wantBroken(t, "verified under another root key", mustVerify(t, l2), 1, "rewritten without the key")
	})
}

func TestParseHead(t *testing.T) {
	good := "12:" + strings.Repeat("ab", 32)
	if h, err := audit.ParseHead(good); err != nil || h.Seq != 12 || h.String() != good {
		t.Fatalf("%v %v", h, err)
	}
	for _, bad := range []string{"", "12", ":" + strings.Repeat("ab", 32), "0:" + strings.Repeat("ab", 32), "x:ab",
		"12:" + strings.Repeat("AB", 32), "12:abc"} {
		if _, err := audit.ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

// TestCheckpointIsWrittenForAnExistingKeyedTrail: a server that gets a checkpoint file
// for the first time writes one at start, from the signed high-water mark.
func testCheckpointIsWrittenForAnExistingKeyedTrail(t *testing.T, newDB pgtest.Open) {
	db := newDB(t)
	l := openCP(t, db, "")
	fill(t, l, 3)
	l.Close()
	cp := filepath.Join(t.TempDir(), "audit-checkpoint")
	l = openCP(t, db, cp)
	res := mustVerify(t, l)
	if !res.OK || res.CheckpointSeq != 3 || res.KeyedFrom != 1 {
		t.Fatalf("%+v", res)
	}
}
