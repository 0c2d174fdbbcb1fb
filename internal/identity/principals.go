package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Principals of every kind: names, lookup by object id, client id or name, and deletion
// (with the guards and hooks other parts register).

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
	if err != nil && store.IsUniqueViolation(err) {
		return fmt.Errorf("%w: a %s named %q", ErrConflict, kindNoun(p.Kind), p.Name)
	}
	return err
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
	s.logins.forget(p.ID)
	if err != nil {
		return err
	}
	s.forgetLive(p.ID)
	for _, h := range hooks {
		if err := h(ctx, p); err != nil {
			return fmt.Errorf("%s %q was deleted, but cleaning up after it failed (remove its grants with 'coffer role assignment delete'): %w", kindNoun(kind), ref, err)
		}
	}
	return nil
}
