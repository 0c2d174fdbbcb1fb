package cli_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditVerifyFindsACutTrail: against a real server, whoever edits the database
// deletes the tail of the trail and puts back an older high-water mark: verify finds it
// from the checkpoint the server keeps beside the root key, and --expect-head finds it
// too; a malformed --expect-head is refused.
func TestAuditVerifyFindsACutTrail(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)
	ctx := context.Background()

	mustVaultCLI[wire.Vault](t, "vault", "create", "team1", "--rbac")
	first := mustVaultCLI[wire.AuditVerifyResult](t, "vault", "audit", "verify")
	if !first.OK || first.KeyedFrom != 1 || first.CheckpointSeq != first.HeadSeq || first.HeadSeq == 0 {
		t.Fatalf("first verify: %+v", first)
	}
	out, err := vaultCLI(t, "vault", "audit", "verify")
	if err != nil || !strings.Contains(out, "keyed from sequence 1") || !strings.Contains(out, strconv.FormatInt(first.HeadSeq, 10)+":"+first.HeadHash) {
		t.Fatalf("verify text: %v\n%s", err, out)
	}
	db := storetest.SQLiteAt(t, filepath.Join(inst.DataDir, "metadata.db"))
	var seq, kf int64
	var hash, mac string
	if err := db.QueryRowContext(ctx, `SELECT seq, hash, keyed_from, mac FROM audit_head`).Scan(&seq, &hash, &kf, &mac); err != nil {
		t.Fatal(err)
	}
	mustVaultCLI[wire.Key](t, "vault", "key", "create", "team1", "kek")
	second := mustVaultCLI[wire.AuditVerifyResult](t, "vault", "audit", "verify", "--expect-head", strconv.FormatInt(first.HeadSeq, 10)+":"+first.HeadHash)
	if !second.OK || second.HeadSeq <= first.HeadSeq || second.CheckpointSeq != second.HeadSeq {
		t.Fatalf("second verify: %+v", second)
	}
	if _, err := vaultCLI(t, "vault", "audit", "verify", "--expect-head", "12"); err == nil || !strings.Contains(err.Error(), "SEQ:HASH") {
		t.Fatalf("malformed --expect-head: %v", err)
	}

	// Cut the trail back to the first head, with the high-water mark of that time.
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_records WHERE seq > ?`, seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_head SET seq = ?, hash = ?, keyed_from = ?, mac = ?`, seq, hash, kf, mac); err != nil {
		t.Fatal(err)
	}
	out, err = vaultCLI(t, "vault", "audit", "verify")
	if err == nil || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "checkpoint beside the root key") {
		t.Fatalf("verify of a cut trail: %v\n%s", err, out)
	}
	out, err = vaultCLI(t, "vault", "audit", "verify", "--expect-head", strconv.FormatInt(second.HeadSeq, 10)+":"+second.HeadHash)
	if err == nil || !strings.Contains(out, "before the") {
		t.Fatalf("verify --expect-head of a cut trail: %v\n%s", err, out)
	}
}
