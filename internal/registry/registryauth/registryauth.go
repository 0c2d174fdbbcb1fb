// Package registryauth authenticates and authorizes the requests of the registry
// listener: the Docker token challenge (WWW-Authenticate: Bearer realm=.../oauth2/token,
// service=coffer-registry, scope=...), bearer verification (tokens whose audience is
// token.RegistryService), the grant checks of a verified token (pull, push, delete, *),
// anonymous pulls, and the answers in the OCI error JSON shape.
//
// It has two users, which share one Authenticator so that one token works for both:
//   - the OCI Distribution API (registry/api);
//   - the Notary v1 trust API (/v2/<gun>/_trust/tuf/... on the same listener), which asks
//     for the same scopes (repository:<gun>:pull to read trust data, repository:<gun>:pull,push
//     to publish it, repository:<gun>:* to delete a collection).
//
// A request is authorized with Require (repository scopes) or with Authenticate, then
// Caller.Allowed and Refuse for other resources (the catalog).
package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
)

// Docker token actions on a repository.
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
	// ActionAll grants every action.
	ActionAll = "*"
)

// Options are what an Authenticator needs.
type Options struct {
	// Verifier verifies bearer tokens (the token service). Required.
	Verifier authn.Verifier
	// Authorizer is the access part's decision function: it answers whether a caller's
	// principal may pull from a repository its token does not name (the source of a
	// mount). Required.
	Authorizer access.Authorizer
	// AnonymousPull lets requests without a token pull.
	AnonymousPull bool
	// Log receives rejected tokens at debug level (nil: discarded).
	Log *slog.Logger
}

// Authenticator checks the callers of the registry listener.
type Authenticator struct {
	verifier      authn.Verifier
	authz         access.Authorizer
	anonymousPull bool
	log           *slog.Logger
}

// New returns an Authenticator for opts.
func New(opts Options) (*Authenticator, error) {
	if opts.Verifier == nil {
		return nil, errors.New("registry authentication needs a token verifier")
	}
	if opts.Authorizer == nil {
		return nil, errors.New("registry authentication needs an authorizer")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{verifier: opts.Verifier, authz: opts.Authorizer, anonymousPull: opts.AnonymousPull, log: log}, nil
}

// AnonymousPull reports whether requests without a token may pull.
func (a *Authenticator) AnonymousPull() bool { return a.anonymousPull }

// Caller is who is making a request: a verified registry token, or nobody (anonymous).
type Caller struct {
	// Claims of the verified token; nil for an anonymous caller.
	Claims *token.Claims
}

// Anonymous reports whether the caller presented no token.
func (c Caller) Anonymous() bool { return c.Claims == nil }

// Allowed reports whether the caller's token grants action on resource typ:name
// ("repository", "team/app", "push"); a grant of ActionAll covers every action.
func (c Caller) Allowed(typ, name, action string) bool {
	if c.Claims == nil {
		return false
	}
	for _, g := range c.Claims.Access {
		if g.Type != typ || g.Name != name {
			continue
		}
		if slices.Contains(g.Actions, action) || slices.Contains(g.Actions, ActionAll) {
			return true
		}
	}
	return false
}

// CanPull reports whether c may pull from repo: its token grants pull there, or the
// caller is anonymous and anonymous pulls are on.
func (a *Authenticator) CanPull(c Caller, repo string) bool {
	return c.Allowed("repository", repo, ActionPull) || (c.Anonymous() && a.anonymousPull)
}

// CanMountFrom reports whether c may read repo as the source of a mount: its token grants
// pull there, or its principal's roles do (a client asks for a token for the target
// repository only when it mounts without naming the source).
func (a *Authenticator) CanMountFrom(ctx context.Context, c Caller, repo string) bool {
	if a.CanPull(c, repo) {
		return true
	}
	if c.Anonymous() {
		return false
	}
	err := a.authz.Authorize(ctx, access.Request{Principal: c.Claims.Principal(), Action: access.RegistryPull, Scope: access.RepositoryScope(repo)})
	return err == nil
}

// Authenticate verifies the request's bearer token, if any. A missing token yields the
// anonymous caller; a bad one, an error (answer it with Reject).
func (a *Authenticator) Authenticate(r *http.Request) (Caller, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return Caller{}, nil
	}
	raw, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		// Basic credentials go to the token endpoint, not here.
		return Caller{}, errors.New("the registry takes bearer tokens: get one from the token endpoint")
	}
	claims, err := a.verifier.Verify(r.Context(), strings.TrimSpace(raw), token.RegistryService)
	if err != nil {
		return Caller{}, err
	}
	return Caller{Claims: claims}, nil
}

// RepositoryScope is the scope a client must ask for to do actions on repo, in the
// challenge's form ("repository:team/app:pull,push"). Push implies pull: a client that
// pushes also reads (blob checks, mounts), so the scope asks for both.
func RepositoryScope(repo string, actions ...string) string {
	if slices.Contains(actions, ActionPush) && !slices.Contains(actions, ActionPull) {
		actions = append([]string{ActionPull}, actions...)
	}
	return "repository:" + repo + ":" + strings.Join(actions, ",")
}

// Challenge answers 401 with the Docker token challenge for scope (none when empty);
// insufficient marks a token that is valid but does not grant the scope
// (error="insufficient_scope"). The body is e in the OCI error JSON shape.
func (a *Authenticator) Challenge(w http.ResponseWriter, r *http.Request, scope string, insufficient bool, e *registry.Error) {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	c := `Bearer realm="` + scheme + `://` + r.Host + `/oauth2/token",service="` + token.RegistryService + `"`
	if scope != "" {
		c += `,scope="` + scope + `"`
	}
	if insufficient {
		c += `,error="insufficient_scope"`
	}
	w.Header().Set("WWW-Authenticate", c)
	WriteError(w, http.StatusUnauthorized, e)
}

// Refuse answers a caller whose token does not grant scope: an anonymous caller is asked
// to authenticate (UNAUTHORIZED), an authenticated one is told why (DENIED, msg) with
// error="insufficient_scope".
func (a *Authenticator) Refuse(w http.ResponseWriter, r *http.Request, c Caller, scope, msg string) {
	if c.Anonymous() {
		a.Challenge(w, r, scope, false, &registry.Error{Code: registry.CodeUnauthorized, Message: "authentication required"})
		return
	}
	a.Challenge(w, r, scope, true, &registry.Error{Code: registry.CodeDenied, Message: msg})
}

// Reject answers a request whose token Authenticate refused, with the challenge for
// scope. Nothing is written when the client went away.
func (a *Authenticator) Reject(w http.ResponseWriter, r *http.Request, scope string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if store.IsConnectionLost(err) {
		// The token could not be checked (its principal is looked up in the database):
		// the database is down, not the token bad. A challenge would send the client to
		// log in again; 503 tells it to retry as it is.
		a.log.WarnContext(r.Context(), "registry token not checked: metadata database unreachable", "err", err)
		WriteUnavailable(w)
		return
	}
	a.log.DebugContext(r.Context(), "registry token rejected", "err", err)
	a.Challenge(w, r, scope, false, &registry.Error{Code: registry.CodeUnauthorized, Message: "invalid token: " + err.Error()})
}

// Require authorizes the request for every one of actions on repository repo (pull is
// also allowed by anonymous pulls). When refused, it writes the answer (the challenge for
// RepositoryScope(repo, actions...)) and returns false.
func (a *Authenticator) Require(w http.ResponseWriter, r *http.Request, repo string, actions ...string) (Caller, bool) {
	scope := RepositoryScope(repo, actions...)
	c, err := a.Authenticate(r)
	if err != nil {
		a.Reject(w, r, scope, err)
		return c, false
	}
	for _, act := range actions {
		if act == ActionPull && a.CanPull(c, repo) {
			continue
		}
		if !c.Allowed("repository", repo, act) {
			a.Refuse(w, r, c, scope, fmt.Sprintf("requested access to the resource is denied: the token does not grant %s on repository %s", act, repo))
			return c, false
		}
	}
	return c, true
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    registry.Code `json:"code"`
	Message string        `json:"message"`
	Detail  any           `json:"detail,omitempty"`
}

// WriteUnavailable answers 503 UNAVAILABLE (distribution's code) with Retry-After: the
// metadata database is down or unreachable, and the request may be retried as it is.
func WriteUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	WriteError(w, http.StatusServiceUnavailable, &registry.Error{Code: "UNAVAILABLE",
		Message: "the metadata database is unreachable: retry shortly"})
}

// WriteError answers status with e in the OCI error JSON shape
// ({"errors":[{"code","message","detail"}]}), which the trust API answers in too.
func WriteError(w http.ResponseWriter, status int, e *registry.Error) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
