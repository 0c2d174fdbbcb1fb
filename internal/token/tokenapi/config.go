// Package tokenapi serves Coffer's token endpoints over HTTP: the Docker registry token
// flow and OAuth2 token endpoint (/oauth2/token), the JWKS (/oauth2/keys), the
// Entra-ID-shaped OpenID Connect authority (/{tenant}/v2.0/...) and the App Service
// managed-identity endpoint (/msi/token). Handlers are thin: credentials are checked by
// identity.Service, audiences and grants decided by token.Granter (on the access part's
// Authorizer), tokens signed by token.Service.
package tokenapi

import (
	"log/slog"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/token"
)

// Config is what the endpoints need.
type Config struct {
	Identity *identity.Service
	Tokens   *token.Service
	// Granter is the grant policy: audiences, registry grants, anonymous pulls.
	Granter *token.Granter
	// IdentityHeader is the secret the managed-identity endpoint expects in X-IDENTITY-HEADER.
	IdentityHeader string
	Limiter        *identity.LoginLimiter
	Log            *slog.Logger
	// Metrics, if set, counts token requests.
	Metrics *Metrics
}
