package audit_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
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
	res, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestRecomputedChainAfterEditIsDetected: editing a record and recomputing the rest of the
// chain (which needs no secret in the unkeyed scheme) must not pass verify.
func TestRecomputedChainAfterEditIsDetected(t *testing.T) {
	l, db := open(t)
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
func TestDeletedTailIsDetected(t *testing.T) {
	l, db := open(t)
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
func TestSequenceNumberIsNeverReused(t *testing.T) {
	l, db := open(t)
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
	if res := mustVerify(t, l); res.OK || res.BrokenAt != 9 {
		t.Errorf("deleted tail then a new record: %+v, want broken at 9", res)
	}
}
