package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/token"
)

// Docker token actions.
const (
	actionPull   = "pull"
	actionPush   = "push"
	actionDelete = "delete"
	actionAll    = "*"
)

// caller is who is making a request: a verified token, or nobody (anonymous).
type caller struct {
	claims *token.Claims
}

func (c caller) anonymous() bool { return c.claims == nil }

// allowed reports whether the caller's grant covers action on resource typ:name.
func (c caller) allowed(typ, name, action string) bool {
	if c.claims == nil {
		return false
	}
	for _, a := range c.claims.Access {
		if a.Type != typ || a.Name != name {
			continue
		}
		if slices.Contains(a.Actions, action) || slices.Contains(a.Actions, actionAll) {
			return true
		}
	}
	return false
}

// canPull reports whether the caller may pull from repo (anonymous pull included).
func (h *Handler) canPull(c caller, repo string) bool {
	return c.allowed("repository", repo, actionPull) || (c.anonymous() && h.cfg.AnonymousPull)
}

// canMountFrom reports whether the caller may read repo as the source of a mount: its
// token grants pull there, or its principal's roles do (a client asks for a token for the
// target repository only when it mounts without naming the source).
func (h *Handler) canMountFrom(r *http.Request, c caller, repo string) bool {
	if h.canPull(c, repo) {
		return true
	}
	if c.anonymous() || h.cfg.Authz == nil {
		return false
	}
	az := h.cfg.Authz()
	if az == nil {
		return false
	}
	err := az.Authorize(r.Context(), access.Request{Principal: c.claims.Principal(), Action: access.RegistryPull, Scope: access.RepositoryScope(repo)})
	return err == nil
}

var errNoVerifier = errors.New("the token service is not available")

// authenticate verifies the request's bearer token, if any. A missing token yields the
// anonymous caller; a bad one, an error.
func (h *Handler) authenticate(r *http.Request) (caller, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return caller{}, nil
	}
	raw, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		// Basic credentials go to the token endpoint, not here.
		return caller{}, errors.New("the registry takes bearer tokens: get one from the token endpoint")
	}
	v := h.verifier()
	if v == nil {
		return caller{}, errNoVerifier
	}
	claims, err := v.Verify(r.Context(), strings.TrimSpace(raw), token.RegistryService)
	if err != nil {
		return caller{}, err
	}
	return caller{claims: claims}, nil
}

func (h *Handler) verifier() authn.Verifier {
	if h.cfg.Verifier == nil {
		return nil
	}
	return h.cfg.Verifier()
}

// challenge writes 401 with the Docker token challenge for scope.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request, scope string, insufficient bool, code registry.Code, msg string) {
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
	writeError(w, http.StatusUnauthorized, &registry.Error{Code: code, Message: msg})
}

// require authorises the request for actions on repository repo (all of them needed).
// It writes the answer and returns false when refused.
func (h *Handler) require(w http.ResponseWriter, r *http.Request, repo string, actions ...string) (caller, bool) {
	scope := "repository:" + repo + ":" + strings.Join(actions, ",")
	if slices.Contains(actions, actionPush) && !slices.Contains(actions, actionPull) {
		scope = "repository:" + repo + ":pull," + strings.Join(actions, ",")
	}
	c, err := h.authenticate(r)
	if err != nil {
		h.authFailure(w, r, scope, err)
		return c, false
	}
	for _, a := range actions {
		if a == actionPull && h.canPull(c, repo) {
			continue
		}
		if !c.allowed("repository", repo, a) {
			if c.anonymous() {
				h.challenge(w, r, scope, false, registry.CodeUnauthorized, "authentication required")
			} else {
				h.challenge(w, r, scope, true, registry.CodeDenied,
					"requested access to the resource is denied: the token does not grant "+a+" on repository "+repo)
			}
			return c, false
		}
	}
	return c, true
}

func (h *Handler) authFailure(w http.ResponseWriter, r *http.Request, scope string, err error) {
	if errors.Is(err, errNoVerifier) {
		writeError(w, http.StatusServiceUnavailable, &registry.Error{Code: registry.CodeUnauthorized, Message: err.Error()})
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	h.cfg.Log.Debug("registry token rejected", "err", err)
	h.challenge(w, r, scope, false, registry.CodeUnauthorized, "invalid token: "+err.Error())
}
