package trust

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/store"
)

// migrations are the trust part's tables. Metadata bytes are not here: they are sealed
// objects in the blob driver, named by GUN and checksum; these rows index them.
var migrations = []string{
	`CREATE TABLE trust_meta (
		gun TEXT NOT NULL,
		repo TEXT NOT NULL,
		role TEXT NOT NULL,
		version INTEGER NOT NULL,
		sha256 TEXT NOT NULL,
		length INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (gun, role, version));
	CREATE INDEX trust_meta_sha ON trust_meta (gun, role, sha256);
	CREATE INDEX trust_meta_repo ON trust_meta (repo);
	CREATE TABLE trust_keys (
		gun TEXT NOT NULL,
		repo TEXT NOT NULL,
		role TEXT NOT NULL,
		key_id TEXT NOT NULL,
		vault_key TEXT NOT NULL,
		public TEXT NOT NULL,
		seq INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (gun, key_id));
	CREATE INDEX trust_keys_repo ON trust_keys (repo);
	CREATE TABLE trust_changes (
		id INTEGER PRIMARY KEY,
		gun TEXT NOT NULL,
		version INTEGER NOT NULL,
		sha256 TEXT NOT NULL,
		category TEXT NOT NULL,
		created_at INTEGER NOT NULL);
	CREATE TABLE trust_policy (
		id INTEGER PRIMARY KEY,
		status TEXT NOT NULL,
		updated_at INTEGER NOT NULL)`,
}

// Store is where the trust part keeps its index, keys and policy.
type Store interface {
	Current(ctx context.Context, gun, role string) (MetaRow, error)
	ByChecksum(ctx context.Context, gun, role, sha string) (MetaRow, error)
	ByVersion(ctx context.Context, gun, role string, version int) (MetaRow, error)
	// Commit inserts every row (refusing a version not above the stored ones with
	// ErrOldVersion) and one change record, in one transaction.
	Commit(ctx context.Context, rows []MetaRow, change Change) error
	Keys(ctx context.Context, gun, role string) ([]KeyRow, error)
	Key(ctx context.Context, gun, keyID string) (KeyRow, error)
	AddKey(ctx context.Context, k KeyRow) error
	// DeleteGUN removes a GUN's rows (gun set) or every GUN of a repository (repo set) and
	// returns the keys and checksums that were removed.
	DeleteGUNs(ctx context.Context, gun, repo string, change Change) ([]KeyRow, []MetaRow, error)
	// DeleteAll removes every trust row (the policy excepted).
	DeleteAll(ctx context.Context) ([]KeyRow, []MetaRow, error)
	Changes(ctx context.Context, gun string, after int64, limit int, reverse bool) ([]Change, error)
	Status(ctx context.Context) (string, error)
	SetStatus(ctx context.Context, status string, now int64) error
}

// MetaRow indexes one version of one role's metadata.
type MetaRow struct {
	GUN     string
	Repo    string
	Role    string
	Version int
	SHA256  string
	Length  int64
	Created int64
}

// KeyRow is one server-held key: a vault key and the TUF public key it is.
type KeyRow struct {
	GUN      string
	Repo     string
	Role     string
	KeyID    string
	VaultKey string
	Public   string // the TUF public key JSON
	Seq      int64
	Created  int64
}

// Change is one record of the changefeed.
type Change struct {
	ID       int64  `json:"-"`
	GUN      string `json:"GUN"`
	Version  int    `json:"Version"`
	SHA256   string `json:"SHA256"`
	Category string `json:"Category"`
	Created  int64  `json:"-"`
}

// ErrOldVersion marks an update whose version is not above the stored one.
var ErrOldVersion = errors.New("a newer version of the metadata is already stored")

type sqlStore struct{ db *store.DB }

func newSQLStore(ctx context.Context, db *store.DB) (*sqlStore, error) {
	if err := db.Migrate(ctx, "trust", migrations); err != nil {
		return nil, err
	}
	return &sqlStore{db: db}, nil
}

const metaCols = `gun, repo, role, version, sha256, length, created_at`

func scanMeta(row interface{ Scan(...any) error }) (MetaRow, error) {
	var m MetaRow
	err := row.Scan(&m.GUN, &m.Repo, &m.Role, &m.Version, &m.SHA256, &m.Length, &m.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return m, store.ErrNotFound
	}
	return m, err
}

func (s *sqlStore) Current(ctx context.Context, gun, role string) (MetaRow, error) {
	return scanMeta(s.db.QueryRowContext(ctx, `SELECT `+metaCols+` FROM trust_meta WHERE gun = ? AND role = ? ORDER BY version DESC LIMIT 1`, gun, role))
}

func (s *sqlStore) ByChecksum(ctx context.Context, gun, role, sha string) (MetaRow, error) {
	return scanMeta(s.db.QueryRowContext(ctx, `SELECT `+metaCols+` FROM trust_meta WHERE gun = ? AND role = ? AND sha256 = ? ORDER BY version DESC LIMIT 1`, gun, role, sha))
}

func (s *sqlStore) ByVersion(ctx context.Context, gun, role string, version int) (MetaRow, error) {
	return scanMeta(s.db.QueryRowContext(ctx, `SELECT `+metaCols+` FROM trust_meta WHERE gun = ? AND role = ? AND version = ?`, gun, role, version))
}

func (s *sqlStore) Commit(ctx context.Context, rows []MetaRow, change Change) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			var cur sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM trust_meta WHERE gun = ? AND role = ?`, r.GUN, r.Role).Scan(&cur); err != nil {
				return err
			}
			if cur.Valid && int64(r.Version) <= cur.Int64 {
				return fmt.Errorf("%w: %s version %d, stored %d", ErrOldVersion, r.Role, r.Version, cur.Int64)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO trust_meta (`+metaCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				r.GUN, r.Repo, r.Role, r.Version, r.SHA256, r.Length, r.Created); err != nil {
				if store.IsUniqueViolation(err) { // (gun, role, version) taken by another writer
					return fmt.Errorf("%w: %s version %d", ErrOldVersion, r.Role, r.Version)
				}
				return err
			}
		}
		return insertChange(ctx, tx, change)
	})
}

func insertChange(ctx context.Context, tx *sql.Tx, c Change) error {
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM trust_changes`).Scan(&next); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO trust_changes (id, gun, version, sha256, category, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		next, c.GUN, c.Version, c.SHA256, c.Category, c.Created)
	return err
}

const keyCols = `gun, repo, role, key_id, vault_key, public, seq, created_at`

func scanKey(row interface{ Scan(...any) error }) (KeyRow, error) {
	var k KeyRow
	err := row.Scan(&k.GUN, &k.Repo, &k.Role, &k.KeyID, &k.VaultKey, &k.Public, &k.Seq, &k.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return k, store.ErrNotFound
	}
	return k, err
}

func (s *sqlStore) Keys(ctx context.Context, gun, role string) ([]KeyRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyCols+` FROM trust_keys WHERE gun = ? AND role = ? ORDER BY seq DESC`, gun, role)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KeyRow
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *sqlStore) Key(ctx context.Context, gun, keyID string) (KeyRow, error) {
	return scanKey(s.db.QueryRowContext(ctx, `SELECT `+keyCols+` FROM trust_keys WHERE gun = ? AND key_id = ?`, gun, keyID))
}

func (s *sqlStore) AddKey(ctx context.Context, k KeyRow) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM trust_keys WHERE gun = ?`, k.GUN).Scan(&k.Seq); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO trust_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			k.GUN, k.Repo, k.Role, k.KeyID, k.VaultKey, k.Public, k.Seq, k.Created)
		return err
	})
}

func collect[T any](ctx context.Context, tx *sql.Tx, q string, scan func(interface{ Scan(...any) error }) (T, error), args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *sqlStore) DeleteGUNs(ctx context.Context, gun, repo string, change Change) (keys []KeyRow, metas []MetaRow, err error) {
	col, val := "gun", gun
	if gun == "" {
		col, val = "repo", repo
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if keys, err = collect(ctx, tx, `SELECT `+keyCols+` FROM trust_keys WHERE `+col+` = ?`, scanKey, val); err != nil {
			return err
		}
		if metas, err = collect(ctx, tx, `SELECT `+metaCols+` FROM trust_meta WHERE `+col+` = ?`, scanMeta, val); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM trust_keys WHERE `+col+` = ?`, val); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM trust_meta WHERE `+col+` = ?`, val); err != nil {
			return err
		}
		gunsSeen := map[string]bool{}
		for _, m := range metas {
			if gunsSeen[m.GUN] {
				continue
			}
			gunsSeen[m.GUN] = true
			c := change
			c.GUN = m.GUN
			if err := insertChange(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	return keys, metas, err
}

func (s *sqlStore) DeleteAll(ctx context.Context) (keys []KeyRow, metas []MetaRow, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if keys, err = collect(ctx, tx, `SELECT `+keyCols+` FROM trust_keys`, scanKey); err != nil {
			return err
		}
		if metas, err = collect(ctx, tx, `SELECT `+metaCols+` FROM trust_meta`, scanMeta); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM trust_keys`, `DELETE FROM trust_meta`, `DELETE FROM trust_changes`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	return keys, metas, err
}

func (s *sqlStore) Changes(ctx context.Context, gun string, after int64, limit int, reverse bool) ([]Change, error) {
	q := `SELECT id, gun, version, sha256, category, created_at FROM trust_changes WHERE `
	var args []any
	if reverse {
		q += `id < ?`
	} else {
		q += `id > ?`
	}
	args = append(args, after)
	if gun != "" {
		q += ` AND gun = ?`
		args = append(args, gun)
	}
	if reverse {
		q += ` ORDER BY id DESC`
	} else {
		q += ` ORDER BY id ASC`
	}
	q += ` LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.ID, &c.GUN, &c.Version, &c.SHA256, &c.Category, &c.Created); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *sqlStore) Status(ctx context.Context) (string, error) {
	var st string
	err := s.db.QueryRowContext(ctx, `SELECT status FROM trust_policy WHERE id = 1`).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return StatusDisabled, nil
	}
	return st, err
}

func (s *sqlStore) SetStatus(ctx context.Context, status string, now int64) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE trust_policy SET status = ?, updated_at = ? WHERE id = 1`, status, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			_, err = tx.ExecContext(ctx, `INSERT INTO trust_policy (id, status, updated_at) VALUES (1, ?, ?)`, status, now)
		}
		return err
	})
}
