// Package store owns Coffer's metadata database.
//
// The embedded default is SQLite through a pure-Go driver (modernc.org/sqlite), so the
// binary needs no cgo and no database server. Each part of Coffer owns its own tables and
// registers its schema with Migrate under its own component name; parts never read each
// other's tables, they call each other's services.
//
// The scale-out store is PostgreSQL (OpenPostgres, pgx v5). SQL written against DB uses '?'
// placeholders and the common subset of SQLite and PostgreSQL (TEXT, INTEGER, BLOB, ON
// CONFLICT upserts); Dialect lists what is translated for PostgreSQL, in one place, and
// what a part must not use.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is the metadata database shared by every part.
type DB struct {
	*sql.DB
	path    string
	dialect Dialect
	// locks are Lock's in-process mutexes; lockPool (PostgreSQL) holds its advisory locks.
	locks    memLocks
	lockPool *sql.DB
}

// Close closes the database's pools.
func (db *DB) Close() error {
	err := db.DB.Close()
	if db.lockPool != nil {
		db.lockPool.Close()
	}
	return err
}

// Dialect reports the engine behind db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Open opens the metadata store a --metadata value names: a postgres:// URL, or (empty)
// SQLite at sqlitePath.
func Open(ctx context.Context, metadata, sqlitePath string) (*DB, error) {
	switch {
	case IsPostgresURL(metadata):
		return OpenPostgres(ctx, metadata, PostgresOptions{})
	case metadata == "" || metadata == "sqlite":
		return OpenSQLite(ctx, sqlitePath)
	}
	return nil, fmt.Errorf("metadata store %q: use a postgres://user@host/db URL, or leave it empty for SQLite in the data directory", redact(metadata))
}

// redact hides a password in a URL-shaped value before it reaches a message.
func redact(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			return s[:scheme+3] + "…" + s[at:]
		}
	}
	return s
}

// ErrNotFound is returned (wrapped) by parts' stores when a row does not exist.
var ErrNotFound = errors.New("not found")

// OpenSQLite opens (creating if needed) the SQLite database at path.
//
// The connection runs in WAL mode with synchronous=FULL: a transaction that has committed
// survives a crash of the process or the machine right after.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	// SQLite allows one writer at a time; a small pool avoids lock convoys while still
	// letting readers run beside the writer in WAL mode.
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.Close()
		return nil, fmt.Errorf("restrict metadata database permissions: %w", err)
	}
	return &DB{DB: db, path: path, dialect: SQLite}, nil
}

const schemaTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	component TEXT NOT NULL, step INTEGER NOT NULL, applied_at INTEGER NOT NULL,
	PRIMARY KEY (component, step))`

// Migrate applies, in order and once each, the schema steps of one component.
// Steps are append-only: never edit a step that has shipped, add a new one.
//
// A component's steps run in one transaction. On SQLite that transaction is the single
// writer; on PostgreSQL it first takes a transaction-scoped advisory lock shared by every
// replica, so replicas starting together apply each step once (the others wait, then
// find it applied), and a step's column types are translated (see Dialect).
func (db *DB) Migrate(ctx context.Context, component string, steps []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	if db.dialect == PostgreSQL {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLockKey)); err != nil {
			return fmt.Errorf("migrate %s: take the migration lock: %w", component, err)
		}
	}
	schema := schemaTable
	if db.dialect == PostgreSQL {
		schema = pgTypes(schema)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("migrate %s: prepare the schema table: %w", component, err)
	}
	var applied int
	if err := tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM schema_migrations WHERE component = ?`, component).Scan(&applied); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for i := applied; i < len(steps); i++ {
		step := steps[i]
		if db.dialect == PostgreSQL {
			step = pgTypes(step)
		}
		for _, stmt := range splitStatements(step) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrate %s step %d: %w", component, i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (component, step, applied_at) VALUES (?, ?, ?)`,
			component, i+1, time.Now().Unix()); err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
	}
	return tx.Commit()
}

// InTx runs fn in a transaction, committing if fn returns nil.
//
// Every InTx transaction is serialised against every other, as SQLite's single writer
// does: on PostgreSQL it runs SERIALIZABLE and, when PostgreSQL aborts it as a
// serialization failure or deadlock, runs fn again (up to maxTxAttempts times in all). So
// fn must only touch the database and variables it sets afresh on each run.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.dialect != PostgreSQL {
		return runTx(ctx, db.DB, nil, fn)
	}
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = runTx(ctx, db.DB, &sql.TxOptions{Isolation: sql.LevelSerializable}, fn)
		if !IsBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * time.Millisecond):
		}
	}
	return err
}

const maxTxAttempts = 20

func runTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// SetRelaxedDurability sets whether commits on conn return before they are flushed to
// disk (SQLite synchronous=NORMAL in WAL mode; PostgreSQL synchronous_commit=off). Either
// way a crash may lose the last such commits but never corrupts or reorders them. Set it
// back to false before conn returns to the pool.
func (db *DB) SetRelaxedDurability(ctx context.Context, conn *sql.Conn, relaxed bool) error {
	var q string
	switch {
	case db.dialect == PostgreSQL && relaxed:
		q = `SET synchronous_commit = off`
	case db.dialect == PostgreSQL:
		q = `SET synchronous_commit = on`
	case relaxed:
		q = `PRAGMA synchronous = NORMAL`
	default:
		q = `PRAGMA synchronous = FULL`
	}
	_, err := conn.ExecContext(ctx, q)
	return err
}

func splitStatements(step string) []string {
	var out []string
	for _, s := range strings.Split(step, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Where names the database without credentials: the SQLite file, or PostgreSQL's
// host:port/database.
func (db *DB) Where() string { return db.path }

// MigrationState returns, per component, the number of schema steps applied.
func (db *DB) MigrationState(ctx context.Context) (map[string]int, error) {
	schema := schemaTable
	if db.dialect == PostgreSQL {
		schema = pgTypes(schema)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("read the schema state: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT component, COUNT(*) FROM schema_migrations GROUP BY component`)
	if err != nil {
		return nil, fmt.Errorf("read the schema state: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var c string
		var n int
		if err := rows.Scan(&c, &n); err != nil {
			return nil, fmt.Errorf("read the schema state: %w", err)
		}
		out[c] = n
	}
	return out, rows.Err()
}
