package server

import (
	"context"

	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
)

// identityPart holds what the server keeps of the identity and token parts.
type identityPart struct {
	// verifier verifies every bearer token (all APIs use it).
	verifier authn.Verifier
	// tenantID is this server's tenant (the Entra-ID-shaped authority's tenant).
	tenantID string
	// bootstrapAdmin is set on first start: the access part makes it Owner at "/".
	bootstrapAdmin *identity.Principal
}

// mountIdentity wires identities, the token service and their routes.
func (s *Server) mountIdentity(ctx context.Context) error {
	return nil
}
