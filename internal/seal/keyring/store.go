package keyring

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// rootStore keeps the keyring's state in the metadata store: the encryption settings (one
// row) and the wrapped root keys (one row per generation). It owns every SQL statement of
// the keyring; the Keyring decides what to store, and when.
type rootStore struct {
	db *store.DB
}

// rootRow is one generation's root key as stored: wrapped under the KEK version kid.
type rootRow struct {
	gen     uint32
	wrapped []byte
	kid     string
}

var migrations = []string{
	`CREATE TABLE seal_settings (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		source TEXT NOT NULL,
		key_id TEXT NOT NULL,
		versioned_key_id TEXT NOT NULL,
		identity TEXT NOT NULL,
		rotation_enabled INTEGER NOT NULL,
		last_rotation INTEGER NOT NULL,
		current_generation INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE seal_root_keys (
		generation INTEGER PRIMARY KEY,
		wrapped BLOB NOT NULL,
		kek_kid TEXT NOT NULL,
		created_at INTEGER NOT NULL
	)`,
}

// migrate creates or upgrades the keyring's tables.
func (s rootStore) migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, "seal", migrations)
}

// load reads the settings and the wrapped root keys (ErrNotInitialized if there are no
// settings yet).
func (s rootStore) load(ctx context.Context) (*Settings, []rootRow, error) {
	var st Settings
	var rot, last, gen int64
	err := s.db.QueryRowContext(ctx, `SELECT source, key_id, versioned_key_id, identity, rotation_enabled, last_rotation, current_generation
		FROM seal_settings WHERE id = 1`).Scan(&st.Source, &st.KeyID, &st.VersionedKeyID, &st.Identity, &rot, &last, &gen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotInitialized
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read encryption settings: %w", err)
	}
	st.RotationEnabled = rot != 0
	st.LastRotation = time.Unix(last, 0).UTC()
	st.Generation = uint32(gen)
	rows, err := s.db.QueryContext(ctx, `SELECT generation, wrapped, kek_kid FROM seal_root_keys ORDER BY generation`)
	if err != nil {
		return nil, nil, fmt.Errorf("read wrapped root keys: %w", err)
	}
	defer rows.Close()
	var out []rootRow
	for rows.Next() {
		var r rootRow
		var g int64
		if err := rows.Scan(&g, &r.wrapped, &r.kid); err != nil {
			return nil, nil, fmt.Errorf("read wrapped root keys: %w", err)
		}
		r.gen = uint32(g)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read wrapped root keys: %w", err)
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("encryption settings exist but no root key is stored")
	}
	return &st, out, nil
}

// initialize stores the first settings and the first root key, in one transaction.
// Another replica initializing at the same moment makes it errAlreadyInitialized.
func (s rootStore) initialize(ctx context.Context, st Settings, first rootRow, now time.Time) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO seal_settings (id, source, key_id, versioned_key_id, identity, rotation_enabled, last_rotation, current_generation, created_at)
			VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)`, st.Source, st.KeyID, st.VersionedKeyID, st.Identity, boolInt(st.RotationEnabled),
			st.LastRotation.Unix(), int64(first.gen), now.Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO seal_root_keys (generation, wrapped, kek_kid, created_at) VALUES (?, ?, ?, ?)`,
			int64(first.gen), first.wrapped, first.kid, now.Unix())
		return err
	})
	if store.IsUniqueViolation(err) {
		return ErrAlreadyInitialized
	}
	return err
}

// ErrAlreadyInitialized: Initialize found settings stored already (perhaps another
// replica's, made a moment ago).
var ErrAlreadyInitialized = errors.New("registry encryption is already initialized")

// errChanged: another replica changed the keyring (a generation added, the key rotated)
// between the read a change was computed from and its write; the change is computed
// again from what is stored now.
var errChanged = errors.New("the registry's root keys were changed by another replica meanwhile")

// unchanged checks, inside a write, that the stored keyring is still the one a change was
// computed from: generations 1..gen (gen current), wrapped under kid.
func unchanged(ctx context.Context, tx *sql.Tx, gen uint32, kid string) error {
	var cur, n, top int64
	var vkid string
	if err := tx.QueryRowContext(ctx, `SELECT current_generation, versioned_key_id FROM seal_settings WHERE id = 1`).Scan(&cur, &vkid); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(generation), 0) FROM seal_root_keys`).Scan(&n, &top); err != nil {
		return err
	}
	if cur != int64(gen) || top != int64(gen) || n != int64(gen) || vkid != kid {
		return errChanged
	}
	return nil
}

// rewrap stores new key settings (the current generation is left as it is) and the root
// keys re-wrapped under the new KEK, in one transaction; errChanged if the stored keyring
// is no longer the one read (generations 1..from.Generation under from.VersionedKeyID),
// which would leave a generation wrapped under the old KEK.
func (s rootStore) rewrap(ctx context.Context, from, st Settings, rows []rootRow) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := unchanged(ctx, tx, from.Generation, from.VersionedKeyID); err != nil {
			return err
		}
		if len(rows) != int(from.Generation) {
			return errChanged
		}
		if _, err := tx.ExecContext(ctx, `UPDATE seal_settings SET source = ?, key_id = ?, versioned_key_id = ?, identity = ?,
			rotation_enabled = ?, last_rotation = ? WHERE id = 1`,
			st.Source, st.KeyID, st.VersionedKeyID, st.Identity, boolInt(st.RotationEnabled), st.LastRotation.Unix()); err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, `UPDATE seal_root_keys SET wrapped = ?, kek_kid = ? WHERE generation = ?`, r.wrapped, r.kid, int64(r.gen)); err != nil {
				return err
			}
		}
		return nil
	})
}

// addGeneration stores a new root key and makes its generation the current one, in one
// transaction; errChanged if the stored keyring is no longer from (another replica added
// a generation or rotated the KEK r was wrapped under).
func (s rootStore) addGeneration(ctx context.Context, from Settings, r rootRow, now time.Time) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := unchanged(ctx, tx, from.Generation, from.VersionedKeyID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO seal_root_keys (generation, wrapped, kek_kid, created_at) VALUES (?, ?, ?, ?)`,
			int64(r.gen), r.wrapped, r.kid, now.Unix()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE seal_settings SET current_generation = ? WHERE id = 1`, int64(r.gen))
		return err
	})
	if store.IsUniqueViolation(err) {
		return errChanged
	}
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
