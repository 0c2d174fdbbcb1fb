package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
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

	mu      sync.RWMutex
	guards  []DeleteGuard
	deleted []DeletedHook
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
}

// Open prepares the identity tables, the tenant id and the registry's system-assigned
// identity (both created on first start and kept).
func Open(ctx context.Context, db *store.DB, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{db: db, now: opts.Now}
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

// NeedsBootstrap reports whether the administrator has never been created.
func (s *Service) NeedsBootstrap(ctx context.Context) (bool, error) {
	v, err := s.meta(ctx, "admin_created")
	if err != nil {
		return false, err
	}
	return v == "", nil
}

// BootstrapAdmin creates the administrator "admin" with password and records that the
// bootstrap happened, so that it never happens again (even if admin is later deleted).
func (s *Service) BootstrapAdmin(ctx context.Context, password string) (Principal, error) {
	hash, err := hashPassword(password)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindUser, Name: AdminName}
	now := s.now().Unix()
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_principals WHERE kind = ? AND name = ?`,
			string(KindUser), AdminName).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO identity_principals (id, kind, name, client_id, secret_hash, created_at, updated_at)
				VALUES (?, ?, ?, NULL, ?, ?, ?)`, p.ID, string(p.Kind), p.Name, hash, now, now); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_meta (key, value) VALUES ('admin_created', ?)`, fmt.Sprint(now))
		return err
	})
	if err != nil {
		return Principal{}, fmt.Errorf("create administrator: %w", err)
	}
	return s.lookupOne(ctx, `kind = ? AND name = ?`, string(KindUser), AdminName)
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

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func validName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", ErrInvalid, what, name)
	}
	return nil
}

const principalColumns = `id, kind, name, COALESCE(client_id, ''), created_at`

func scanPrincipal(sc interface{ Scan(...any) error }) (Info, error) {
	var info Info
	var kind string
	var created int64
	if err := sc.Scan(&info.ID, &kind, &info.Name, &info.ClientID, &created); err != nil {
		return info, err
	}
	info.Kind = Kind(kind)
	info.CreatedAt = time.Unix(created, 0).UTC()
	return info, nil
}

func (s *Service) lookup(ctx context.Context, where string, args ...any) ([]Info, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+principalColumns+` FROM identity_principals WHERE `+where+` ORDER BY kind, name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		info, err := scanPrincipal(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, rows.Err()
}

func (s *Service) lookupOne(ctx context.Context, where string, args ...any) (Principal, error) {
	list, err := s.lookup(ctx, where, args...)
	if err != nil {
		return Principal{}, err
	}
	switch len(list) {
	case 0:
		return Principal{}, ErrNotFound
	case 1:
		return list[0].Principal, nil
	default:
		return Principal{}, ErrAmbiguous
	}
}

func (s *Service) insert(ctx context.Context, p Principal, secretHash string) error {
	now := s.now().Unix()
	var clientID, hash any
	if p.ClientID != "" {
		clientID = p.ClientID
	}
	if secretHash != "" {
		hash = secretHash
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO identity_principals (id, kind, name, client_id, secret_hash, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, p.ID, string(p.Kind), p.Name, clientID, hash, now, now)
	if err != nil && isUniqueViolation(err) {
		return fmt.Errorf("%w: a %s named %q", ErrConflict, kindNoun(p.Kind), p.Name)
	}
	return err
}

func isUniqueViolation(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "unique") || strings.Contains(msg, "duplicate key")
}

func kindNoun(k Kind) string {
	switch k {
	case KindUser:
		return "user"
	case KindServicePrincipal:
		return "service principal"
	case KindManagedIdentity:
		return "managed identity"
	case KindSystemIdentity:
		return "system-assigned identity"
	case KindRepositoryToken:
		return "repository token"
	}
	return string(k)
}

// Get returns the principal with object id objectID.
func (s *Service) Get(ctx context.Context, objectID string) (Principal, error) {
	p, err := s.lookupOne(ctx, `id = ?`, objectID)
	if err != nil {
		return Principal{}, fmt.Errorf("principal %q: %w", objectID, err)
	}
	return p, nil
}

// Resolve finds a principal by object id, client id, or name (of a user, service
// principal, managed identity, the system identity or a repository token). A name shared by
// principals of different kinds is ambiguous: use the id.
func (s *Service) Resolve(ctx context.Context, ref string) (Principal, error) {
	if ref == "" {
		return Principal{}, fmt.Errorf("%w: empty principal reference", ErrInvalid)
	}
	list, err := s.lookup(ctx, `id = ? OR client_id = ?`, ref, ref)
	if err != nil {
		return Principal{}, err
	}
	if len(list) == 0 {
		list, err = s.lookup(ctx, `name = ?`, ref)
		if err != nil {
			return Principal{}, err
		}
	}
	switch len(list) {
	case 0:
		return Principal{}, fmt.Errorf("no user, service principal, managed identity or token %q: %w", ref, ErrNotFound)
	case 1:
		return list[0].Principal, nil
	default:
		kinds := make([]string, len(list))
		for i, p := range list {
			kinds[i] = kindNoun(p.Kind) + " " + p.ID
		}
		return Principal{}, fmt.Errorf("%w: %q names %s; use the object id", ErrAmbiguous, ref, strings.Join(kinds, ", "))
	}
}

// resolveKind finds a principal of one kind by name, object id or client id.
func (s *Service) resolveKind(ctx context.Context, kind Kind, ref string) (Principal, error) {
	p, err := s.lookupOne(ctx, `kind = ? AND (name = ? OR id = ? OR client_id = ?)`, string(kind), ref, ref, ref)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("no %s %q: %w", kindNoun(kind), ref, ErrNotFound)
	}
	return p, err
}

// List returns the principals of one kind ("" for every kind).
func (s *Service) List(ctx context.Context, kind Kind) ([]Info, error) {
	var list []Info
	var err error
	if kind == "" {
		list, err = s.lookup(ctx, `1 = 1`)
	} else {
		list, err = s.lookup(ctx, `kind = ?`, string(kind))
	}
	if err != nil {
		return nil, err
	}
	if kind == KindServicePrincipal || kind == "" {
		for i := range list {
			if list[i].Kind == KindServicePrincipal {
				if list[i].Credentials, err = s.credentials(ctx, list[i].ID); err != nil {
					return nil, err
				}
			}
		}
	}
	return list, nil
}

// Show returns one principal of kind by name, object id or client id.
func (s *Service) Show(ctx context.Context, kind Kind, ref string) (Info, error) {
	p, err := s.resolveKind(ctx, kind, ref)
	if err != nil {
		return Info{}, err
	}
	list, err := s.lookup(ctx, `id = ?`, p.ID)
	if err != nil || len(list) != 1 {
		return Info{}, fmt.Errorf("no %s %q: %w", kindNoun(kind), ref, ErrNotFound)
	}
	info := list[0]
	if kind == KindServicePrincipal {
		if info.Credentials, err = s.credentials(ctx, info.ID); err != nil {
			return Info{}, err
		}
	}
	return info, nil
}

// Delete removes a principal of kind (by name, object id or client id) with its secrets and
// refresh tokens, after every delete guard agreed. The system identity cannot be deleted.
func (s *Service) Delete(ctx context.Context, kind Kind, ref string) error {
	if kind == KindSystemIdentity {
		return fmt.Errorf("%w: the registry's system-assigned identity cannot be deleted", ErrInvalid)
	}
	p, err := s.resolveKind(ctx, kind, ref)
	if err != nil {
		return err
	}
	s.mu.RLock()
	guards := append([]DeleteGuard(nil), s.guards...)
	hooks := append([]DeletedHook(nil), s.deleted...)
	s.mu.RUnlock()
	for _, g := range guards {
		if err := g(ctx, p); err != nil {
			return refusal{err}
		}
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM identity_secrets WHERE principal_id = ?`,
			`DELETE FROM identity_refresh_tokens WHERE principal_id = ?`,
			`DELETE FROM identity_principals WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, p.ID); err != nil {
				return fmt.Errorf("delete %s %q: %w", kindNoun(kind), ref, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range hooks {
		if err := h(ctx, p); err != nil {
			return fmt.Errorf("%s %q was deleted, but cleaning up after it failed (remove its grants with 'coffer role assignment delete'): %w", kindNoun(kind), ref, err)
		}
	}
	return nil
}

// CreateUser creates a user with a password (at least 8 characters).
func (s *Service) CreateUser(ctx context.Context, name, password string) (Principal, error) {
	if err := validName("user", name); err != nil {
		return Principal{}, err
	}
	if err := validPassword(password); err != nil {
		return Principal{}, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindUser, Name: name}
	if err := s.insert(ctx, p, hash); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func validPassword(pw string) error {
	if len(pw) < 8 {
		return fmt.Errorf("%w: a password needs at least 8 characters", ErrInvalid)
	}
	if len(pw) > 1024 {
		return fmt.Errorf("%w: a password has at most 1024 bytes", ErrInvalid)
	}
	return nil
}

// SetPassword changes a user's password and revokes the user's refresh tokens.
func (s *Service) SetPassword(ctx context.Context, name, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	p, err := s.resolveKind(ctx, KindUser, name)
	if err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE identity_principals SET secret_hash = ?, updated_at = ? WHERE id = ?`,
			hash, s.now().Unix(), p.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE principal_id = ?`, p.ID)
		return err
	})
}

// DefaultSecretLifetime is the lifetime of a client secret when none is asked for.
const DefaultSecretLifetime = 365 * 24 * time.Hour

// CreateServicePrincipal creates a service principal with one client secret that expires
// after lifetime (DefaultSecretLifetime when 0). The secret's value is returned once.
func (s *Service) CreateServicePrincipal(ctx context.Context, displayName string, lifetime time.Duration) (Info, Secret, error) {
	if err := validName("service principal", displayName); err != nil {
		return Info{}, Secret{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindServicePrincipal, Name: displayName, ClientID: uuid.NewString()}
	if err := s.insert(ctx, p, ""); err != nil {
		return Info{}, Secret{}, err
	}
	sec, err := s.addSecret(ctx, p.ID, lifetime, false)
	if err != nil {
		return Info{}, Secret{}, err
	}
	info, err := s.Show(ctx, KindServicePrincipal, p.ID)
	return info, sec, err
}

// ResetCredential adds a new client secret to a service principal; unless keep is set the
// existing secrets are removed (like `az ad sp credential reset` without --append).
func (s *Service) ResetCredential(ctx context.Context, ref string, lifetime time.Duration, keep bool) (Info, Secret, error) {
	p, err := s.resolveKind(ctx, KindServicePrincipal, ref)
	if err != nil {
		return Info{}, Secret{}, err
	}
	sec, err := s.addSecret(ctx, p.ID, lifetime, !keep)
	if err != nil {
		return Info{}, Secret{}, err
	}
	info, err := s.Show(ctx, KindServicePrincipal, p.ID)
	return info, sec, err
}

func (s *Service) addSecret(ctx context.Context, principalID string, lifetime time.Duration, replace bool) (Secret, error) {
	if lifetime == 0 {
		lifetime = DefaultSecretLifetime
	}
	if lifetime < 0 {
		return Secret{}, fmt.Errorf("%w: a secret lifetime must be positive", ErrInvalid)
	}
	value, err := newSecret()
	if err != nil {
		return Secret{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	sec := Secret{CredentialInfo: CredentialInfo{ID: uuid.NewString(), Hint: value[:3], CreatedAt: now, ExpiresAt: now.Add(lifetime)}, Value: value}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_secrets WHERE principal_id = ?`, principalID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM identity_refresh_tokens WHERE principal_id = ?`, principalID); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_secrets (id, principal_id, hash, hint, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			sec.ID, principalID, hashSecret(value), sec.Hint, sec.CreatedAt.Unix(), sec.ExpiresAt.Unix())
		return err
	})
	if err != nil {
		return Secret{}, fmt.Errorf("store client secret: %w", err)
	}
	return sec, nil
}

func (s *Service) credentials(ctx context.Context, principalID string) ([]CredentialInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hint, created_at, expires_at FROM identity_secrets WHERE principal_id = ? ORDER BY created_at, id`, principalID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []CredentialInfo{}
	for rows.Next() {
		var c CredentialInfo
		var created, expires int64
		if err := rows.Scan(&c.ID, &c.Hint, &created, &expires); err != nil {
			return nil, err
		}
		c.CreatedAt, c.ExpiresAt = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// CreateManagedIdentity creates a user-assigned managed identity.
func (s *Service) CreateManagedIdentity(ctx context.Context, name string) (Principal, error) {
	if err := validName("managed identity", name); err != nil {
		return Principal{}, err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindManagedIdentity, Name: name, ClientID: uuid.NewString()}
	if err := s.insert(ctx, p, ""); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// ManagedIdentity finds the identity a managed-identity token request names: by client id
// or object (principal) id among user-assigned identities and the system identity; with
// both empty, the system-assigned identity.
func (s *Service) ManagedIdentity(ctx context.Context, clientID, objectID string) (Principal, error) {
	if clientID == "" && objectID == "" {
		return s.system, nil
	}
	where, arg := `client_id = ?`, clientID
	if clientID == "" {
		where, arg = `id = ?`, objectID
	}
	p, err := s.lookupOne(ctx, `(kind = ? OR kind = ?) AND `+where, string(KindManagedIdentity), string(KindSystemIdentity), arg)
	if err != nil {
		return Principal{}, fmt.Errorf("no managed identity %q: %w", arg, err)
	}
	return p, nil
}

// CreateRepositoryToken creates a repository-scoped token (a credential only; its scope map
// belongs to the access part) and returns its password, once.
func (s *Service) CreateRepositoryToken(ctx context.Context, name string) (Principal, string, error) {
	if err := validName("repository token", name); err != nil {
		return Principal{}, "", err
	}
	pw, err := newSecret()
	if err != nil {
		return Principal{}, "", err
	}
	p := Principal{ID: uuid.NewString(), Kind: KindRepositoryToken, Name: name}
	if err := s.insert(ctx, p, hashSecret(pw)); err != nil {
		return Principal{}, "", err
	}
	return p, pw, nil
}

// DeleteRepositoryToken deletes a repository-scoped token by name.
func (s *Service) DeleteRepositoryToken(ctx context.Context, name string) error {
	return s.Delete(ctx, KindRepositoryToken, name)
}

// Authenticate checks a username and secret: a user's name and password, a service
// principal's client id and client secret, or a repository token's name and password.
// Every failure returns ErrInvalidCredentials; the work done does not depend on whether the
// name exists.
func (s *Service) Authenticate(ctx context.Context, username, secret string) (Principal, error) {
	if username == "" || secret == "" || len(username) > 256 || len(secret) > 1024 {
		checkPassword(dummyHash, secret)
		return Principal{}, ErrInvalidCredentials
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, name, COALESCE(client_id, ''), COALESCE(secret_hash, '') FROM identity_principals
		WHERE (kind = ? AND name = ?) OR (kind = ? AND name = ?) OR (kind = ? AND client_id = ?)`,
		string(KindUser), username, string(KindRepositoryToken), username, string(KindServicePrincipal), username)
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	type cand struct {
		p    Principal
		hash string
	}
	var cands []cand
	for rows.Next() {
		var c cand
		var kind string
		if err := rows.Scan(&c.p.ID, &kind, &c.p.Name, &c.p.ClientID, &c.hash); err != nil {
			rows.Close()
			return Principal{}, fmt.Errorf("authenticate: %w", err)
		}
		c.p.Kind = Kind(kind)
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	var found *Principal
	checkedPassword := false
	for i := range cands {
		c := &cands[i]
		var ok bool
		switch c.p.Kind {
		case KindUser:
			checkedPassword = true
			ok, _ = checkPassword(c.hash, secret)
		case KindRepositoryToken:
			ok = c.hash != "" && checkSecret(c.hash, secret)
		case KindServicePrincipal:
			ok, err = s.checkClientSecret(ctx, c.p.ID, secret)
			if err != nil {
				return Principal{}, err
			}
		}
		if ok && found == nil {
			found = &c.p
		}
	}
	if !checkedPassword {
		// Equalize timing with a user login so names cannot be probed.
		checkPassword(dummyHash, secret)
	}
	if found == nil {
		return Principal{}, ErrInvalidCredentials
	}
	return *found, nil
}

// AuthenticateClient checks a service principal's client id and secret (OAuth2 client
// credentials).
func (s *Service) AuthenticateClient(ctx context.Context, clientID, secret string) (Principal, error) {
	p, err := s.lookupOne(ctx, `kind = ? AND client_id = ?`, string(KindServicePrincipal), clientID)
	if err != nil {
		checkSecret(dummyHash, secret)
		if errors.Is(err, ErrNotFound) {
			return Principal{}, ErrInvalidCredentials
		}
		return Principal{}, err
	}
	ok, err := s.checkClientSecret(ctx, p.ID, secret)
	if err != nil {
		return Principal{}, err
	}
	if !ok {
		return Principal{}, ErrInvalidCredentials
	}
	return p, nil
}

func (s *Service) checkClientSecret(ctx context.Context, principalID, secret string) (bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash FROM identity_secrets WHERE principal_id = ? AND expires_at > ?`,
		principalID, s.now().Unix())
	if err != nil {
		return false, fmt.Errorf("authenticate: %w", err)
	}
	defer rows.Close()
	ok := false
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return false, err
		}
		if checkSecret(h, secret) {
			ok = true
		}
	}
	return ok, rows.Err()
}
