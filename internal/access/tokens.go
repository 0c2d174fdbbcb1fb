package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Scope-map actions of repository tokens, as in Azure Container Registry scope maps. They
// are the management contract's (package wire), which holds the scope-map grammar.
const (
	ScopeContentRead    = wire.ScopeContentRead   // pull: manifests, blobs, tag list, referrers
	ScopeContentWrite   = wire.ScopeContentWrite  // push: uploads, manifest and tag writes
	ScopeContentDelete  = wire.ScopeContentDelete // delete manifests, tags and blobs
	ScopeMetadataRead   = wire.ScopeMetadataRead  // read tags and manifests: the same as content/read in Coffer
	ScopeMetadataWrite  = wire.ScopeMetadataWrite // change repository attributes (reserved)
	ScopeContentSign    = wire.ScopeContentSign   // write content-trust data (AcrImageSigner's action)
	maxRepositoryTokens = 10000
)

// ScopeMapActionNames are the scope-map actions a repository token may hold.
func ScopeMapActionNames() []string {
	return wire.ScopeMapActionNames()
}

// scopeMapAction maps a scope-map action to the registry action it grants.
func scopeMapAction(name string) (Action, bool) {
	switch strings.ToLower(name) {
	case ScopeContentRead, ScopeMetadataRead:
		return RegistryPull, true
	case ScopeContentWrite:
		return RegistryPush, true
	case ScopeContentDelete:
		return RegistryDelete, true
	case ScopeMetadataWrite:
		return RegistryMetadataWrite, true
	case ScopeContentSign:
		return RegistrySign, true
	}
	return "", false
}

// ScopeMapEntry grants scope-map actions on one repository, or on every repository under
// a prefix when Repository ends in "/*".
type ScopeMapEntry struct {
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
}

// scopeMapEntry is the compiled form used by Authorize.
type scopeMapEntry struct {
	repo    string // exact name, or prefix ending in "/" for a wildcard
	prefix  bool
	actions map[Action]struct{}
}

func (e scopeMapEntry) matches(repo string) bool {
	if e.prefix {
		return strings.HasPrefix(repo, e.repo)
	}
	return repo == e.repo
}

func newScopeMapEntry(repo string, actions []string) (scopeMapEntry, error) {
	e := scopeMapEntry{actions: map[Action]struct{}{}}
	if base, ok := strings.CutSuffix(repo, "/*"); ok {
		if err := ValidateRepositoryName(base); err != nil {
			return e, err
		}
		e.repo, e.prefix = base+"/", true
	} else {
		if err := ValidateRepositoryName(repo); err != nil {
			return e, err
		}
		e.repo = repo
	}
	for _, a := range actions {
		act, ok := scopeMapAction(a)
		if !ok {
			return e, fmt.Errorf("unknown scope-map action %q: use %s", a, strings.Join(ScopeMapActionNames(), ", "))
		}
		e.actions[act] = struct{}{}
	}
	return e, nil
}

// NormalizeScopeMap validates a scope map: one to 100 repository names (or "prefix/*"),
// none twice, with known actions (case-insensitive). It returns the canonical form. The
// rules are the management contract's (wire.NormalizeScopeMap, their only
// implementation); the server applies them here to every scope map it is given, whatever
// the client checked. Its errors wrap ErrInvalid.
func NormalizeScopeMap(entries []ScopeMapEntry) ([]ScopeMapEntry, error) {
	in := make([]wire.ScopeMapEntry, len(entries))
	for i, e := range entries {
		in[i] = wire.ScopeMapEntry(e)
	}
	norm, err := wire.NormalizeScopeMap(in)
	if err != nil {
		return nil, invalid(err)
	}
	out := make([]ScopeMapEntry, len(norm))
	for i, e := range norm {
		out[i] = ScopeMapEntry(e)
	}
	return out, nil
}

// ParseScopeMapEntry parses the CLI form REPOSITORY:ACTION[,ACTION...], e.g.
// "app:content/read,content/write" or "team/*:content/read" (wire.ParseScopeMapEntry).
// Its errors wrap ErrInvalid.
func ParseScopeMapEntry(s string) (ScopeMapEntry, error) {
	e, err := wire.ParseScopeMapEntry(s)
	if err != nil {
		return ScopeMapEntry{}, invalid(err)
	}
	return ScopeMapEntry(e), nil
}

// invalid reports an error of the wire grammar ("invalid request: ...", wrapping
// wire.ErrInvalid) as this part's: the message is unchanged, and it wraps ErrInvalid too,
// so that errors.Is(err, ErrInvalid) holds as for every other input this part refuses.
func invalid(err error) error { return invalidError{err} }

type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }

// RepositoryToken is a repository-scoped token: a credential (kept by the identity part)
// whose only rights are its scope map.
type RepositoryToken struct {
	Name      string          `json:"name"`
	ObjectID  string          `json:"objectId"`
	ScopeMap  []ScopeMapEntry `json:"scopeMap"`
	CreatedAt time.Time       `json:"createdAt"`
	CreatedBy string          `json:"createdBy,omitempty"`
}

var tokenNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// CreateRepositoryToken creates a repository token with its credential (through the
// Directory) and stores its scope map. The password is returned once and never stored
// here.
func (s *Service) CreateRepositoryToken(ctx context.Context, name string, scopeMap []ScopeMapEntry, createdBy string) (RepositoryToken, string, error) {
	if !tokenNamePattern.MatchString(name) {
		return RepositoryToken{}, "", fmt.Errorf("%w: invalid token name %q: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	entries, err := NormalizeScopeMap(scopeMap)
	if err != nil {
		return RepositoryToken{}, "", err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM access_repository_tokens`).Scan(&n); err != nil {
		return RepositoryToken{}, "", fmt.Errorf("count repository tokens: %w", err)
	}
	if n >= maxRepositoryTokens {
		return RepositoryToken{}, "", fmt.Errorf("%w: there are already %d repository tokens: delete unused ones", ErrConflict, n)
	}
	if _, err := s.getToken(ctx, name); err == nil {
		return RepositoryToken{}, "", fmt.Errorf("%w: a repository token %q already exists: delete it first or pick another name", ErrConflict, name)
	}
	p, password, err := s.dir.CreateRepositoryToken(ctx, name)
	switch {
	case errors.Is(err, identity.ErrConflict):
		return RepositoryToken{}, "", fmt.Errorf("%w: %v", ErrConflict, err)
	case errors.Is(err, identity.ErrInvalid):
		return RepositoryToken{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	case err != nil:
		return RepositoryToken{}, "", fmt.Errorf("create repository token credential: %w", err)
	}
	t := RepositoryToken{Name: name, ObjectID: p.ID, ScopeMap: entries, CreatedAt: s.now().UTC().Truncate(time.Second), CreatedBy: createdBy}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_repository_tokens (name, object_id, created_at, created_by) VALUES (?, ?, ?, ?)`,
			t.Name, t.ObjectID, t.CreatedAt.Unix(), t.CreatedBy); err != nil {
			return err
		}
		for _, e := range entries {
			if _, err := tx.ExecContext(ctx, `INSERT INTO access_token_scopes (token_name, repository, actions) VALUES (?, ?, ?)`,
				t.Name, e.Repository, strings.Join(e.Actions, ",")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Do not leave a credential without a scope map behind.
		if derr := s.dir.DeleteRepositoryToken(ctx, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove the credential again: %w", derr))
		}
		return RepositoryToken{}, "", fmt.Errorf("store scope map of repository token %q: %w", name, err)
	}
	s.invalidate()
	return t, password, nil
}

func (s *Service) getToken(ctx context.Context, name string) (RepositoryToken, error) {
	list, err := s.listTokens(ctx, `WHERE t.name = ?`, name)
	if err != nil {
		return RepositoryToken{}, err
	}
	if len(list) == 0 {
		return RepositoryToken{}, fmt.Errorf("repository token %q: %w ('coffer token list' shows them)", name, ErrNotFound)
	}
	return list[0], nil
}

// GetRepositoryToken returns one repository token by name.
func (s *Service) GetRepositoryToken(ctx context.Context, name string) (RepositoryToken, error) {
	return s.getToken(ctx, name)
}

// tokenByObjectID reports whether objectID is a repository token (from memory when
// possible).
func (s *Service) tokenByObjectID(ctx context.Context, objectID string) (string, bool) {
	sn, err := s.current(ctx)
	if err != nil {
		return "", false
	}
	tg, ok := sn.tokens[objectID]
	if !ok {
		return "", false
	}
	return tg.name, true
}

// ListRepositoryTokens lists repository tokens by name.
func (s *Service) ListRepositoryTokens(ctx context.Context) ([]RepositoryToken, error) {
	return s.listTokens(ctx, "")
}

func (s *Service) listTokens(ctx context.Context, where string, args ...any) ([]RepositoryToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.name, t.object_id, t.created_at, t.created_by, s.repository, s.actions
		FROM access_repository_tokens t LEFT JOIN access_token_scopes s ON s.token_name = t.name `+where+`
		ORDER BY t.name, s.repository`, args...)
	if err != nil {
		return nil, fmt.Errorf("list repository tokens: %w", err)
	}
	out := []RepositoryToken{}
	for rows.Next() {
		var t RepositoryToken
		var created int64
		var repo, acts sql.NullString
		if err := rows.Scan(&t.Name, &t.ObjectID, &created, &t.CreatedBy, &repo, &acts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list repository tokens: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Name != t.Name {
			t.CreatedAt = time.Unix(created, 0).UTC()
			t.ScopeMap = []ScopeMapEntry{}
			out = append(out, t)
		}
		if repo.Valid {
			last := &out[len(out)-1]
			last.ScopeMap = append(last.ScopeMap, ScopeMapEntry{Repository: repo.String, Actions: splitList(acts.String)})
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list repository tokens: %w", err)
	}
	return out, nil
}

// DeleteRepositoryToken removes a repository token's scope map and its credential. From
// the next Authorize call on, the token may do nothing.
func (s *Service) DeleteRepositoryToken(ctx context.Context, name string) error {
	if _, err := s.getToken(ctx, name); err != nil {
		// A credential left behind by an earlier, interrupted deletion is still removed.
		if errors.Is(err, ErrNotFound) && tokenNamePattern.MatchString(name) {
			if derr := s.dir.DeleteRepositoryToken(ctx, name); derr == nil {
				return nil
			}
		}
		return err
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_token_scopes WHERE token_name = ?`, name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM access_repository_tokens WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete repository token %q: %w", name, err)
	}
	s.invalidate()
	if err := s.dir.DeleteRepositoryToken(ctx, name); err != nil && !errors.Is(err, identity.ErrNotFound) {
		return fmt.Errorf("repository token %q lost its scope map (it may do nothing now) but its credential was not removed: %w", name, err)
	}
	return nil
}

// decideToken decides a repository token's request by its scope map alone.
func (s *Service) decideToken(tg *tokenGrant, p identity.Principal, a Action, scope Scope) error {
	name := p.Name
	if tg != nil {
		name = tg.name
		if repo := scope.repositoryOf(); repo != "" {
			for _, e := range tg.entries {
				if _, ok := e.actions[a]; ok && e.matches(repo) {
					return nil
				}
			}
		}
	}
	if tg == nil {
		return fmt.Errorf("%w: repository token %q (%s) has no scope map (it was deleted): create a new token with 'coffer token create'", ErrDenied, name, p.ID)
	}
	if !strings.HasPrefix(string(a), "registry/") || scope.repositoryOf() == "" {
		return fmt.Errorf("%w: repository token %q lacks %s on %s: repository tokens may only pull, push and delete in the repositories of their scope map; use a user or service principal with a role instead", ErrDenied, name, a, scope)
	}
	return fmt.Errorf("%w: repository token %q lacks %s on %s: its scope map has no %s for repository %q; create a token whose scope map has it ('coffer token create --name NAME --repository %s:%s')",
		ErrDenied, name, a, scope, scopeMapNameFor(a), scope.repositoryOf(), scope.repositoryOf(), scopeMapNameFor(a))
}

func scopeMapNameFor(a Action) string {
	switch a {
	case RegistryPull:
		return ScopeContentRead
	case RegistryPush:
		return ScopeContentWrite
	case RegistryDelete:
		return ScopeContentDelete
	case RegistryMetadataWrite:
		return ScopeMetadataWrite
	}
	return string(a)
}
