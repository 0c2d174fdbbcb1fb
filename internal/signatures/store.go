package signatures

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Store keeps the anchors and the policy document. Every change bumps one version
// number, which keys the verification cache and tells replicas to reload.
type Store interface {
	// Version is the current version (0 before any change).
	Version(ctx context.Context) (int64, error)
	// Load returns everything at one version.
	Load(ctx context.Context) (State, error)
	// PutAnchor adds an anchor; ErrExists if the name is taken.
	PutAnchor(ctx context.Context, a StoredAnchor) (int64, error)
	// DeleteAnchor removes an anchor; ErrNotFound if there is none.
	DeleteAnchor(ctx context.Context, name string) (int64, error)
	// UpdateAnchorKey replaces a vault anchor's key material and status (a refresh);
	// ErrNotFound if there is none.
	UpdateAnchorKey(ctx context.Context, name, material, status string, refreshed time.Time) (int64, error)
	// SetPolicy replaces the policy document.
	SetPolicy(ctx context.Context, doc []byte, now time.Time) (int64, error)
}

// State is the stored policy and anchors at one version.
type State struct {
	Version int64
	Policy  []byte // JSON, empty: none set
	Updated time.Time
	Anchors []StoredAnchor
}

// StoredAnchor is an anchor as stored: its validated material in PEM.
type StoredAnchor struct {
	Name, Kind, StoreType string
	Material              string
	Created               time.Time
	// KeyURL, KeyStatus, Refreshed: a cosign key held in a vault (see AnchorSpec).
	KeyURL, KeyStatus string
	Refreshed         *time.Time
}

// Errors of the store.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
)

var migrations = []string{`
CREATE TABLE signature_state (
	id INTEGER PRIMARY KEY,
	version INTEGER NOT NULL,
	policy TEXT NOT NULL,
	updated INTEGER NOT NULL
);
INSERT INTO signature_state (id, version, policy, updated) VALUES (1, 0, '', 0);
CREATE TABLE signature_anchors (
	name TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	store_type TEXT NOT NULL,
	material TEXT NOT NULL,
	created INTEGER NOT NULL
);`, `
ALTER TABLE signature_anchors ADD COLUMN key_url TEXT NOT NULL DEFAULT '';
ALTER TABLE signature_anchors ADD COLUMN key_status TEXT NOT NULL DEFAULT '';
ALTER TABLE signature_anchors ADD COLUMN refreshed INTEGER NOT NULL DEFAULT 0;`}

// SQLStore is the Store in the metadata database.
type SQLStore struct{ db *store.DB }

// OpenSQLStore migrates the "signatures" component and returns its store.
func OpenSQLStore(ctx context.Context, db *store.DB) (*SQLStore, error) {
	if err := db.Migrate(ctx, "signatures", migrations); err != nil {
		return nil, err
	}
	return &SQLStore{db: db}, nil
}

func (s *SQLStore) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM signature_state WHERE id = 1`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read the signature policy version: %w", err)
	}
	return v, nil
}

func (s *SQLStore) Load(ctx context.Context) (State, error) {
	var st State
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		st = State{} // InTx may run this again (PostgreSQL): start afresh, not after the anchors of an aborted run
		var updated int64
		if err := tx.QueryRowContext(ctx, `SELECT version, policy, updated FROM signature_state WHERE id = 1`).Scan(&st.Version, &st.Policy, &updated); err != nil {
			return err
		}
		if updated > 0 {
			st.Updated = time.Unix(0, updated).UTC()
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, kind, store_type, material, created, key_url, key_status, refreshed FROM signature_anchors ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a StoredAnchor
			var created, refreshed int64
			if err := rows.Scan(&a.Name, &a.Kind, &a.StoreType, &a.Material, &created, &a.KeyURL, &a.KeyStatus, &refreshed); err != nil {
				return err
			}
			a.Created = time.Unix(0, created).UTC()
			if refreshed > 0 {
				t := time.Unix(0, refreshed).UTC()
				a.Refreshed = &t
			}
			st.Anchors = append(st.Anchors, a)
		}
		return rows.Err()
	})
	if err != nil {
		return State{}, fmt.Errorf("load the signature policy: %w", err)
	}
	return st, nil
}

// bump increments the version inside tx and returns the new one.
func bump(ctx context.Context, tx *sql.Tx, now time.Time) (int64, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE signature_state SET version = version + 1, updated = ? WHERE id = 1`, now.UnixNano()); err != nil {
		return 0, err
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM signature_state WHERE id = 1`).Scan(&v)
	return v, err
}

func (s *SQLStore) PutAnchor(ctx context.Context, a StoredAnchor) (int64, error) {
	var v int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM signature_anchors WHERE name = ?`, a.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("anchor %q: %w", a.Name, ErrExists)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO signature_anchors (name, kind, store_type, material, created, key_url, key_status, refreshed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Name, a.Kind, a.StoreType, a.Material, a.Created.UnixNano(), a.KeyURL, a.KeyStatus, unixNano(a.Refreshed)); err != nil {
			if store.IsUniqueViolation(err) { // another caller's insert of the name, on PostgreSQL
				return fmt.Errorf("anchor %q: %w", a.Name, ErrExists)
			}
			return err
		}
		var err error
		v, err = bump(ctx, tx, a.Created)
		return err
	})
	return v, err
}

func (s *SQLStore) DeleteAnchor(ctx context.Context, name string) (int64, error) {
	var v int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM signature_anchors WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("anchor %q: %w", name, ErrNotFound)
		}
		v, err = bump(ctx, tx, time.Now())
		return err
	})
	return v, err
}

func (s *SQLStore) SetPolicy(ctx context.Context, doc []byte, now time.Time) (int64, error) {
	var v int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE signature_state SET policy = ? WHERE id = 1`, string(doc)); err != nil {
			return err
		}
		var err error
		v, err = bump(ctx, tx, now)
		return err
	})
	return v, err
}

func unixNano(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixNano()
}

func (s *SQLStore) UpdateAnchorKey(ctx context.Context, name, material, status string, refreshed time.Time) (int64, error) {
	var v int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE signature_anchors SET material = ?, key_status = ?, refreshed = ? WHERE name = ? AND key_url <> ''`,
			material, status, refreshed.UnixNano(), name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("vault key anchor %q: %w", name, ErrNotFound)
		}
		v, err = bump(ctx, tx, refreshed)
		return err
	})
	return v, err
}
