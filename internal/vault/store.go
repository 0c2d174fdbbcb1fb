package vault

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

var migrations = []string{`
CREATE TABLE vault_vaults (
	name TEXT PRIMARY KEY,
	props TEXT NOT NULL,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL
);
CREATE TABLE vault_keys (
	vault TEXT NOT NULL,
	name TEXT NOT NULL,
	deleted INTEGER NOT NULL DEFAULT 0,
	purge_at INTEGER NOT NULL DEFAULT 0,
	policy TEXT NOT NULL DEFAULT '',
	notified_version TEXT NOT NULL DEFAULT '',
	next_seq INTEGER NOT NULL DEFAULT 1,
	PRIMARY KEY (vault, name)
);
CREATE TABLE vault_key_versions (
	vault TEXT NOT NULL,
	name TEXT NOT NULL,
	version TEXT NOT NULL,
	seq INTEGER NOT NULL,
	kty TEXT NOT NULL,
	key_ops TEXT NOT NULL,
	public_jwk TEXT NOT NULL,
	sealed BLOB NOT NULL,
	enabled INTEGER NOT NULL,
	nbf INTEGER NOT NULL DEFAULT 0,
	exp INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL,
	tags TEXT NOT NULL DEFAULT '{}',
	PRIMARY KEY (vault, name, version)
);
CREATE INDEX vault_key_versions_seq ON vault_key_versions (vault, name, seq)`,
	// Key names are case-insensitive: every lookup is by the folded name. Not unique: a
	// data directory from before may hold keys that differ only in case (see keyByName).
	`CREATE INDEX vault_keys_folded ON vault_keys (vault, lower(name))`,
	// hsm is the token object holding an HSM-protected version ('' = software).
	`ALTER TABLE vault_key_versions ADD COLUMN hsm TEXT NOT NULL DEFAULT ''`,
}

// versionRow is a stored key version.
type versionRow struct {
	Vault, Name, Version string
	Seq                  int64
	Kty                  string
	KeyOps               []string
	Public               keys.JWK
	Sealed               []byte
	Enabled              bool
	NBF, Exp             int64 // Unix seconds, 0 = none
	Created, Updated     int64
	Tags                 map[string]string
	// HSM is the reference of the token object that holds the material ("" = software).
	HSM string
}

// keyRow is a stored key (the part shared by its versions).
type keyRow struct {
	Vault, Name     string
	Deleted         int64 // Unix seconds, 0 = live
	PurgeAt         int64
	Policy          string
	NotifiedVersion string
	NextSeq         int64
}

type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func getVaultRow(ctx context.Context, q queryer, name string) (Vault, error) {
	var v Vault
	var props string
	var created, updated int64
	err := q.QueryRowContext(ctx, `SELECT props, created, updated FROM vault_vaults WHERE name = ?`, name).Scan(&props, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("%w: vault %q does not exist", ErrNotFound, name)
	}
	if err != nil {
		return v, fmt.Errorf("read vault %s: %w", name, err)
	}
	if err := json.Unmarshal([]byte(props), &v); err != nil {
		return v, fmt.Errorf("read vault %s: %w", name, err)
	}
	v.Name, v.Created, v.Updated = name, time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC()
	return v, nil
}

func listVaultRows(ctx context.Context, q queryer) ([]Vault, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM vault_vaults ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list vaults: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	var out []Vault
	for _, n := range names {
		v, err := getVaultRow(ctx, q, n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func putVaultRow(ctx context.Context, q queryer, v Vault, insert bool) error {
	stored := v
	stored.URL = ""
	props, _ := json.Marshal(stored)
	var err error
	if insert {
		_, err = q.ExecContext(ctx, `INSERT INTO vault_vaults (name, props, created, updated) VALUES (?, ?, ?, ?)`,
			v.Name, string(props), v.Created.Unix(), v.Updated.Unix())
	} else {
		_, err = q.ExecContext(ctx, `UPDATE vault_vaults SET props = ?, updated = ? WHERE name = ?`, string(props), v.Updated.Unix(), v.Name)
	}
	if insert && store.IsUniqueViolation(err) {
		return fmt.Errorf("%w: vault %q already exists", ErrConflict, v.Name)
	}
	if err != nil {
		return fmt.Errorf("store vault %s: %w", v.Name, err)
	}
	return nil
}

// getKeyRows returns the keys of vault whose names equal name but for case (key names are
// case-insensitive; see keyByName), live or deleted.
func getKeyRows(ctx context.Context, q queryer, vault, name string) ([]keyRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, deleted, purge_at, policy, notified_version, next_seq FROM vault_keys WHERE vault = ? AND lower(name) = ? ORDER BY name`,
		vault, strings.ToLower(name))
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	defer rows.Close()
	var out []keyRow
	for rows.Next() {
		k := keyRow{Vault: vault}
		if err := rows.Scan(&k.Name, &k.Deleted, &k.PurgeAt, &k.Policy, &k.NotifiedVersion, &k.NextSeq); err != nil {
			return nil, fmt.Errorf("read key %s: %w", name, err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	return out, nil
}

// keyByName picks the key name addresses among the keys whose names equal it but for case:
// the one spelled exactly so, else the only one. Names are case-insensitive, as in Azure
// Key Vault, so there is at most one, except in a data directory from before this rule,
// which may hold keys that differ only in case: each of those is still served by its
// exact name, and another spelling, which could mean either, is refused.
func keyByName(rows []keyRow, vault, name string) (int, error) {
	for i, k := range rows {
		if k.Name == name {
			return i, nil
		}
	}
	switch len(rows) {
	case 0:
		return -1, fmt.Errorf("%w: key %q does not exist in vault %q", ErrNotFound, name, vault)
	case 1:
		return 0, nil
	}
	names := make([]string, len(rows))
	for i, k := range rows {
		names[i] = strconv.Quote(k.Name)
	}
	return -1, fmt.Errorf("%w: key name %q matches keys %s of vault %q, which differ only in case (they were created before key names became case-insensitive): use the exact name",
		ErrConflict, name, strings.Join(names, ", "), vault)
}

// getKeyRow returns the key name addresses (see keyByName), live or deleted.
func getKeyRow(ctx context.Context, q queryer, vault, name string) (keyRow, error) {
	rows, err := getKeyRows(ctx, q, vault, name)
	if err != nil {
		return keyRow{}, err
	}
	i, err := keyByName(rows, vault, name)
	if err != nil {
		return keyRow{Vault: vault, Name: name}, err
	}
	return rows[i], nil
}

const versionCols = `vault, name, version, seq, kty, key_ops, public_jwk, sealed, enabled, nbf, exp, created, updated, tags, hsm`

func scanVersion(sc interface{ Scan(...any) error }) (versionRow, error) {
	var r versionRow
	var ops, pub, tags string
	var enabled int
	if err := sc.Scan(&r.Vault, &r.Name, &r.Version, &r.Seq, &r.Kty, &ops, &pub, &r.Sealed, &enabled, &r.NBF, &r.Exp,
		&r.Created, &r.Updated, &tags, &r.HSM); err != nil {
		return r, err
	}
	r.Enabled = enabled != 0
	if err := json.Unmarshal([]byte(ops), &r.KeyOps); err != nil {
		return r, fmt.Errorf("read key version: %w", err)
	}
	if err := json.Unmarshal([]byte(pub), &r.Public); err != nil {
		return r, fmt.Errorf("read key version: %w", err)
	}
	if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
		return r, fmt.Errorf("read key version: %w", err)
	}
	return r, nil
}

func listVersionRows(ctx context.Context, q queryer, vault, name string) ([]versionRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+versionCols+` FROM vault_key_versions WHERE vault = ? AND name = ? ORDER BY seq`, vault, name)
	if err != nil {
		return nil, fmt.Errorf("read key versions: %w", err)
	}
	defer rows.Close()
	var out []versionRow
	for rows.Next() {
		r, err := scanVersion(rows)
		if err != nil {
			return nil, fmt.Errorf("read key versions: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// getVersionRow reads one version of the key named exactly name.
func getVersionRow(ctx context.Context, q queryer, vault, name, version string) (versionRow, error) {
	r, err := scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+` FROM vault_key_versions WHERE vault = ? AND name = ? AND version = ?`, vault, name, version))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: key %q has no version %q", ErrNotFound, name, version)
	}
	if err != nil {
		return r, fmt.Errorf("read key version: %w", err)
	}
	return r, nil
}

func insertVersion(ctx context.Context, q queryer, r versionRow) error {
	ops, _ := json.Marshal(r.KeyOps)
	pub, _ := json.Marshal(r.Public)
	tags, _ := json.Marshal(r.Tags)
	enabled := 0
	if r.Enabled {
		enabled = 1
	}
	_, err := q.ExecContext(ctx, `INSERT INTO vault_key_versions (`+versionCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.Vault, r.Name, r.Version, r.Seq, r.Kty, string(ops), string(pub), r.Sealed, enabled, r.NBF, r.Exp, r.Created, r.Updated, string(tags), r.HSM)
	if err != nil {
		return fmt.Errorf("store key version: %w", err)
	}
	return nil
}

func updateVersionRow(ctx context.Context, q queryer, r versionRow) error {
	ops, _ := json.Marshal(r.KeyOps)
	pub, _ := json.Marshal(r.Public)
	tags, _ := json.Marshal(r.Tags)
	enabled := 0
	if r.Enabled {
		enabled = 1
	}
	_, err := q.ExecContext(ctx, `UPDATE vault_key_versions SET key_ops = ?, public_jwk = ?, enabled = ?, nbf = ?, exp = ?, updated = ?, tags = ?
		WHERE vault = ? AND name = ? AND version = ?`, string(ops), string(pub), enabled, r.NBF, r.Exp, r.Updated, string(tags), r.Vault, r.Name, r.Version)
	if err != nil {
		return fmt.Errorf("update key version: %w", err)
	}
	return nil
}
