package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
)

// Session is a signed-in browser. The cookie carries a random id; the store keeps only its
// SHA-256, so a copy of the database cannot be replayed as a cookie. No token or password
// is kept: each request mints a short-lived token for Principal.
type Session struct {
	// Hash is the hex SHA-256 of the cookie's value.
	Hash      string
	Principal identity.Principal
	// CSRF is the token every state-changing form must carry.
	CSRF     string
	Created  time.Time
	LastSeen time.Time
	// Expires is the absolute expiry: the session ends then, however active.
	Expires time.Time
}

// SessionStore keeps sessions. They live in the metadata database, so every replica
// behind a load balancer sees the same sessions and a sign-out on one ends them on all.
type SessionStore interface {
	Create(ctx context.Context, s Session) error
	// Get returns the session with hash, or an error wrapping store.ErrNotFound.
	Get(ctx context.Context, hash string) (Session, error)
	Touch(ctx context.Context, hash string, at time.Time) error
	Delete(ctx context.Context, hash string) error
	// DeleteExpired removes sessions idle since before idleBefore or past their expiry.
	DeleteExpired(ctx context.Context, now, idleBefore time.Time) (int64, error)
}

var sessionMigrations = []string{
	`CREATE TABLE console_sessions (
		hash TEXT PRIMARY KEY,
		principal_id TEXT NOT NULL,
		principal_kind TEXT NOT NULL,
		principal_name TEXT NOT NULL,
		csrf TEXT NOT NULL,
		created INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		expires INTEGER NOT NULL
	);
	CREATE INDEX console_sessions_expires ON console_sessions (expires);`,
}

// SQLSessions is the SessionStore on the metadata database.
type SQLSessions struct{ db *store.DB }

// OpenSQLSessions migrates the console's tables and returns the store.
func OpenSQLSessions(ctx context.Context, db *store.DB) (*SQLSessions, error) {
	if err := db.Migrate(ctx, "console", sessionMigrations); err != nil {
		return nil, err
	}
	return &SQLSessions{db: db}, nil
}

func (s *SQLSessions) Create(ctx context.Context, se Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO console_sessions
		(hash, principal_id, principal_kind, principal_name, csrf, created, last_seen, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		se.Hash, se.Principal.ID, string(se.Principal.Kind), se.Principal.Name, se.CSRF,
		se.Created.UnixMilli(), se.LastSeen.UnixMilli(), se.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("store console session: %w", err)
	}
	return nil
}

func (s *SQLSessions) Get(ctx context.Context, hash string) (Session, error) {
	var se Session
	var kind string
	var created, seen, exp int64
	err := s.db.QueryRowContext(ctx, `SELECT hash, principal_id, principal_kind, principal_name, csrf, created, last_seen, expires
		FROM console_sessions WHERE hash = ?`, hash).Scan(&se.Hash, &se.Principal.ID, &kind, &se.Principal.Name, &se.CSRF, &created, &seen, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("console session: %w", store.ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("read console session: %w", err)
	}
	se.Principal.Kind = identity.Kind(kind)
	se.Created, se.LastSeen, se.Expires = time.UnixMilli(created), time.UnixMilli(seen), time.UnixMilli(exp)
	return se, nil
}

func (s *SQLSessions) Touch(ctx context.Context, hash string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET last_seen = ? WHERE hash = ?`, at.UnixMilli(), hash)
	return err
}

func (s *SQLSessions) Delete(ctx context.Context, hash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash = ?`, hash)
	return err
}

func (s *SQLSessions) DeleteExpired(ctx context.Context, now, idleBefore time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires <= ? OR last_seen <= ?`, now.UnixMilli(), idleBefore.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// newSecret returns 32 random bytes, base64url.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashID is the stored form of a cookie's session id.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}
