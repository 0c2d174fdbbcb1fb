package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/identity"
)

// Assignment grants a role to a principal at a scope (and everything below it).
type Assignment struct {
	ID            string        `json:"id"`
	Role          string        `json:"role"`
	PrincipalID   string        `json:"principalId"`
	PrincipalKind identity.Kind `json:"principalKind,omitempty"`
	PrincipalName string        `json:"principalName,omitempty"`
	Scope         Scope         `json:"scope"`
	CreatedAt     time.Time     `json:"createdAt"`
	CreatedBy     string        `json:"createdBy,omitempty"`
}

// AssignmentSpec is what a caller asks for when creating an assignment.
type AssignmentSpec struct {
	// Role is a built-in role name (case-insensitive).
	Role string
	// Assignee is an object id, client id or name (resolved through the Directory).
	Assignee string
	// Scope in canonical or short form (see ParseScope).
	Scope string
	// CreatedBy is the object id of the caller, recorded for the record.
	CreatedBy string
}

// ResolveAssignee finds the principal an assignee reference names.
func (s *Service) ResolveAssignee(ctx context.Context, ref string) (identity.Principal, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return identity.Principal{}, fmt.Errorf("%w: no assignee: give an object id, client id or name", ErrInvalid)
	}
	p, err := s.dir.Resolve(ctx, ref)
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return identity.Principal{}, fmt.Errorf("%w: %v ('coffer identity list' shows the principals)", ErrInvalid, err)
	case errors.Is(err, identity.ErrAmbiguous), errors.Is(err, identity.ErrInvalid):
		return identity.Principal{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	case err != nil:
		return identity.Principal{}, fmt.Errorf("resolve assignee %q: %w", ref, err)
	}
	return p, nil
}

// CreateAssignment assigns spec.Role to spec.Assignee at spec.Scope. Assigning the same
// role to the same principal at the same scope again returns the existing assignment with
// created=false. Repository tokens cannot be assigned roles: their scope map is all they
// may do.
func (s *Service) CreateAssignment(ctx context.Context, spec AssignmentSpec) (a Assignment, created bool, err error) {
	role, ok := s.roles.lookup(spec.Role)
	if !ok {
		return a, false, fmt.Errorf("%w: unknown role %q: run 'coffer role definition list' for the built-in roles", ErrInvalid, spec.Role)
	}
	scope, err := ParseScope(spec.Scope)
	if err != nil {
		return a, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p, err := s.ResolveAssignee(ctx, spec.Assignee)
	if err != nil {
		return a, false, err
	}
	return s.assign(ctx, role, p, scope, spec.CreatedBy)
}

// AssignRole assigns a role to an already resolved principal (used for the bootstrap
// administrator). It is idempotent like CreateAssignment.
func (s *Service) AssignRole(ctx context.Context, roleName string, p identity.Principal, scope Scope) (Assignment, bool, error) {
	role, ok := s.roles.lookup(roleName)
	if !ok {
		return Assignment{}, false, fmt.Errorf("%w: unknown role %q", ErrInvalid, roleName)
	}
	sc, err := ParseScope(string(scope))
	if err != nil {
		return Assignment{}, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.assign(ctx, role, p, sc, "")
}

func (s *Service) assign(ctx context.Context, role *compiledRole, p identity.Principal, scope Scope, createdBy string) (Assignment, bool, error) {
	if p.ID == "" {
		return Assignment{}, false, fmt.Errorf("%w: assignee has no object id", ErrInvalid)
	}
	if p.Kind == identity.KindRepositoryToken {
		return Assignment{}, false, fmt.Errorf("%w: %s is a repository token: roles never apply to it; its scope map decides what it may do ('coffer token create' to make one with another scope map)", ErrInvalid, describe(p))
	}
	a := Assignment{
		ID: uuid.NewString(), Role: role.def.Name, PrincipalID: p.ID, PrincipalKind: p.Kind,
		PrincipalName: p.Name, Scope: scope, CreatedAt: s.now().UTC().Truncate(time.Second), CreatedBy: createdBy,
	}
	fresh, created := a, false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		// On PostgreSQL InTx may run this again (a serialization failure, at a statement or
		// at commit): start each run from the new assignment, not the last run's outcome.
		a, created = fresh, false
		existing, err := scanAssignments(tx.QueryContext(ctx, selectAssignments+` WHERE role = ? AND principal_id = ? AND scope = ?`, a.Role, a.PrincipalID, string(a.Scope)))
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			a = existing[0]
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_role_assignments
			(id, role, principal_id, principal_kind, principal_name, scope, created_at, created_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.Role, a.PrincipalID, string(a.PrincipalKind), a.PrincipalName, string(a.Scope), a.CreatedAt.Unix(), a.CreatedBy); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return Assignment{}, false, fmt.Errorf("create role assignment: %w", err)
	}
	if created {
		s.invalidate()
	}
	return a, created, nil
}

const selectAssignments = `SELECT id, role, principal_id, principal_kind, principal_name, scope, created_at, created_by FROM access_role_assignments`

func scanAssignments(rows *sql.Rows, err error) ([]Assignment, error) {
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for rows.Next() {
		var a Assignment
		var kind, scope string
		var created int64
		if err := rows.Scan(&a.ID, &a.Role, &a.PrincipalID, &kind, &a.PrincipalName, &scope, &created, &a.CreatedBy); err != nil {
			rows.Close()
			return nil, err
		}
		a.PrincipalKind, a.Scope, a.CreatedAt = identity.Kind(kind), Scope(scope), time.Unix(created, 0).UTC()
		out = append(out, a)
	}
	return out, closeRows(rows)
}

// AssignmentFilter narrows ListAssignments. Zero fields match everything.
type AssignmentFilter struct {
	// PrincipalID keeps the assignments of one principal (an object id; resolve names
	// with ResolveAssignee first).
	PrincipalID string
	// Scope keeps the assignments that apply at this scope or below it: those at the scope,
	// under it, and those inherited from the scopes above it.
	Scope Scope
	// Role keeps the assignments of one role (case-insensitive).
	Role string
}

// ListAssignments lists role assignments ordered by scope, role and principal name.
func (s *Service) ListAssignments(ctx context.Context, f AssignmentFilter) ([]Assignment, error) {
	q := selectAssignments + ` WHERE 1 = 1`
	var args []any
	if f.PrincipalID != "" {
		q += ` AND principal_id = ?`
		args = append(args, f.PrincipalID)
	}
	if f.Role != "" {
		r, ok := s.roles.lookup(f.Role)
		if !ok {
			return nil, fmt.Errorf("%w: unknown role %q", ErrInvalid, f.Role)
		}
		q += ` AND role = ?`
		args = append(args, r.def.Name)
	}
	q += ` ORDER BY scope, role, principal_name, id`
	list, err := scanAssignments(s.db.QueryContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	if f.Scope == "" {
		return list, nil
	}
	scope := f.Scope.canonical()
	out := list[:0]
	for _, a := range list {
		if a.Scope.Covers(scope) || scope.Covers(a.Scope) {
			out = append(out, a)
		}
	}
	return out, nil
}

// GetAssignment returns one assignment by id.
func (s *Service) GetAssignment(ctx context.Context, id string) (Assignment, error) {
	list, err := scanAssignments(s.db.QueryContext(ctx, selectAssignments+` WHERE id = ?`, id))
	if err != nil {
		return Assignment{}, fmt.Errorf("read role assignment: %w", err)
	}
	if len(list) == 0 {
		return Assignment{}, fmt.Errorf("role assignment %q: %w ('coffer role assignment list' shows the ids)", id, ErrNotFound)
	}
	return list[0], nil
}

// DeleteAssignment removes one assignment by id. The revocation applies to the next
// Authorize call in this process.
//
// The last Owner assignment at the root scope is never deleted: without it nobody could
// manage access any more, and the installation would be locked out of its own
// management API. The check and the delete run in one transaction, so two administrators
// removing each other's Owner at the same moment cannot both succeed.
func (s *Service) DeleteAssignment(ctx context.Context, id string) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		list, err := scanAssignments(tx.QueryContext(ctx, selectAssignments+` WHERE id = ?`, id))
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("role assignment %q: %w ('coffer role assignment list' shows the ids)", id, ErrNotFound)
		}
		if a := list[0]; a.Role == RoleOwner && a.Scope.canonical() == ScopeRoot {
			var owners int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM access_role_assignments WHERE role = ? AND scope = ?`,
				RoleOwner, string(ScopeRoot)).Scan(&owners); err != nil {
				return err
			}
			if owners <= 1 {
				return fmt.Errorf("%w: this is the last Owner assignment at /: assign Owner at / to another principal first ('coffer role assignment create --role Owner --assignee NAME --scope /'), or nobody could manage access any more", ErrConflict)
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM access_role_assignments WHERE id = ?`, id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			return err
		}
		return fmt.Errorf("delete role assignment: %w", err)
	}
	s.invalidate()
	return nil
}

// FindAssignment finds the assignment of role to principalID at exactly scope.
func (s *Service) FindAssignment(ctx context.Context, role, principalID string, scope Scope) (Assignment, error) {
	r, ok := s.roles.lookup(role)
	if !ok {
		return Assignment{}, fmt.Errorf("%w: unknown role %q", ErrInvalid, role)
	}
	list, err := scanAssignments(s.db.QueryContext(ctx, selectAssignments+` WHERE role = ? AND principal_id = ? AND scope = ?`,
		r.def.Name, principalID, string(scope.canonical())))
	if err != nil {
		return Assignment{}, fmt.Errorf("read role assignment: %w", err)
	}
	if len(list) == 0 {
		return Assignment{}, fmt.Errorf("no assignment of %q to %s at %s: %w", r.def.Name, principalID, scope, ErrNotFound)
	}
	return list[0], nil
}

// DeletePrincipalGrants removes every role assignment and access policy of a principal
// (for when the principal itself is deleted).
func (s *Service) DeletePrincipalGrants(ctx context.Context, principalID string) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_role_assignments WHERE principal_id = ?`, principalID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM access_vault_policies WHERE object_id = ?`, principalID)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove grants of %s: %w", principalID, err)
	}
	s.invalidate()
	return nil
}
