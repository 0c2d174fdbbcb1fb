package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
)

// Directory is what the access part needs of the identity part: resolving a principal
// reference (object id, client id or name) and creating the credentials of repository
// tokens. *identity.Service implements it.
type Directory interface {
	Resolve(ctx context.Context, ref string) (identity.Principal, error)
	CreateRepositoryToken(ctx context.Context, name string) (identity.Principal, string, error)
	DeleteRepositoryToken(ctx context.Context, name string) error
}

// Errors a caller can tell apart (all wrapped with a message that says what to do).
var (
	// ErrInvalid marks bad input: an unknown role, a malformed scope, an unknown permission.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound marks a missing assignment, policy or repository token. It wraps
	// store.ErrNotFound.
	ErrNotFound = fmt.Errorf("access: %w", store.ErrNotFound)
	// ErrConflict marks a name already in use.
	ErrConflict = errors.New("conflict")
)

// Options tune a Service.
type Options struct {
	// CacheTTL bounds how long the in-memory copy of assignments, policies and scope maps
	// is used before it is read again from the store. Writes through this Service take
	// effect at once whatever the TTL; the TTL only bounds how long a change made by
	// another replica sharing the store takes to be seen. Default 5s.
	CacheTTL time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Service is the access part: built-in roles, role assignments, vault access policies,
// repository-token scope maps, and the decision function every API asks (Authorize).
// It knows nothing of HTTP.
type Service struct {
	db    *store.DB
	dir   Directory
	roles *roleTable
	ttl   time.Duration
	now   func() time.Time

	snap atomic.Pointer[snapshot]
	// loadMu serialises loads and invalidations, so a load that read the store before a
	// write committed can never be kept after that write's invalidation.
	loadMu sync.Mutex
}

var _ Authorizer = (*Service)(nil)

// migrations are the access part's schema steps (append-only).
var migrations = []string{
	`CREATE TABLE access_role_assignments (
		id TEXT PRIMARY KEY,
		role TEXT NOT NULL,
		principal_id TEXT NOT NULL,
		principal_kind TEXT NOT NULL,
		principal_name TEXT NOT NULL,
		scope TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		created_by TEXT NOT NULL,
		UNIQUE (role, principal_id, scope)
	);
	CREATE INDEX access_role_assignments_principal ON access_role_assignments (principal_id);
	CREATE TABLE access_vault_policies (
		vault TEXT NOT NULL,
		object_id TEXT NOT NULL,
		key_permissions TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (vault, object_id)
	);
	CREATE TABLE access_repository_tokens (
		name TEXT PRIMARY KEY,
		object_id TEXT NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		created_by TEXT NOT NULL
	);
	CREATE TABLE access_token_scopes (
		token_name TEXT NOT NULL,
		repository TEXT NOT NULL,
		actions TEXT NOT NULL,
		PRIMARY KEY (token_name, repository)
	)`,
	`CREATE TABLE access_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
}

// New opens the access part on db, creating its tables. dir may be nil: assignees are then
// taken as object ids as given, and repository tokens cannot be created.
func New(ctx context.Context, db *store.DB, dir Directory, opts Options) (*Service, error) {
	if dir == nil {
		return nil, errors.New("access: a Directory (the identity service) is required")
	}
	if err := db.Migrate(ctx, "access", migrations); err != nil {
		return nil, err
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{db: db, dir: dir, roles: newRoleTable(), ttl: opts.CacheTTL, now: opts.Now}, nil
}

// EnsureBootstrapOwner makes the administrator Owner at "/" once in the life of a data
// directory: admin is the administrator the identity part created on this start (nil when
// it was not created now). When admin is nil and the grant was never recorded (the process
// stopped between creating the administrator and granting the role, or the data directory
// predates the access part), the administrator is looked up by name. Once recorded, it is
// never granted again, so an operator may later remove it.
func (s *Service) EnsureBootstrapOwner(ctx context.Context, admin *identity.Principal) error {
	var done string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM access_meta WHERE key = 'bootstrap_owner'`).Scan(&done)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read bootstrap state: %w", err)
	}
	if done != "" {
		return nil
	}
	if admin == nil {
		p, err := s.dir.Resolve(ctx, identity.AdminName)
		switch {
		case errors.Is(err, identity.ErrNotFound), errors.Is(err, identity.ErrAmbiguous), errors.Is(err, identity.ErrInvalid):
			return nil // no (unambiguous) administrator: nothing to grant
		case err != nil:
			return fmt.Errorf("find the administrator: %w", err)
		case p.Kind != identity.KindUser:
			return nil
		}
		admin = &p
	}
	if _, _, err := s.AssignRole(ctx, RoleOwner, *admin, ScopeRoot); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO access_meta (key, value) VALUES ('bootstrap_owner', ?)
		ON CONFLICT (key) DO NOTHING`, admin.ID); err != nil {
		return fmt.Errorf("record bootstrap state: %w", err)
	}
	return nil
}

// RoleDefinitions lists the built-in roles.
func (s *Service) RoleDefinitions() []RoleDefinition { return BuiltinRoles() }

// RoleDefinition finds a built-in role by name (case-insensitive).
func (s *Service) RoleDefinition(name string) (RoleDefinition, error) {
	r, ok := s.roles.lookup(name)
	if !ok {
		return RoleDefinition{}, fmt.Errorf("%w: unknown role %q: run 'coffer role definition list' for the built-in roles", ErrInvalid, name)
	}
	return r.def, nil
}

// snapshot is the in-memory copy of everything Authorize reads.
type snapshot struct {
	loaded time.Time
	// grants per principal object id.
	grants map[string][]grant
	// policies per vault (lower case), per object id: the permitted key actions.
	policies map[string]map[string]map[Action]struct{}
	// tokens per object id of a repository token.
	tokens map[string]*tokenGrant
}

type grant struct {
	scope Scope
	role  *compiledRole
}

type tokenGrant struct {
	name    string
	entries []scopeMapEntry
}

// invalidate drops the in-memory copy; the next Authorize reads the store again. Every
// write calls it after its transaction commits.
func (s *Service) invalidate() {
	s.loadMu.Lock()
	s.snap.Store(nil)
	s.loadMu.Unlock()
}

// current returns a snapshot no older than the TTL, loading one when needed.
func (s *Service) current(ctx context.Context) (*snapshot, error) {
	if sn := s.snap.Load(); sn != nil && s.now().Sub(sn.loaded) < s.ttl {
		return sn, nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if sn := s.snap.Load(); sn != nil && s.now().Sub(sn.loaded) < s.ttl {
		return sn, nil
	}
	sn, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	s.snap.Store(sn)
	return sn, nil
}

func (s *Service) load(ctx context.Context) (*snapshot, error) {
	sn := &snapshot{
		loaded:   s.now(),
		grants:   map[string][]grant{},
		policies: map[string]map[string]map[Action]struct{}{},
		tokens:   map[string]*tokenGrant{},
	}
	rows, err := s.db.QueryContext(ctx, `SELECT role, principal_id, scope FROM access_role_assignments`)
	if err != nil {
		return nil, fmt.Errorf("read role assignments: %w", err)
	}
	for rows.Next() {
		var role, pid, scope string
		if err := rows.Scan(&role, &pid, &scope); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read role assignments: %w", err)
		}
		r, ok := s.roles.lookup(role)
		if !ok {
			continue // a role this version does not know grants nothing
		}
		sn.grants[pid] = append(sn.grants[pid], grant{scope: Scope(scope), role: r})
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read role assignments: %w", err)
	}

	rows, err = s.db.QueryContext(ctx, `SELECT vault, object_id, key_permissions FROM access_vault_policies`)
	if err != nil {
		return nil, fmt.Errorf("read access policies: %w", err)
	}
	for rows.Next() {
		var vault, oid, perms string
		if err := rows.Scan(&vault, &oid, &perms); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read access policies: %w", err)
		}
		set := map[Action]struct{}{}
		for _, p := range splitList(perms) {
			if a, ok := keyPermissionAction(p); ok {
				set[a] = struct{}{}
			}
		}
		if sn.policies[vault] == nil {
			sn.policies[vault] = map[string]map[Action]struct{}{}
		}
		sn.policies[vault][oid] = set
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read access policies: %w", err)
	}

	rows, err = s.db.QueryContext(ctx, `SELECT t.name, t.object_id, s.repository, s.actions
		FROM access_repository_tokens t LEFT JOIN access_token_scopes s ON s.token_name = t.name`)
	if err != nil {
		return nil, fmt.Errorf("read repository tokens: %w", err)
	}
	for rows.Next() {
		var name, oid string
		var repo, actions sql.NullString
		if err := rows.Scan(&name, &oid, &repo, &actions); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read repository tokens: %w", err)
		}
		tg := sn.tokens[oid]
		if tg == nil {
			tg = &tokenGrant{name: name}
			sn.tokens[oid] = tg
		}
		if repo.Valid {
			e, err := newScopeMapEntry(repo.String, splitList(actions.String))
			if err == nil {
				tg.entries = append(tg.entries, e)
			}
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read repository tokens: %w", err)
	}
	return sn, nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Authorize is the one decision function. It answers nil when req.Principal may perform
// req.Action at req.Scope, and an error wrapping ErrDenied that names the missing
// permission and how to grant it otherwise. The procedure:
//
//  1. A repository token (kind repositoryToken, or an object id registered as one) is
//     decided by its scope map alone: only registry pull/push/delete/metadata-write on a
//     repository its map names. Roles and policies never apply to it.
//  2. A key data-plane action (vault/keys/*) with VaultUsesPolicies set is decided by the
//     vault's access policies alone: the principal's policy must hold the permission.
//  3. Everything else is RBAC: allowed when some role assignment of the principal, at a
//     scope covering req.Scope, has a role that grants the action.
//
// Assignments, policies and scope maps are read from memory; writes through this Service
// replace the in-memory copy at once, so a revocation applies to the next call.
func (s *Service) Authorize(ctx context.Context, req Request) error {
	p := req.Principal
	if p.ID == "" {
		return fmt.Errorf("%w: the caller is not authenticated", ErrDenied)
	}
	scope := req.Scope.canonical()
	if repo := scope.repositoryOf(); repo != "" {
		if err := ValidateRepositoryName(repo); err != nil {
			return fmt.Errorf("%w: %s on %s: %v (the registry refuses the name, so no grant covers it)", ErrDenied, req.Action, scope, err)
		}
	}
	sn, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("authorize %s on %s: %w", req.Action, scope, err)
	}
	if tg, ok := sn.tokens[p.ID]; ok || p.Kind == identity.KindRepositoryToken {
		return s.decideToken(tg, p, req.Action, scope)
	}
	if req.VaultUsesPolicies && isKeyAction(req.Action) {
		return s.decidePolicy(sn, p, req.Action, scope)
	}
	for _, g := range sn.grants[p.ID] {
		if g.scope.Covers(scope) && g.role.allows(req.Action) {
			return nil
		}
	}
	return s.denyRBAC(p, req.Action, scope)
}

func isKeyAction(a Action) bool { return strings.HasPrefix(string(a), "vault/keys/") }

func (s *Service) decidePolicy(sn *snapshot, p identity.Principal, a Action, scope Scope) error {
	vault := scope.vaultOf()
	if vault != "" {
		if _, ok := sn.policies[vault][p.ID][a]; ok {
			return nil
		}
	}
	perm := strings.TrimPrefix(string(a), "vault/keys/")
	return fmt.Errorf("%w: principal %s lacks %s on %s: vault %q uses access policies, so roles do not apply to key operations; add an access policy with %s for object id %s ('coffer vault policy set %s --object-id %s --key-permissions %s')",
		ErrDenied, describe(p), a, scope, vault, perm, p.ID, vault, p.ID, perm)
}

func (s *Service) denyRBAC(p identity.Principal, a Action, scope Scope) error {
	role := s.roles.hint[a]
	if role == "" {
		role = RoleOwner
	}
	msg := fmt.Sprintf("principal %s lacks %s on %s: assign %q at %s or a scope above it ('coffer role assignment create --role %q --assignee %s --scope %s')",
		describe(p), a, scope, role, scope, role, p.ID, scope)
	if isKeyAction(a) {
		msg += fmt.Sprintf(", or, if the vault uses access policies, add an access policy with %s", strings.TrimPrefix(string(a), "vault/keys/"))
	}
	return fmt.Errorf("%w: %s", ErrDenied, msg)
}

func describe(p identity.Principal) string {
	if p.Name != "" && p.Name != p.ID {
		return fmt.Sprintf("%q (%s %s)", p.Name, kindOr(p.Kind), p.ID)
	}
	return fmt.Sprintf("%s (%s)", p.ID, kindOr(p.Kind))
}

func kindOr(k identity.Kind) string {
	if k == "" {
		return "principal"
	}
	return string(k)
}
