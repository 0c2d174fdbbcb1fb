// Package api serves the OCI Distribution API v1.1 (with the referrers API) over HTTP on
// top of registry.Service: it parses requests, authorises them against the caller's
// Docker registry token and maps the service's answers and errors to the spec's status
// codes, headers and error bodies.
package api

import (
	"log/slog"
	"net/http"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/registry"
)

// Config configures the handler.
type Config struct {
	Service *registry.Service
	// Verifier returns the token verifier; it is called per request, so the token service
	// may be wired after the registry.
	Verifier func() authn.Verifier
	// AnonymousPull lets requests without a token pull.
	AnonymousPull bool
	// Authz, if it returns an authorizer, answers whether a caller's principal may pull
	// from a repository its token does not name (the source of a mount). Called per
	// request.
	Authz func() access.Authorizer
	// Trust, if it returns a handler, serves /v2/<name>/_trust/...; otherwise 404.
	Trust func() http.Handler
	Log   *slog.Logger
}

// Handler serves /v2/.
type Handler struct {
	cfg Config
	svc *registry.Service
}

// New returns the /v2/ handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, svc: cfg.Service}
}
