package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
)

// GranterOptions configure a Granter.
type GranterOptions struct {
	// Authorizer is the access part's decision function; it decides every registry grant.
	Authorizer access.Authorizer
	// AnonymousPull lets callers without credentials get pull-only registry tokens, and
	// every caller pull what anonymous callers may.
	AnonymousPull bool
	// VaultResource is the vault API's resource (audience), e.g. https://vault.localhost;
	// empty when no vault API is served.
	VaultResource string
	// OwnRegistryHost says whether "host[:port]" names this registry, so that a
	// content-trust GUN scope ("host:port/team/app") is granted as its repository (nil: no
	// host is).
	OwnRegistryHost func(hostport string) bool
	// Log receives authorization failures that are not refusals (nil: discarded).
	Log *slog.Logger
}

// Granter is the grant policy of the token endpoints: which audience a requested service
// or resource names, which audiences a principal may never get, and which registry
// actions a principal's roles allow. It knows nothing of HTTP; the token endpoints ask it
// before signing.
type Granter struct {
	authz         access.Authorizer
	anonymousPull bool
	vaultResource string
	ownHost       func(string) bool
	log           *slog.Logger
}

// OwnRegistryHost reports whether hostport names this registry (content-trust GUNs).
func (g *Granter) OwnRegistryHost(hostport string) bool {
	return g.ownHost != nil && g.ownHost(hostport)
}

// NewGranter returns the grant policy for opts. opts.Authorizer is required.
func NewGranter(opts GranterOptions) *Granter {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Granter{authz: opts.Authorizer, anonymousPull: opts.AnonymousPull, vaultResource: opts.VaultResource, ownHost: opts.OwnRegistryHost, log: log}
}

// AnonymousPull reports whether callers without credentials may get pull-only registry tokens.
func (g *Granter) AnonymousPull() bool { return g.anonymousPull }

// VaultResource is the vault API's resource (audience), empty when none is served.
func (g *Granter) VaultResource() string { return g.vaultResource }

// ErrUnknownAudience is returned for a service or resource Coffer does not issue tokens for.
var ErrUnknownAudience = errors.New("unknown service or resource")

// Audience maps a Docker "service", an OAuth2 scope ("<resource>/.default") or a
// resource to the audience of the token, or fails with ErrUnknownAudience.
func (g *Granter) Audience(ref string) (string, error) {
	res := strings.TrimSuffix(ref, "/.default")
	res = strings.TrimRight(res, "/")
	switch {
	case res == RegistryService, res == AudienceManagement:
		return res, nil
	case g.vaultResource != "" && strings.EqualFold(res, g.vaultResource):
		return g.vaultResource, nil
	case g.vaultResource != "" && vaultResourceWithPort(res, g.vaultResource):
		// A vault served on a port other than 443 challenges with resource
		// https://<domain>:<port> (the Azure SDK requires the resource's host:port to be a
		// parent of the vault's); the token's audience stays the vault resource.
		return g.vaultResource, nil
	}
	return "", fmt.Errorf("%w %q: this server issues tokens for %s, %s and %s", ErrUnknownAudience, ref,
		RegistryService, AudienceManagement, g.vaultResource)
}

// ErrRegistryOnly refuses a non-registry token to a repository-scoped token.
var ErrRegistryOnly = errors.New("a repository token is a registry credential: it gets tokens for " + RegistryService + " only")

// CheckAudience refuses audiences a principal can never use: repository tokens are
// registry credentials only.
func (g *Granter) CheckAudience(p identity.Principal, aud string) error {
	if p.Kind == identity.KindRepositoryToken && aud != RegistryService {
		return ErrRegistryOnly
	}
	return nil
}

// allowed asks the access part whether p may do action at scope.
func (g *Granter) allowed(ctx context.Context, p identity.Principal, action access.Action, scope access.Scope) bool {
	err := g.authz.Authorize(ctx, access.Request{Principal: p, Action: action, Scope: scope})
	if err != nil && !errors.Is(err, access.ErrDenied) {
		g.log.WarnContext(ctx, "authorization failed", "principal", p.ID, "action", action, "err", err)
	}
	return err == nil
}

// repositoryActions are the access actions each Docker action needs. "*" is one action, as
// in Distribution (its token server filters requested actions one by one, and its resource
// server lets a token holding "*" do everything): it is granted only to a principal allowed
// all three, never narrowed to the allowed subset. Ask for pull,push by name instead.
var repositoryActions = map[string][]access.Action{
	"pull":   {access.RegistryPull},
	"push":   {access.RegistryPush},
	"delete": {access.RegistryDelete},
	"*":      {access.RegistryPull, access.RegistryPush, access.RegistryDelete},
}

// RegistryAccess returns, for each requested scope, the actions p is allowed; denied
// actions and unknown resource types are left out (Docker semantics). An anonymous caller
// gets pull only, and only when anonymous pulls are enabled.
func (g *Granter) RegistryAccess(ctx context.Context, p identity.Principal, scopes []Scope) []Access {
	var out []Access
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
				if a == "pull" && g.anonymousPull {
					granted = append(granted, a)
					continue
				}
				if p.Kind == identity.KindAnonymous {
					continue
				}
				all := true
				for _, act := range acts {
					if !g.allowed(ctx, p, act, access.RepositoryScope(sc.repository())) {
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
			out = mergeAccess(out, Access{Type: sc.Type, Name: sc.Name, Actions: granted})
		}
	}
	return out
}

// mergeAccess adds a to list, merging actions for the same resource.
func mergeAccess(list []Access, a Access) []Access {
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
