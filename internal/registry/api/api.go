// Package api serves the OCI Distribution API v1.1 (with the referrers API) over HTTP on
// top of registry.Service: it parses requests, authorises them against the caller's
// Docker registry token (through registryauth, which the trust API shares) and maps the
// service's answers and errors to the spec's status codes, headers and error bodies.
package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

// Config configures the handler.
type Config struct {
	Service *registry.Service
	// Auth authenticates and authorizes every request (token challenge, grants,
	// anonymous pulls). Required.
	Auth *registryauth.Authenticator
	// Trust, if set, serves /v2/<name>/_trust/...; otherwise those paths answer 404.
	Trust http.Handler
	Log   *slog.Logger
	// Metrics, if set, counts pushes and pulls.
	Metrics *registry.Metrics
	// Pull, if set, is asked before a manifest GET or HEAD is answered (the signature
	// policy); a refusal is answered 403 DENIED with its message.
	Pull PullPolicy
}

// PullPolicy decides whether the manifest m of repo, asked for as reference (a tag or its
// digest) with method (GET or HEAD), may be pulled by caller (the zero Principal when
// anonymous): "" allows it, anything else is the refusal's message.
type PullPolicy interface {
	CheckPull(ctx context.Context, caller identity.Principal, method, repo, reference string, m registry.ManifestRecord) (refusal string, err error)
}

// Handler serves /v2/.
type Handler struct {
	cfg  Config
	svc  *registry.Service
	auth *registryauth.Authenticator
}

// New returns the /v2/ handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, svc: cfg.Service, auth: cfg.Auth}
}
