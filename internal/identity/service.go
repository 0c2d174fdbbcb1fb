package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/store"
)

// SystemIdentityName is the name of the registry's system-assigned identity.
const SystemIdentityName = "registry"

// AdminName is the name of the administrator created on first start.
const AdminName = "admin"

// Errors returned (wrapped) by the Service.
var (
	// ErrInvalidCredentials is the one error every failed authentication returns, whatever
	// the reason (unknown name, wrong secret, expired secret), so callers learn nothing.
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrNotFound           = store.ErrNotFound
	ErrConflict           = errors.New("already exists")
	ErrInvalid            = errors.New("invalid argument")
	// ErrAmbiguous: a name matches several principals of different kinds; use the id.
	ErrAmbiguous = errors.New("ambiguous reference")
	// ErrRefused is matched by a deletion that a delete guard refused.
	ErrRefused = errors.New("deletion refused")
)

// refusal is a delete guard's error: its message is the guard's, and it matches ErrRefused.
type refusal struct{ err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{r.err, ErrRefused} }

// Info is a principal as the management API shows it.
type Info struct {
	Principal
	CreatedAt time.Time `json:"createdAt"`
	// Credentials are a service principal's client secrets (never their values).
	Credentials []CredentialInfo `json:"credentials,omitempty"`
}

// CredentialInfo describes one client secret of a service principal.
type CredentialInfo struct {
	ID        string    `json:"id"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Secret is a newly created client secret: Value is shown once and never stored.
type Secret struct {
	CredentialInfo
	Value string `json:"value"`
}

// DeleteGuard is asked before any identity is deleted; a non-nil error refuses the
// deletion and is returned to the user as is.
type DeleteGuard func(ctx context.Context, p Principal) error

// DeletedHook is called after a principal has been deleted, so that other parts can drop
// what they keep for it (role assignments, access policies).
type DeletedHook func(ctx context.Context, p Principal) error

// Service owns principals and their credentials, in the "identity" tables of the metadata
// store. It knows nothing of HTTP.
type Service struct {
	db  *store.DB
	now func() time.Time

	tenantID string
	system   Principal

	// logins remembers recent successful logins (logincache.go).
	logins *loginCache
	// checkPassword verifies a user password against its argon2id hash (tests count it).
	checkPassword func(encoded, password string) (bool, error)

	mu      sync.RWMutex
	guards  []DeleteGuard
	deleted []DeletedHook

	// live caches principals found to exist (Exists), by id, with when they were seen.
	liveMu sync.Mutex
	live   map[string]time.Time
}

// Options tune a Service; the zero value is the production default.
type Options struct {
	// Now is the clock (tests move it).
	Now func() time.Time
}

var migrations = []string{
	`CREATE TABLE identity_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
	CREATE TABLE identity_principals (
		id TEXT PRIMARY KEY,
		kind TEXT NOT NULL,
		name TEXT NOT NULL,
		client_id TEXT,
		secret_hash TEXT,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL);
	CREATE UNIQUE INDEX identity_principals_kind_name ON identity_principals (kind, name);
	CREATE UNIQUE INDEX identity_principals_client_id ON identity_principals (client_id);
	CREATE INDEX identity_principals_name ON identity_principals (name);
	CREATE TABLE identity_secrets (
		id TEXT PRIMARY KEY,
		principal_id TEXT NOT NULL,
		hash TEXT NOT NULL,
		hint TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL);
	CREATE INDEX identity_secrets_principal ON identity_secrets (principal_id);
	CREATE TABLE identity_refresh_tokens (
		id TEXT PRIMARY KEY,
		principal_id TEXT NOT NULL,
		hash TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL);
	CREATE INDEX identity_refresh_tokens_principal ON identity_refresh_tokens (principal_id)`,
	// Refresh tokens are bound to the audience they were issued for. Tokens issued before
	// (which cannot tell docker's identity token from 'coffer login''s) are kept for the
	// registry only ("coffer-registry", token.RegistryService): 'coffer login' again gets a
	// management one.
	`ALTER TABLE identity_refresh_tokens ADD COLUMN audience TEXT NOT NULL DEFAULT 'coffer-registry'`,
}

// Open prepares the identity tables, the tenant id and the registry's system-assigned
// identity (both created on first start and kept).
func Open(ctx context.Context, db *store.DB, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{db: db, now: opts.Now, live: map[string]time.Time{}, logins: newLoginCache(loginCacheMax, loginCacheTTL), checkPassword: checkPassword}
	if err := db.Migrate(ctx, "identity", migrations); err != nil {
		return nil, err
	}
	tenant, err := s.ensureMeta(ctx, "tenant_id", func() string { return uuid.NewString() })
	if err != nil {
		return nil, fmt.Errorf("tenant id: %w", err)
	}
	s.tenantID = tenant
	sys, err := s.lookupOne(ctx, `kind = ? AND name = ?`, string(KindSystemIdentity), SystemIdentityName)
	if errors.Is(err, ErrNotFound) {
		sys = Principal{ID: uuid.NewString(), Kind: KindSystemIdentity, Name: SystemIdentityName, ClientID: uuid.NewString()}
		err = s.insert(ctx, sys, "")
		if errors.Is(err, ErrConflict) { // another replica created it first
			sys, err = s.lookupOne(ctx, `kind = ? AND name = ?`, string(KindSystemIdentity), SystemIdentityName)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("system-assigned identity: %w", err)
	}
	s.system = sys
	return s, nil
}

// TenantID is this server's tenant id.
func (s *Service) TenantID() string { return s.tenantID }

// SystemIdentity is the registry's system-assigned identity.
func (s *Service) SystemIdentity() Principal { return s.system }

// AddDeleteGuard registers a guard asked before any identity is deleted.
func (s *Service) AddDeleteGuard(g DeleteGuard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.guards = append(s.guards, g)
}

// OnDeleted registers a hook called after any identity has been deleted.
func (s *Service) OnDeleted(h DeletedHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, h)
}

func (s *Service) meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM identity_meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (s *Service) ensureMeta(ctx context.Context, key string, gen func() string) (string, error) {
	var out string
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM identity_meta WHERE key = ?`, key).Scan(&out)
		if errors.Is(err, sql.ErrNoRows) {
			out = gen()
			_, err = tx.ExecContext(ctx, `INSERT INTO identity_meta (key, value) VALUES (?, ?)`, key, out)
		}
		return err
	})
	return out, err
}
