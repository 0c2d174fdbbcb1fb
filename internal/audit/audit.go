// Package audit keeps Coffer's audit trail: an append-only list of records, each chained
// to the one before by an HMAC-SHA256 under a key derived from the vault root key (which
// is not in the database), so that an edited, inserted, reordered or removed record breaks
// the chain and Verify finds it, and whoever holds only the database cannot recompute it.
// The head is kept twice more: a signed high-water mark in the database (a sequence number
// is never reused) and a signed checkpoint file beside the root key (a database copy or a
// rewrite cannot move it back). docs/audit.md is the spec. Any part may record; the vault
// records every key operation and every change to a vault, key, policy or network rule.
//
// Records are written by one goroutine in batches (group commit): Record queues a record
// and returns, RecordSync waits until the batch that holds it has committed. Close writes
// what is queued.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	// Scheme is how Hash is computed: SchemeKeyed, or SchemeUnkeyed for records written
	// before the chain was keyed.
	Scheme int `json:"-"`
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

// groupCommitWindow is how long the writer waits for more records before committing a
// batch that nobody waits for.
const groupCommitWindow = 5 * time.Millisecond

type queued struct {
	rec  Record
	done chan error
}

// maxPending bounds the records waiting for the writer; beyond it Record waits.
const maxPending = 100000

// checkpointInterval is how often the writer replaces the checkpoint file while records
// are written (and at every Flush, and at Close).
const checkpointInterval = time.Second

// Options configure Open.
type Options struct {
	// Key is the audit key, DeriveKey of the vault root key. Required.
	Key []byte
	// Checkpoint is the file the signed head is kept in, beside the root key file, out of
	// reach of a database copy. Empty: no checkpoint (then a deleted tail together with a
	// replayed high-water mark is found only by verify's expected head).
	Checkpoint string
}

// Log is the audit trail.
type Log struct {
	db         *store.DB
	log        *slog.Logger
	key        []byte
	checkpoint string

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

	// The writer's own state (Open sets it before the writer starts).
	// high is the highest point of the chain this process has seen committed or read from
	// the checkpoint: the next record follows it even if the database was cut back.
	high Head
	// keyedFrom is where the keyed chain starts, from the checkpoint or the signed
	// high-water mark (0: not known yet).
	keyedFrom int64
	// written is the checkpoint on disk; lastWrite is when it was written.
	written   Checkpoint
	lastWrite time.Time
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
	// Step 2: the keyed chain. Every record says its scheme (the rows before are the
	// unkeyed scheme 1), and audit_head keeps the signed high-water mark.
	`ALTER TABLE audit_records ADD COLUMN scheme INTEGER NOT NULL DEFAULT 1;
CREATE TABLE audit_head (
	id INTEGER PRIMARY KEY,
	seq INTEGER NOT NULL,
	hash TEXT NOT NULL,
	keyed_from INTEGER NOT NULL,
	mac TEXT NOT NULL
)`,
}

// transitionOperation is the record that starts the keyed chain on a trail that was
// unkeyed until then.
const transitionOperation = "AuditChainKeyed"

// Open prepares the audit tables and starts the writer. Close stops it.
//
// A trail written before the chain was keyed gets a transition record, the first keyed
// one: the records before it keep verifying as the unkeyed chain, and every record after
// it must be keyed.
func Open(ctx context.Context, db *store.DB, log *slog.Logger, o Options) (*Log, error) {
	if len(o.Key) != KeySize {
		return nil, fmt.Errorf("audit trail: the chain key must be %d bytes (audit.DeriveKey of the vault root key), it is %d", KeySize, len(o.Key))
	}
	if err := db.Migrate(ctx, "audit", migrations); err != nil {
		return nil, err
	}
	l := &Log{db: db, log: log, key: append([]byte(nil), o.Key...), checkpoint: o.Checkpoint,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), stop: make(chan struct{})}
	if l.checkpoint != "" {
		cp, ok, err := readCheckpoint(l.checkpoint, l.key)
		if err != nil {
			return nil, fmt.Errorf("%w (move it away to start a new checkpoint; verify then no longer vouches for the head it held)", err)
		}
		if ok {
			l.high, l.keyedFrom, l.written = cp.Head, cp.KeyedFrom, cp
		}
	}
	st, err := l.readState(ctx, db)
	if err != nil {
		return nil, err
	}
	if st.headOK && st.head.Seq > l.high.Seq {
		l.high = st.head
	}
	if st.headOK && l.keyedFrom == 0 {
		l.keyedFrom = st.headKeyedFrom
	}
	if l.written.Seq > 0 && st.last.Seq < l.written.Seq {
		log.Error("audit trail ends before its checkpoint: records were removed from the database; new records continue after the checkpoint",
			"trailEnd", st.last.Seq, "checkpoint", l.written.Seq)
	}
	if st.headFound && !st.headOK {
		log.Error("audit trail's signed high-water mark does not verify: the database was edited", "seq", st.head.Seq)
	}
	transition := !st.headFound && st.last.Seq > 0 && l.keyedFrom == 0
	writeCP := l.checkpoint != "" && (transition || l.high.Seq > l.written.Seq)
	l.wg.Add(1)
	go l.writer() // from here on the writer owns high, keyedFrom and written
	if transition {
		// A trail from before the key: start the keyed chain with a record that says so.
		err := l.RecordSync(ctx, Record{Component: "audit", PrincipalName: "coffer-server", ClientAddr: "in-process",
			Operation: transitionOperation, Result: ResultSuccess,
			Detail: "from this record on the chain is keyed (HMAC-SHA256 under a key derived from the vault root key); the records before it use the unkeyed SHA-256 chain"})
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("audit trail: start the keyed chain: %w", err)
		}
	}
	if writeCP {
		if err := l.Flush(ctx); err != nil { // writes the checkpoint
			l.Close()
			return nil, fmt.Errorf("audit trail: %w", err)
		}
	}
	return l, nil
}

// state is what the database says of the chain's head.
type state struct {
	// head is the signed high-water mark (headFound: the row exists; headOK: its MAC holds).
	head              Head
	headKeyedFrom     int64
	headFound, headOK bool
	// last is the record with the highest sequence number.
	last Head
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (l *Log) readState(ctx context.Context, q querier) (state, error) {
	var st state
	var mac string
	err := q.QueryRowContext(ctx, `SELECT seq, hash, keyed_from, mac FROM audit_head WHERE id = 1`).Scan(&st.head.Seq, &st.head.Hash, &st.headKeyedFrom, &mac)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("read the audit trail's head: %w", err)
	default:
		st.headFound = true
		st.headOK = sameMAC(headMAC(l.key, st.head, st.headKeyedFrom), mac)
	}
	err = q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&st.last.Seq, &st.last.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("read the audit trail's last record: %w", err)
	}
	return st, nil
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
		// While the checkpoint is behind what was committed, replace it within a second.
		var tick <-chan time.Time
		var cpTimer *time.Timer
		if l.checkpoint != "" && l.high.Seq > l.written.Seq {
			cpTimer = time.NewTimer(checkpointInterval - time.Since(l.lastWrite))
			tick = cpTimer.C
		}
		select {
		case <-l.wake:
		case <-tick:
			if err := l.writeCheckpoint(); err != nil {
				l.log.Error("audit checkpoint not written; retried", "err", err)
			}
			continue
		case <-l.stop:
			if cpTimer != nil {
				cpTimer.Stop()
			}
			if batch, _ := l.take(); len(batch) > 0 {
				l.commit(batch)
			}
			if left, _ := l.take(); len(left) > 0 {
				l.log.Error("audit records lost at shutdown: the store refused them", "records", len(left))
			}
			if err := l.writeCheckpoint(); err != nil {
				l.log.Error("audit checkpoint not written at shutdown", "err", err)
			}
			return
		}
		if cpTimer != nil {
			cpTimer.Stop()
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

// writeCheckpoint replaces the checkpoint file if the chain moved past it.
func (l *Log) writeCheckpoint() error {
	if l.checkpoint == "" || l.high.Seq == 0 || (l.high.Seq <= l.written.Seq && l.keyedFrom == l.written.KeyedFrom) {
		return nil
	}
	l.lastWrite = time.Now()
	cp := Checkpoint{Head: l.high, KeyedFrom: l.keyedFrom, Time: l.lastWrite}
	if err := writeCheckpoint(l.checkpoint, l.key, cp); err != nil {
		return err
	}
	l.written = cp
	return nil
}

// keyedFromInDB is where the keyed chain starts when neither a valid head nor the
// checkpoint says: the first keyed record, else the next record.
func keyedFromInDB(ctx context.Context, tx *sql.Tx, next int64) (int64, error) {
	var first sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(seq) FROM audit_records WHERE scheme = ?`, SchemeKeyed).Scan(&first); err != nil {
		return 0, err
	}
	if first.Valid {
		return first.Int64, nil
	}
	return next, nil
}

// chainLock is the store.DB.Lock every replica's writer holds while it appends.
const chainLock = "audit/chain"

// appendLocked runs fn, which reads the chain's head and appends after it, in an InTx
// transaction begun while holding the chain lock.
//
// On SQLite the database's single writer already orders the appends; the lock is
// in-process there. On PostgreSQL InTx is SERIALIZABLE, which alone keeps the chain
// whole (of two replicas that read the same head, one is aborted and re-run) but, under
// appends from several replicas at once, aborts all but one of each race, and an append
// that loses 20 times fails. The lock is a PostgreSQL advisory lock taken before the
// transaction begins, so the transaction's snapshot already holds the previous holder's
// commit: the replicas' appends queue instead of aborting, each batch costs two more
// round trips (lock, unlock), and SERIALIZABLE stays as the backstop.
func (l *Log) appendLocked(ctx context.Context, fn func(tx *sql.Tx) error) error {
	unlock, err := l.db.Lock(ctx, chainLock)
	if err != nil {
		return err
	}
	defer unlock()
	return l.db.InTx(ctx, fn)
}

func (l *Log) commit(batch []queued) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	records, flush := 0, false
	for _, q := range batch {
		if q.done != nil && q.rec.Operation == "" {
			flush = true // a flush marker
		} else {
			records++
		}
	}
	var err error
	if records > 0 {
		var high Head
		var keyedFrom int64
		err = l.appendLocked(ctx, func(tx *sql.Tx) error {
			// Read the chain's head inside the write transaction, under the chain lock
			// that excludes every other writer (other replicas sharing the database
			// included). The next sequence follows the highest of the signed high-water
			// mark, the last record and what this process committed or read from the
			// checkpoint: a deleted tail does not make a number be used twice.
			st, err := l.readState(ctx, tx)
			if err != nil {
				return err
			}
			prev := l.high
			if st.headOK && st.head.Seq > prev.Seq {
				prev = st.head
			}
			if st.last.Seq > prev.Seq {
				prev = st.last
			}
			switch {
			case st.headOK:
				keyedFrom = st.headKeyedFrom
			case l.keyedFrom > 0:
				keyedFrom = l.keyedFrom
			default:
				if keyedFrom, err = keyedFromInDB(ctx, tx, prev.Seq+1); err != nil {
					return err
				}
			}
			for i := range batch {
				if batch[i].done != nil && batch[i].rec.Operation == "" {
					continue
				}
				r := &batch[i].rec
				r.Seq = prev.Seq + 1
				r.Time = r.Time.UTC()
				r.PrevHash = prev.Hash
				r.Scheme = SchemeKeyed
				r.Hash = keyedHash(l.key, *r)
				if _, err := tx.ExecContext(ctx, `INSERT INTO audit_records (seq, time_ns, component, principal_id,
				principal_name, principal_kind, client_addr, user_agent, operation, target, resource, algorithm, result,
				detail, duration_us, prev_hash, hash, scheme) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
					r.Seq, r.Time.UnixNano(), r.Component, r.PrincipalID, r.PrincipalName, r.PrincipalKind,
					r.ClientAddr, r.UserAgent, r.Operation, r.Target, r.Resource, r.Algorithm, r.Result, r.Detail,
					r.Duration.Microseconds(), r.PrevHash, r.Hash, r.Scheme); err != nil {
					return err
				}
				prev = Head{Seq: r.Seq, Hash: r.Hash}
			}
			high = prev
			_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash, keyed_from, mac) VALUES (1, ?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, keyed_from = excluded.keyed_from, mac = excluded.mac`,
				high.Seq, high.Hash, keyedFrom, headMAC(l.key, high, keyedFrom))
			return err
		})
		if err != nil {
			err = fmt.Errorf("write audit records: %w", err)
			l.log.Error("audit write failed; queued records are kept and retried", "err", err, "records", len(batch))
		} else {
			l.high, l.keyedFrom = high, keyedFrom
		}
	}
	// The checkpoint follows at every flush, and at most a second behind otherwise.
	var cpErr error
	if err == nil && (flush || time.Since(l.lastWrite) >= checkpointInterval) {
		if cpErr = l.writeCheckpoint(); cpErr != nil {
			l.log.Error("audit checkpoint not written; retried", "err", cpErr)
		}
	}
	var retry []queued
	for _, q := range batch {
		switch {
		case q.done != nil && q.rec.Operation == "":
			q.done <- errors.Join(err, cpErr) // a flush also vouches for the checkpoint
		case q.done != nil:
			q.done <- err // the waiter learns of the failure
		case err != nil:
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
		// SQLite's instr is PostgreSQL's strpos (both 1-based, 0 when absent); LIKE would
		// need its wildcards escaped and is case-insensitive on SQLite.
		contains := "instr(target, ?) > 0"
		if l.db.Dialect() == store.PostgreSQL {
			contains = "strpos(target, ?) > 0"
		}
		where, args = append(where, contains), append(args, f.Target)
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
		operation, target, resource, algorithm, result, detail, duration_us, prev_hash, hash, scheme FROM audit_records`
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
		&r.PrevHash, &r.Hash, &r.Scheme); err != nil {
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
	// KeyedFrom is the first record of the keyed chain; the records before it use the
	// unkeyed scheme of the trails written before the key.
	KeyedFrom int64 `json:"keyedFrom,omitempty"`
	// CheckpointSeq is the sequence of the signed checkpoint beside the root key that the
	// trail was checked against (0: none).
	CheckpointSeq int64 `json:"checkpointSeq,omitempty"`
	// ExpectedHead is the head the caller asked to check (SEQ:HASH), if any.
	ExpectedHead string `json:"expectedHead,omitempty"`
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// ExpectHead, if set, is a head kept elsewhere (printed by an earlier verify): the
	// trail must reach it and hold the same record there.
	ExpectHead *Head
}

// Verify walks the whole chain and reports the first record that was edited, inserted,
// removed, reordered or rewritten without the key. The trail must end at the signed
// high-water mark in the database, and reach the signed checkpoint beside the root key
// and o.ExpectHead with the same record there: so a deleted tail is found too.
func (l *Log) Verify(ctx context.Context, o VerifyOptions) (VerifyResult, error) {
	res := VerifyResult{OK: true}
	// The report names the lowest record where something does not hold.
	fail := func(at int64, format string, args ...any) {
		if res.OK || at < res.BrokenAt {
			res.OK, res.BrokenAt, res.Problem = false, at, fmt.Sprintf(format, args...)
		}
	}
	// The head is read before the records: records committed during the walk are beyond it.
	st, err := l.readState(ctx, l.db)
	if err != nil {
		return res, fmt.Errorf("verify audit records: %w", err)
	}
	var cp Checkpoint
	var haveCP bool
	if l.checkpoint != "" {
		var err error
		cp, haveCP, err = readCheckpoint(l.checkpoint, l.key)
		switch {
		case errors.Is(err, errCheckpointForged):
			fail(1, "the checkpoint beside the root key does not verify (%v)", errCheckpointForged)
		case err != nil:
			return res, fmt.Errorf("verify audit records: %w", err)
		case haveCP:
			res.CheckpointSeq = cp.Seq
		}
	}
	switch {
	case st.headOK:
		res.KeyedFrom = st.headKeyedFrom
		if haveCP && cp.KeyedFrom != st.headKeyedFrom {
			fail(min(cp.KeyedFrom, st.headKeyedFrom), "the database says the chain is keyed from sequence %d, the checkpoint says %d: the database was rewritten",
				st.headKeyedFrom, cp.KeyedFrom)
		}
	case haveCP:
		res.KeyedFrom = cp.KeyedFrom
	}
	switch {
	case st.headFound && !st.headOK:
		fail(st.head.Seq, "the signed high-water mark (sequence %d) does not verify: it was edited", st.head.Seq)
	case !st.headFound && st.last.Seq > 0:
		fail(st.last.Seq, "the signed high-water mark is missing: it was deleted")
	}
	if o.ExpectHead != nil {
		res.ExpectedHead = o.ExpectHead.String()
	}

	rows, err := l.db.QueryContext(ctx, `SELECT seq, time_ns, component, principal_id, principal_name, principal_kind,
		client_addr, user_agent, operation, target, resource, algorithm, result, detail, duration_us, prev_hash, hash, scheme
		FROM audit_records ORDER BY seq`)
	if err != nil {
		return res, fmt.Errorf("verify audit records: %w", err)
	}
	defer rows.Close()
	prev := ""
	var expect int64 = 1
	// The records at the points the trail must reach: the signed head, the checkpoint and
	// the expected head.
	points := map[int64]string{}
	for _, p := range []int64{st.head.Seq, cp.Seq} {
		points[p] = ""
	}
	if o.ExpectHead != nil {
		points[o.ExpectHead.Seq] = ""
	}
	var firstKeyed int64
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return res, err
		}
		res.Records++
		if res.KeyedFrom == 0 && firstKeyed == 0 && r.Scheme == SchemeKeyed {
			firstKeyed = r.Seq
		}
		keyedFrom := res.KeyedFrom
		if keyedFrom == 0 {
			keyedFrom = firstKeyed
		}
		switch {
		case r.Seq != expect:
			fail(r.Seq, "sequence jumps from %d to %d: records %s were removed", expect-1, r.Seq, span(expect, r.Seq-1))
		case r.PrevHash != prev:
			fail(r.Seq, "previous-hash link does not match the record before")
		case r.Scheme != SchemeKeyed && r.Scheme != SchemeUnkeyed:
			fail(r.Seq, "record uses unknown chain scheme %d", r.Scheme)
		case r.Scheme == SchemeUnkeyed && keyedFrom > 0 && r.Seq >= keyedFrom:
			fail(r.Seq, "record uses the unkeyed scheme, but the chain is keyed from sequence %d: it was rewritten without the key", keyedFrom)
		case r.Scheme == SchemeKeyed && keyedFrom > 0 && r.Seq < keyedFrom:
			fail(r.Seq, "record uses the keyed scheme before sequence %d, where the keyed chain starts", keyedFrom)
		case r.Scheme == SchemeUnkeyed && unkeyedHash(r) != r.Hash:
			fail(r.Seq, "record content does not match its hash: it was edited")
		case r.Scheme == SchemeKeyed && !sameMAC(keyedHash(l.key, r), r.Hash):
			fail(r.Seq, "record content does not match its keyed hash: it was edited, or rewritten without the key")
		}
		if _, ok := points[r.Seq]; ok {
			points[r.Seq] = r.Hash
		}
		prev, expect = r.Hash, r.Seq+1
		res.HeadSeq, res.HeadHash = r.Seq, r.Hash
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("verify audit records: %w", err)
	}
	if res.KeyedFrom == 0 {
		res.KeyedFrom = firstKeyed
	}
	reach := func(what string, h Head) {
		switch {
		case h.Seq == 0:
		case res.HeadSeq < h.Seq:
			fail(res.HeadSeq+1, "the trail ends at sequence %d, before %s at %d: records %s were removed",
				res.HeadSeq, what, h.Seq, span(res.HeadSeq+1, h.Seq))
		case !sameMAC(points[h.Seq], h.Hash):
			fail(h.Seq, "record %d is not the one %s names: the trail was rewritten", h.Seq, what)
		}
	}
	if st.headOK {
		reach("its signed high-water mark", st.head)
	}
	if haveCP {
		reach("the checkpoint beside the root key", cp.Head)
	}
	if o.ExpectHead != nil {
		reach("the expected head", *o.ExpectHead)
	}
	// Records beyond the high-water mark were not written by Coffer (which moves the mark
	// in the same transaction); those committed during the walk moved it too.
	if st.headFound && res.HeadSeq > st.head.Seq {
		after, err := l.readState(ctx, l.db)
		if err != nil {
			return res, fmt.Errorf("verify audit records: %w", err)
		}
		if res.HeadSeq > after.head.Seq {
			fail(after.head.Seq+1, "records after the signed high-water mark (%d): they were inserted into the database", after.head.Seq)
		}
	}
	return res, nil
}

// span names the sequence numbers from a to b.
func span(a, b int64) string {
	if a == b {
		return strconv.FormatInt(a, 10)
	}
	return fmt.Sprintf("%d–%d", a, b)
}
