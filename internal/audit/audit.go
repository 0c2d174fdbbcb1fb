// Package audit keeps Coffer's audit trail: an append-only list of records, each chained
// to the one before by a SHA-256 hash, so that an edited, inserted, reordered or removed
// record breaks the chain and Verify finds it. Any part may record; the vault records every
// key operation and every change to a vault, key, policy or network rule.
//
// Records are written by one goroutine in batches (group commit): Record queues a record
// and returns, RecordSync waits until the batch that holds it has committed. Close writes
// what is queued.
package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Results.
const (
	ResultSuccess = "success"
	ResultDenied  = "denied"
	ResultFailure = "failure"
)

// Record is one audited event.
type Record struct {
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	Component     string    `json:"component"`
	PrincipalID   string    `json:"principalId,omitempty"`
	PrincipalName string    `json:"principalName,omitempty"`
	PrincipalKind string    `json:"principalKind,omitempty"`
	ClientAddr    string    `json:"clientAddress,omitempty"`
	UserAgent     string    `json:"userAgent,omitempty"`
	Operation     string    `json:"operation"`
	// Target is what the operation applied to: a key id with its version, a vault name...
	Target string `json:"target,omitempty"`
	// Resource is the target's path in Coffer's resource tree (vaults/V/keys/K); filters
	// match on it.
	Resource  string `json:"resource,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	// Result is success, denied or failure; Detail says why for the last two.
	Result   string        `json:"result"`
	Detail   string        `json:"detail,omitempty"`
	Duration time.Duration `json:"durationMicros"`
	PrevHash string        `json:"prevHash"`
	Hash     string        `json:"hash"`
}

// MarshalJSON writes the duration in microseconds.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	return json.Marshal(struct {
		plain
		Duration int64 `json:"durationMicros"`
	}{plain(r), r.Duration.Microseconds()})
}

// UnmarshalJSON reads the duration in microseconds.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	var v struct {
		plain
		Duration int64 `json:"durationMicros"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Record(v.plain)
	r.Duration = time.Duration(v.Duration) * time.Microsecond
	return nil
}

// digest is the hash of a record: SHA-256 over the previous hash and the record's fields in
// a fixed order, each length-prefixed so no two field lists encode the same.
func digest(r Record) string {
	h := sha256.New()
	fields := []string{
		"coffer-audit-v1", r.PrevHash, fmt.Sprint(r.Seq), fmt.Sprint(r.Time.UnixNano()), r.Component,
		r.PrincipalID, r.PrincipalName, r.PrincipalKind, r.ClientAddr, r.UserAgent, r.Operation,
		r.Target, r.Resource, r.Algorithm, r.Result, r.Detail, fmt.Sprint(r.Duration.Microseconds()),
	}
	for _, f := range fields {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// groupCommitWindow is how long the writer waits for more records before committing a
// batch that nobody waits for.
const groupCommitWindow = 5 * time.Millisecond

type queued struct {
	rec  Record
	done chan error
}

// maxPending bounds the records waiting for the writer; beyond it Record waits.
const maxPending = 100000

// Log is the audit trail.
type Log struct {
	db  *store.DB
	log *slog.Logger

	mu      sync.Mutex
	pending []queued
	closed  bool
	// wake tells the writer there is work (one signal per batch, not per record).
	wake chan struct{}
	// room is signalled when the writer takes the pending records.
	room chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var migrations = []string{`
CREATE TABLE audit_records (
	seq INTEGER PRIMARY KEY,
	time_ns INTEGER NOT NULL,
	component TEXT NOT NULL,
	principal_id TEXT NOT NULL,
	principal_name TEXT NOT NULL,
	principal_kind TEXT NOT NULL,
	client_addr TEXT NOT NULL,
	user_agent TEXT NOT NULL,
	operation TEXT NOT NULL,
	target TEXT NOT NULL,
	resource TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	result TEXT NOT NULL,
	detail TEXT NOT NULL,
	duration_us INTEGER NOT NULL,
	prev_hash TEXT NOT NULL,
	hash TEXT NOT NULL
);
CREATE INDEX audit_records_time ON audit_records (time_ns);
CREATE INDEX audit_records_resource ON audit_records (resource)`,
}

// Open prepares the audit tables and starts the writer. Close stops it.
func Open(ctx context.Context, db *store.DB, log *slog.Logger) (*Log, error) {
	if err := db.Migrate(ctx, "audit", migrations); err != nil {
		return nil, err
	}
	l := &Log{db: db, log: log, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), stop: make(chan struct{})}
	l.wg.Add(1)
	go l.writer()
	return l, nil
}

// enqueue adds q for the writer. It reports false once the log is closed.
func (l *Log) enqueue(ctx context.Context, q queued) bool {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return false
		}
		if len(l.pending) < maxPending {
			l.pending = append(l.pending, q)
			first := len(l.pending) == 1
			l.mu.Unlock()
			if first || q.done != nil {
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
			return true
		}
		l.mu.Unlock()
		select {
		case <-l.room:
		case <-ctx.Done():
			return false
		case <-l.stop:
		}
	}
}

// Record queues r; it is written within milliseconds. Time defaults to now.
func (l *Log) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if !l.enqueue(context.Background(), queued{rec: r}) {
		l.log.Error("audit record after close: dropped", "operation", r.Operation, "target", r.Target)
	}
}

// RecordSync writes r and waits until it is committed.
func (l *Log) RecordSync(ctx context.Context, r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	return l.wait(ctx, queued{rec: r, done: make(chan error, 1)})
}

// Flush waits until every record queued before it is committed.
func (l *Log) Flush(ctx context.Context) error {
	return l.wait(ctx, queued{done: make(chan error, 1)})
}

func (l *Log) wait(ctx context.Context, q queued) error {
	if !l.enqueue(ctx, q) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("audit log is closed")
	}
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the writer.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
	})
	l.wg.Wait()
	return nil
}

// take removes and returns the pending records.
func (l *Log) take() ([]queued, bool) {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	waiter := false
	for _, q := range batch {
		waiter = waiter || q.done != nil
	}
	l.mu.Unlock()
	select {
	case l.room <- struct{}{}:
	default:
	}
	return batch, waiter
}

func (l *Log) hasWaiter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.pending {
		if q.done != nil {
			return true
		}
	}
	return false
}

func (l *Log) writer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			if batch, _ := l.take(); len(batch) > 0 {
				l.commit(batch)
			}
			if left, _ := l.take(); len(left) > 0 {
				l.log.Error("audit records lost at shutdown: the store refused them", "records", len(left))
			}
			return
		}
		// Group commit: let records gather for a few milliseconds (unless someone waits
		// for them), so a busy vault writes one transaction for many records.
		if !l.hasWaiter() {
			t := time.NewTimer(groupCommitWindow)
			select {
			case <-t.C:
			case <-l.wake: // a waiter arrived
			case <-l.stop:
			}
			t.Stop()
		}
		if batch, _ := l.take(); len(batch) > 0 {
			l.commit(batch)
		}
	}
}

func (l *Log) commit(batch []queued) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.db.InTx(ctx, func(tx *sql.Tx) error {
		// Read the chain's head inside the write transaction, which excludes every other
		// writer (other processes sharing the database included).
		var seq sql.NullInt64
		var hash sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		prevSeq, prevHash := seq.Int64, hash.String
		for i := range batch {
			if batch[i].done != nil && batch[i].rec.Operation == "" {
				continue // a flush marker
			}
			r := &batch[i].rec
			r.Seq = prevSeq + 1
			r.Time = r.Time.UTC()
			r.PrevHash = prevHash
			r.Hash = digest(*r)
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_records (seq, time_ns, component, principal_id,
				principal_name, principal_kind, client_addr, user_agent, operation, target, resource, algorithm, result,
				detail, duration_us, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				r.Seq, r.Time.UnixNano(), r.Component, r.PrincipalID, r.PrincipalName, r.PrincipalKind,
				r.ClientAddr, r.UserAgent, r.Operation, r.Target, r.Resource, r.Algorithm, r.Result, r.Detail,
				r.Duration.Microseconds(), r.PrevHash, r.Hash); err != nil {
				return err
			}
			prevSeq, prevHash = r.Seq, r.Hash
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("write audit records: %w", err)
		l.log.Error("audit write failed; queued records are kept and retried", "err", err, "records", len(batch))
	}
	var retry []queued
	for _, q := range batch {
		switch {
		case q.done != nil:
			q.done <- err // the waiter learns of the failure
		case err != nil && q.rec.Operation != "":
			retry = append(retry, q)
		}
	}
	if len(retry) > 0 {
		// Put records nobody waits for back in front of the queue: an audit record is
		// never dropped because the store failed once.
		l.mu.Lock()
		l.pending = append(retry, l.pending...)
		l.mu.Unlock()
		select {
		case <-time.After(time.Second):
		case <-l.stop:
		}
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Filter selects records. Zero fields match everything.
type Filter struct {
	Component string
	// Target matches records whose target contains it (a key id, part of one).
	Target string
	// Resource matches records whose resource is it or below it (vaults/team1 matches
	// the vault and its keys).
	Resource  string
	Principal string // principal id or name
	Operation string
	Result    string
	Since     time.Time
	Until     time.Time
	AfterSeq  int64
	Limit     int
}

// List returns records matching f in sequence order.
func (l *Log) List(ctx context.Context, f Filter) ([]Record, error) {
	var where []string
	var args []any
	if f.Component != "" {
		where, args = append(where, "component = ?"), append(args, f.Component)
	}
	if f.Target != "" {
		where, args = append(where, "instr(target, ?) > 0"), append(args, f.Target)
	}
	if f.Resource != "" {
		where, args = append(where, "(resource = ? OR substr(resource, 1, ?) = ?)"), append(args, f.Resource, len(f.Resource)+1, f.Resource+"/")
	}
	if f.Principal != "" {
		where, args = append(where, "(principal_id = ? OR principal_name = ?)"), append(args, f.Principal, f.Principal)
	}
	if f.Operation != "" {
		where, args = append(where, "operation = ?"), append(args, f.Operation)
	}
	if f.Result != "" {
		where, args = append(where, "result = ?"), append(args, f.Result)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "time_ns >= ?"), append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "time_ns < ?"), append(args, f.Until.UnixNano())
	}
	if f.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, f.AfterSeq)
	}
	q := `SELECT seq, time_ns, component, principal_id, principal_name, principal_kind, client_addr, user_agent,
		operation, target, resource, algorithm, result, detail, duration_us, prev_hash, hash FROM audit_records`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	limit := f.Limit
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	q += fmt.Sprintf(" LIMIT %d", limit)
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit records: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func scan(rows *sql.Rows) (Record, error) {
	var r Record
	var ns, us int64
	if err := rows.Scan(&r.Seq, &ns, &r.Component, &r.PrincipalID, &r.PrincipalName, &r.PrincipalKind,
		&r.ClientAddr, &r.UserAgent, &r.Operation, &r.Target, &r.Resource, &r.Algorithm, &r.Result, &r.Detail, &us,
		&r.PrevHash, &r.Hash); err != nil {
		return r, fmt.Errorf("read audit record: %w", err)
	}
	r.Time = time.Unix(0, ns).UTC()
	r.Duration = time.Duration(us) * time.Microsecond
	return r, nil
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	OK       bool   `json:"ok"`
	Records  int64  `json:"records"`
	HeadSeq  int64  `json:"headSeq"`
	HeadHash string `json:"headHash"`
	// BrokenAt is the first record whose chain does not hold, and Problem says how.
	BrokenAt int64  `json:"brokenAt,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// Verify walks the whole chain and reports the first record that was edited, inserted,
// removed or reordered. Removing records at the end cannot be seen from inside the chain:
// keep HeadHash elsewhere and compare.
func (l *Log) Verify(ctx context.Context) (VerifyResult, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT seq, time_ns, component, principal_id, principal_name, principal_kind,
		client_addr, user_agent, operation, target, resource, algorithm, result, detail, duration_us, prev_hash, hash
		FROM audit_records ORDER BY seq`)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify audit records: %w", err)
	}
	defer rows.Close()
	res := VerifyResult{OK: true}
	prev := ""
	var expect int64 = 1
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return res, err
		}
		res.Records++
		if res.OK {
			switch {
			case r.Seq != expect:
				res.OK, res.BrokenAt, res.Problem = false, r.Seq, fmt.Sprintf("sequence jumps from %d to %d: records were removed", expect-1, r.Seq)
			case r.PrevHash != prev:
				res.OK, res.BrokenAt, res.Problem = false, r.Seq, "previous-hash link does not match the record before"
			case digest(r) != r.Hash:
				res.OK, res.BrokenAt, res.Problem = false, r.Seq, "record content does not match its hash: it was edited"
			}
		}
		prev, expect = r.Hash, r.Seq+1
		res.HeadSeq, res.HeadHash = r.Seq, r.Hash
	}
	return res, rows.Err()
}
