// Package store owns Coffer's metadata database.
//
// The embedded default is SQLite through a pure-Go driver (modernc.org/sqlite), so the
// binary needs no cgo and no database server. Each part of Coffer owns its own tables and
// registers its schema with Migrate under its own component name; parts never read each
// other's tables, they call each other's services.
//
// SQL written against DB uses '?' placeholders and the common subset of SQLite and
// PostgreSQL types (TEXT, INTEGER, BLOB), so that a PostgreSQL driver can follow behind the
// same API.
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
	path string
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
	s := &DB{DB: db, path: path}
	if _, err := s.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL, step INTEGER NOT NULL, applied_at INTEGER NOT NULL,
		PRIMARY KEY (component, step))`); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare schema table: %w", err)
	}
	return s, nil
}

// Migrate applies, in order and once each, the schema steps of one component.
// Steps are append-only: never edit a step that has shipped, add a new one.
func (db *DB) Migrate(ctx context.Context, component string, steps []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	var applied int
	if err := tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM schema_migrations WHERE component = ?`, component).Scan(&applied); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for i := applied; i < len(steps); i++ {
		for _, stmt := range splitStatements(steps[i]) {
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
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
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
