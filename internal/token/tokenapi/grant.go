// Package tokenapi serves Coffer's token endpoints over HTTP: the Docker registry token
// flow and OAuth2 token endpoint (/oauth2/token), the JWKS (/oauth2/keys), the
// Entra-ID-shaped OpenID Connect authority (/{tenant}/v2.0/...) and the App Service
// managed-identity endpoint (/msi/token). Handlers are thin: credentials are checked by
// identity.Service, grants decided by the access part's Authorizer, tokens signed by
// token.Service.
package tokenapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/token"
)

// Config is what the endpoints need.
type Config struct {
	Identity *identity.Service
	Tokens   *token.Service
	// Authz returns the access part's decision function, read at request time (the access
	// part is mounted after identity). It may return nil while access is not wired.
	Authz func() access.Authorizer
	// AnonymousPull lets requests without credentials get pull-only registry tokens.
	AnonymousPull bool
	// VaultResource is the vault API's resource (audience), e.g. https://vault.localhost.
	VaultResource string
	// IdentityHeader is the secret the managed-identity endpoint expects in X-IDENTITY-HEADER.
	IdentityHeader string
	Limiter        *identity.LoginLimiter
	Log            *slog.Logger
}

// Granter decides audiences and registry grants; it knows nothing of HTTP.
type Granter struct {
	cfg Config
}

// ErrUnknownAudience is returned for a service or resource Coffer does not issue tokens for.
var ErrUnknownAudience = errors.New("unknown service or resource")

// Audience maps a Docker "service", an OAuth2 scope ("<resource>/.default") or a
// resource to the audience of the token, or fails with ErrUnknownAudience.
func (g *Granter) Audience(ref string) (string, error) {
	res := strings.TrimSuffix(ref, "/.default")
	res = strings.TrimRight(res, "/")
	switch {
	case res == token.RegistryService, res == token.AudienceManagement:
		return res, nil
	case g.cfg.VaultResource != "" && strings.EqualFold(res, g.cfg.VaultResource):
		return g.cfg.VaultResource, nil
	case g.cfg.VaultResource != "" && vaultResourceWithPort(res, g.cfg.VaultResource):
		// A vault served on a port other than 443 challenges with resource
		// https://<domain>:<port> (the Azure SDK requires the resource's host:port to be a
		// parent of the vault's); the token's audience stays the vault resource.
		return g.cfg.VaultResource, nil
	}
	return "", fmt.Errorf("%w %q: this server issues tokens for %s, %s and %s", ErrUnknownAudience, ref,
		token.RegistryService, token.AudienceManagement, g.cfg.VaultResource)
}

// ErrRegistryOnly refuses a non-registry token to a repository-scoped token.
var ErrRegistryOnly = errors.New("a repository token is a registry credential: it gets tokens for " + token.RegistryService + " only")

// CheckAudience refuses audiences a principal can never use: repository tokens are
// registry credentials only.
func (g *Granter) CheckAudience(p identity.Principal, aud string) error {
	if p.Kind == identity.KindRepositoryToken && aud != token.RegistryService {
		return ErrRegistryOnly
	}
	return nil
}

// allowed asks the access part whether p may do action at scope.
func (g *Granter) allowed(ctx context.Context, p identity.Principal, action access.Action, scope access.Scope) bool {
	az := g.cfg.Authz()
	if az == nil {
		// No decision function wired: grant nothing.
		return false
	}
	err := az.Authorize(ctx, access.Request{Principal: p, Action: action, Scope: scope})
	if err != nil && !errors.Is(err, access.ErrDenied) && g.cfg.Log != nil {
		g.cfg.Log.WarnContext(ctx, "authorization failed", "principal", p.ID, "action", action, "err", err)
	}
	return err == nil
}

var repositoryActions = map[string][]access.Action{
	"pull":   {access.RegistryPull},
	"push":   {access.RegistryPush},
	"delete": {access.RegistryDelete},
	"*":      {access.RegistryPull, access.RegistryPush, access.RegistryDelete},
}

// RegistryAccess returns, for each requested scope, the actions p is allowed; denied
// actions and unknown resource types are left out (Docker semantics). An anonymous caller
// gets pull only, and only when anonymous pulls are enabled.
func (g *Granter) RegistryAccess(ctx context.Context, p identity.Principal, scopes []token.Scope) []token.Access {
	var out []token.Access
	for _, sc := range scopes {
		var granted []string
		switch sc.Type {
		case "repository":
			for _, a := range sc.Actions {
				acts, ok := repositoryActions[a]
				if !ok {
					continue
				}
				// With anonymous pulls on, every caller may pull what anonymous callers may.
				if a == "pull" && g.cfg.AnonymousPull {
					granted = append(granted, a)
					continue
				}
				if p.Kind == identity.KindAnonymous {
					continue
				}
				all := true
				for _, act := range acts {
					if !g.allowed(ctx, p, act, access.RepositoryScope(sc.Name)) {
						all = false
						break
					}
				}
				if all {
					granted = append(granted, a)
				}
			}
		case "registry":
			if sc.Name != "catalog" || p.Kind == identity.KindAnonymous {
				continue
			}
			for _, a := range sc.Actions {
				if a == "*" && g.allowed(ctx, p, access.RegistryList, access.ScopeRegistry) {
					granted = append(granted, a)
				}
			}
		}
		if len(granted) > 0 {
			out = mergeAccess(out, token.Access{Type: sc.Type, Name: sc.Name, Actions: granted})
		}
	}
	return out
}

// mergeAccess adds a to list, merging actions for the same resource.
func mergeAccess(list []token.Access, a token.Access) []token.Access {
	for i := range list {
		if list[i].Type == a.Type && list[i].Name == a.Name {
			for _, act := range a.Actions {
				dup := false
				for _, have := range list[i].Actions {
					dup = dup || have == act
				}
				if !dup {
					list[i].Actions = append(list[i].Actions, act)
				}
			}
			return list
		}
	}
	return append(list, a)
}

// vaultResourceWithPort reports whether res is the vault resource with an explicit port
// (https://vault.localhost:5000 for https://vault.localhost).
func vaultResourceWithPort(res, vaultResource string) bool {
	i := strings.LastIndexByte(res, ':')
	if i < len("https://") {
		return false
	}
	port := res[i+1:]
	if port == "" || len(port) > 5 {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return strings.EqualFold(res[:i], vaultResource)
}
