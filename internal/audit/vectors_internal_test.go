package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
)

// docVectors reads the [section] key = value lines of the text block under "## Test
// vectors" in docs/audit.md.
func docVectors(t *testing.T) map[string]map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(raw, []byte("## Test vectors"))
	if !ok {
		t.Fatal("docs/audit.md has no Test vectors section")
	}
	_, block, _ := bytes.Cut(after, []byte("```text\n"))
	block, _, _ = bytes.Cut(block, []byte("```"))
	out := map[string]map[string]string{}
	var sec map[string]string
	sc := bufio.NewScanner(bytes.NewReader(block))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, "["):
			sec = map[string]string{}
			out[strings.Trim(line, "[]")] = sec
		default:
			k, v, ok := strings.Cut(line, " =")
			if !ok || sec == nil {
				t.Fatalf("vector line %q", line)
			}
			sec[k] = strings.TrimPrefix(v, " ")
		}
	}
	return out
}

func num(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func vectorRecord(t *testing.T, v map[string]string) Record {
	return Record{Seq: num(t, v["seq"]), Time: time.Unix(0, num(t, v["time_ns"])).UTC(), Component: v["component"],
		PrincipalID: v["principal_id"], PrincipalName: v["principal_name"], PrincipalKind: v["principal_kind"],
		ClientAddr: v["client_addr"], UserAgent: v["user_agent"], Operation: v["operation"], Target: v["target"],
		Resource: v["resource"], Algorithm: v["algorithm"], Result: v["result"], Detail: v["detail"],
		Duration: time.Duration(num(t, v["duration_us"])) * time.Microsecond, PrevHash: v["prev_hash"],
		Hash: v["hash"], Scheme: int(num(t, v["scheme"]))}
}

// TestDocVectors checks the test vectors of docs/audit.md against the implementation.
func TestDocVectors(t *testing.T) {
	vec := docVectors(t)
	root, err := hex.DecodeString(vec["key"]["root"])
	if err != nil {
		t.Fatal(err)
	}
	key, err := DeriveKey(root)
	if err != nil || hex.EncodeToString(key) != vec["key"]["audit_key"] {
		t.Fatalf("audit key %x (%v), doc says %s", key, err, vec["key"]["audit_key"])
	}
	for _, name := range []string{"record 1", "record 2", "unkeyed"} {
		v, ok := vec[name]
		if !ok {
			t.Fatalf("no [%s] vector", name)
		}
		r := vectorRecord(t, v)
		got := unkeyedHash(r)
		if r.Scheme == SchemeKeyed {
			got = keyedHash(key, r)
		}
		if got != r.Hash {
			t.Errorf("%s: hash %s, doc says %s", name, got, r.Hash)
		}
		if in, ok := v["input"]; ok {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(in))
			if hex.EncodeToString(m.Sum(nil)) != r.Hash {
				t.Errorf("%s: the doc's input does not MAC to its hash", name)
			}
			var b strings.Builder
			for _, f := range recordFields(keyedLabel, r) {
				b.WriteString(strconv.Itoa(len(f)) + ":" + f + ";")
			}
			if b.String() != in {
				t.Errorf("%s: input %q, doc says %q", name, b.String(), in)
			}
		}
	}
	if vec["record 2"]["prev_hash"] != vec["record 1"]["hash"] {
		t.Error("record 2 does not follow record 1")
	}
	h := vec["head"]
	head := Head{Seq: num(t, h["seq"]), Hash: h["hash"]}
	if got := headMAC(key, head, num(t, h["keyed_from"])); got != h["mac"] {
		t.Errorf("head mac %s, doc says %s", got, h["mac"])
	}
	c := vec["checkpoint"]
	cp := Checkpoint{Head: Head{Seq: num(t, c["seq"]), Hash: c["hash"]}, KeyedFrom: num(t, c["keyed_from"]), Time: time.Unix(0, num(t, c["time_ns"]))}
	if got := checkpointMAC(key, cp); got != c["mac"] {
		t.Errorf("checkpoint mac %s, doc says %s", got, c["mac"])
	}
	// The file format round-trips and is what the doc shows.
	file := filepath.Join(t.TempDir(), "cp")
	if err := writeCheckpoint(file, key, cp); err != nil {
		t.Fatal(err)
	}
	back, ok, err := readCheckpoint(file, key)
	if err != nil || !ok || back.Head != cp.Head || back.KeyedFrom != cp.KeyedFrom || !back.Time.Equal(cp.Time) {
		t.Fatalf("checkpoint round trip: %+v %v %v", back, ok, err)
	}
	raw, _ := os.ReadFile(file)
	for _, want := range []string{`"format": "coffer-audit-checkpoint-v1"`, `"time": "2026-01-01T00:00:02Z"`, `"mac": "` + c["mac"] + `"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("checkpoint file lacks %s:\n%s", want, raw)
		}
	}
}

// TestUnkeyedTrailContinuesKeyed: a trail written by the unkeyed scheme (before the key)
// still verifies up to the switch, continues keyed from a transition record, and refuses
// both an unkeyed rewrite of the old part and a downgrade of the new one.
// It runs on SQLite and on PostgreSQL: the upgrade's schema step and the search for where
// the keyed chain starts are storage code too.
func TestUnkeyedTrailContinuesKeyed(t *testing.T) {
	pgtest.Engines(t, func(t *testing.T, newDB pgtest.Open) { testUnkeyedTrailContinuesKeyed(t, newDB(t)) })
}

func testUnkeyedTrailContinuesKeyed(t *testing.T, db *store.DB) {
	ctx := context.Background()
	// The trail as the unkeyed code left it: schema step 1 and five scheme-1 records.
	if err := db.Migrate(ctx, "audit", migrations[:1]); err != nil {
		t.Fatal(err)
	}
	prev := ""
	for i := int64(1); i <= 5; i++ {
		r := Record{Seq: i, Time: time.Unix(0, 1767225600000000000+i).UTC(), Component: "vault", Operation: "KeyGet", Result: ResultSuccess, PrevHash: prev}
		r.Hash = unkeyedHash(r)
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_records (seq, time_ns, component, principal_id, principal_name,
			principal_kind, client_addr, user_agent, operation, target, resource, algorithm, result, detail, duration_us,
			prev_hash, hash) VALUES (?, ?, ?, '', '', '', '', '', ?, '', '', '', ?, '', 0, ?, ?)`,
			r.Seq, r.Time.UnixNano(), r.Component, r.Operation, r.Result, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
	}
	key, _ := DeriveKey(bytes.Repeat([]byte{7}, 32))
	cpFile := filepath.Join(t.TempDir(), "audit-checkpoint")
	l, err := Open(ctx, db, slog.New(slog.DiscardHandler), Options{Key: key, Checkpoint: cpFile})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Record(Record{Component: "vault", Operation: "KeyUnwrapKey", Result: ResultSuccess})
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.Verify(ctx, VerifyOptions{})
	if err != nil || !res.OK || res.Records != 7 || res.KeyedFrom != 6 || res.CheckpointSeq != 7 {
		t.Fatalf("legacy trail continued keyed: %+v %v", res, err)
	}
	recs, _ := l.List(ctx, Filter{AfterSeq: 5})
	if len(recs) != 2 || recs[0].Operation != transitionOperation || recs[0].Scheme != SchemeKeyed || recs[0].PrevHash != prev {
		t.Fatalf("transition record: %+v", recs)
	}
	// Reopening does not write another transition.
	l.Close()
	l, err = Open(ctx, db, slog.New(slog.DiscardHandler), Options{Key: key, Checkpoint: cpFile})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if res, _ := l.Verify(ctx, VerifyOptions{}); !res.OK || res.Records != 7 {
		t.Fatalf("after reopen: %+v", res)
	}

	rewrite := func(t *testing.T, from, to int64, setScheme bool) {
		t.Helper()
		recs, err := l.List(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		prev := ""
		for _, r := range recs {
			if r.Seq >= from && r.Seq <= to {
				r.PrevHash = prev
				if setScheme {
					r.Scheme = SchemeUnkeyed
				}
				if r.Seq == 2 {
					r.Result = ResultDenied
				}
				r.Hash = unkeyedHash(r)
				if _, err := db.ExecContext(ctx, `UPDATE audit_records SET result = ?, prev_hash = ?, hash = ?, scheme = ? WHERE seq = ?`,
					r.Result, r.PrevHash, r.Hash, r.Scheme, r.Seq); err != nil {
					t.Fatal(err)
				}
			}
			prev = r.Hash
		}
	}
	// Editing an unkeyed record and recomputing the unkeyed part breaks at the transition.
	rewrite(t, 2, 5, false)
	res, _ = l.Verify(ctx, VerifyOptions{})
	if res.OK || res.BrokenAt != 6 || !strings.Contains(res.Problem, "previous-hash link") {
		t.Fatalf("unkeyed part recomputed: %+v", res)
	}
	// Rewriting the whole trail unkeyed (a downgrade) breaks at the keyed-from point.
	rewrite(t, 1, 7, true)
	res, _ = l.Verify(ctx, VerifyOptions{})
	if res.OK || res.BrokenAt != 6 || !strings.Contains(res.Problem, "keyed from sequence 6") {
		t.Fatalf("downgraded: %+v", res)
	}
}
