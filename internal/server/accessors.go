package server

import (
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
)

// TokenVerifier is the server's token verifier (tests and embedders verify tokens with it).
func (s *Server) TokenVerifier() authn.Verifier { return s.parts.tokens }

// Identities is the server's identity service.
func (s *Server) Identities() *identity.Service { return s.parts.identity }

// Vault is the key vault service, for in-process callers: they mark their context with
// vault.AsService and call its methods with their own principal, so access checks,
// network rules and the audit trail apply.
func (s *Server) Vault() *vault.Service { return s.parts.vault }

// Audit is the audit trail any part may record into.
func (s *Server) Audit() *audit.Log { return s.parts.audit }

// ManagementRoutes lists the management API's routes mounted through the route table
// ("METHOD /coffer/v1/..."), for the test that holds them to the OpenAPI document.
func (s *Server) ManagementRoutes() []string { return s.mgmt.Registered() }
