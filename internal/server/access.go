package server

import (
	"context"

	"github.com/cofferhq/coffer/internal/access"
)

// accessPart holds what the server keeps of the access part.
type accessPart struct {
	// authz is the one decision function every API asks.
	authz access.Authorizer
}

// mountAccess wires roles, assignments, policies, repository tokens and their routes.
func (s *Server) mountAccess(ctx context.Context) error {
	return nil
}
