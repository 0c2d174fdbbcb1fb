package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// errorLog records the messages logged at Error level: the audit log reports a refused
// write or a trail that ends before its checkpoint there.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (e *errorLog) Enabled(context.Context, slog.Level) bool { return true }
func (e *errorLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		e.mu.Lock()
		e.msgs = append(e.msgs, b.String())
		e.mu.Unlock()
	}
	return nil
}
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorLog) WithGroup(string) slog.Handler      { return e }

func (e *errorLog) errors() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.msgs...)
}

// TestChainAcrossReplicas: replicas sharing one metadata database (each its own store.DB
// pool, audit log and checkpoint file, as separate `coffer serve` processes have) append
// at once, and the trail stays one hash chain: every acknowledged record is in it exactly
// once, the sequence has no gap and no number twice, each record links to the one before,
// no append failed, and Verify passes on every replica against its own checkpoint, also
// after a restart. On PostgreSQL the chain stays whole by SERIALIZABLE alone, but the
// appends succeed because of the cross-replica chain lock: run once with the lock left
// out, 14 (and in a second run 4) of the 1,440 acknowledged appends failed with SQLSTATE
// 40001 after InTx's 20 attempts, and those records were not in the trail.
func TestChainAcrossReplicas(t *testing.T) {
	const replicas, writers, perWriter = 6, 4, 60
	run := func(t *testing.T, dbs []*store.DB) {
		ctx := context.Background()
		logs := &errorLog{}
		dir := t.TempDir()
		open := func(i int) *audit.Log {
			l, err := audit.Open(ctx, dbs[i], slog.New(logs), audit.Options{Key: testKey,
				Checkpoint: filepath.Join(dir, fmt.Sprintf("replica-%d", i), "audit-checkpoint")})
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
			return l
		}
		// The replicas start together on the fresh database (their migrations race too).
		ls := make([]*audit.Log, replicas)
		var wg sync.WaitGroup
		for i := range ls {
			wg.Go(func() { ls[i] = open(i) })
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()

		var mu sync.Mutex
		var failed []string
		for r := range ls {
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						rec := audit.Record{Component: "vault", PrincipalName: fmt.Sprintf("replica-%d", r), Operation: "KeySign",
							Target: fmt.Sprintf("r%d/w%d/%d", r, w, i), Result: audit.ResultSuccess}
						if i%4 == 3 {
							ls[r].Record(rec) // queued: joins another writer's batch
							continue
						}
						if err := ls[r].RecordSync(ctx, rec); err != nil {
							mu.Lock()
							failed = append(failed, fmt.Sprintf("%s: %v", rec.Target, err))
							mu.Unlock()
						}
					}
				})
			}
		}
		wg.Wait()
		for i, l := range ls {
			if err := l.Flush(ctx); err != nil {
				t.Errorf("replica %d: flush: %v", i, err)
			}
		}
		if len(failed) > 0 {
			t.Errorf("%d acknowledged appends failed, first: %s", len(failed), failed[0])
		}

		const total = replicas * writers * perWriter
		recs, err := ls[0].List(ctx, audit.Filter{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int64{}
		prev := ""
		for i, r := range recs {
			if r.Seq != int64(i+1) {
				t.Fatalf("record %d has sequence %d: a gap or a number used twice", i+1, r.Seq)
			}
			if r.PrevHash != prev {
				t.Fatalf("record %d does not link to record %d: the chain forked", r.Seq, r.Seq-1)
			}
			if at, dup := seen[r.Target]; dup {
				t.Fatalf("%s written twice (sequences %d and %d)", r.Target, at, r.Seq)
			}
			seen[r.Target], prev = r.Seq, r.Hash
		}
		if len(recs) != total {
			t.Errorf("%d records in the trail, want %d", len(recs), total)
		}
		for i, l := range ls {
			res, err := l.Verify(ctx, audit.VerifyOptions{})
			if err != nil || !res.OK || res.Records != total || res.HeadSeq != total {
				t.Errorf("replica %d: verify: %+v %v", i, res, err)
			}
		}

		// Restarted, each replica finds the trail at or past its own checkpoint (another
		// replica's appends never look like a removed tail) and continues the one chain.
		for _, l := range ls {
			l.Close()
		}
		for i := range ls {
			ls[i] = open(i)
			if err := ls[i].RecordSync(ctx, audit.Record{Component: "audit", Operation: "Restarted", Result: audit.ResultSuccess,
				Target: fmt.Sprintf("restart-%d", i)}); err != nil {
				t.Fatalf("replica %d after restart: %v", i, err)
			}
		}
		for i, l := range ls {
			res, err := l.Verify(ctx, audit.VerifyOptions{})
			if err != nil || !res.OK || res.Records != total+replicas || res.CheckpointSeq == 0 {
				t.Errorf("replica %d after restart: verify: %+v %v", i, res, err)
			}
		}
		if errs := logs.errors(); len(errs) > 0 {
			t.Errorf("%d errors logged, first: %s", len(errs), errs[0])
		}
	}

	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "metadata.db")
		dbs := make([]*store.DB, replicas)
		for i := range dbs {
			dbs[i] = storetest.SQLiteAt(t, path)
		}
		run(t, dbs)
	})
	t.Run("postgresql", func(t *testing.T) {
		srv := pgtest.Start(t)
		url := srv.URL(srv.NewDatabase(t))
		dbs := make([]*store.DB, replicas)
		for i := range dbs {
			db, err := store.OpenPostgres(t.Context(), url, store.PostgresOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			dbs[i] = db
		}
		run(t, dbs)
	})
}
