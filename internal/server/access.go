package server

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/access/accessapi"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/identity/identityapi"
)

// accessPart holds what the server keeps of the access part.
type accessPart struct {
	// authz is the one decision function every API asks.
	authz access.Authorizer
	// svc is the access service (roles, assignments, access policies, repository tokens).
	// The vault part uses it to show and remove access policies.
	svc *access.Service
	// vaultExists is set by the vault part: it answers an error wrapping
	// access.ErrNotFound (or store.ErrNotFound) for a vault that does not exist, so that an
	// access policy cannot be set on a missing vault. Read at request time.
	vaultExists func(ctx context.Context, vault string) error
}

// mountAccess wires roles, assignments, policies, repository tokens and their routes.
func (s *Server) mountAccess(ctx context.Context) error {
	var dir access.Directory
	if s.identity.svc != nil {
		dir = s.identity.svc
	}
	svc, err := access.New(ctx, s.db, dir, access.Options{})
	if err != nil {
		return err
	}
	s.access.svc = svc
	s.access.authz = svc
	if s.identity.svc != nil {
		// A deleted principal's role assignments and access policies go with it, so that a
		// later principal can never inherit them.
		s.identity.svc.OnDeleted(func(ctx context.Context, p identity.Principal) error {
			return svc.DeletePrincipalGrants(ctx, p.ID)
		})
	}
	if err := svc.EnsureBootstrapOwner(ctx, s.identity.bootstrapAdmin); err != nil {
		return fmt.Errorf("make the administrator Owner: %w", err)
	}
	identityapi.New(s.identity.svc, svc).Register(s.mgmt)
	return nil
}

// mountAccessManagement mounts the access part's management routes, once the vault part
// has opened the audit trail and can say which vaults exist.
func (s *Server) mountAccessManagement(context.Context) error {
	accessapi.New(accessapi.Config{
		Service:     s.access.svc,
		VaultExists: s.access.vaultExists,
		Audit:       s.vault.audit,
		Log:         s.log,
	}).Register(s.mgmt)
	return nil
}
