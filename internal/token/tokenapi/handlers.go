package tokenapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
)

// API is the token endpoints.
type API struct {
	cfg     Config
	granter *token.Granter
}

// New returns the token endpoints for cfg.
func New(cfg Config) *API {
	return &API{cfg: cfg, granter: cfg.Granter}
}

// Register mounts the endpoints on mux. The Entra-shaped routes name the tenant literally
// (no path wildcard), so they never overlap other parts' routes.
func (a *API) Register(mux *http.ServeMux) {
	tenant := a.cfg.Tokens.TenantID()
	mux.HandleFunc("GET /oauth2/token", a.cfg.Metrics.counted("docker", a.dockerToken))
	mux.HandleFunc("POST /oauth2/token", a.cfg.Metrics.counted("", a.postToken))
	mux.HandleFunc("POST /oauth2/revoke", a.revoke)
	mux.HandleFunc("GET /oauth2/keys", a.jwks)
	mux.HandleFunc("GET /.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("GET /"+tenant+"/v2.0/.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("GET /"+tenant+"/.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("POST /"+tenant+"/oauth2/v2.0/token", a.cfg.Metrics.counted("", a.entraToken))
	mux.HandleFunc("POST /"+tenant+"/oauth2/token", a.cfg.Metrics.counted("", a.entraToken))
	mux.HandleFunc("GET /"+tenant+"/discovery/v2.0/keys", a.jwks)
	mux.HandleFunc("GET /msi/token", a.cfg.Metrics.counted("managed_identity", a.managedIdentityToken))
}

// tokenResponse is the answer of every token endpoint: the Docker fields (token,
// issued_at) and the OAuth2 ones (access_token, token_type, expires_in) together.
type tokenResponse struct {
	Token        string `json:"token,omitempty"`
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in,omitempty"`
	IssuedAt     string `json:"issued_at,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func newTokenResponse(iss token.Issued, docker bool) tokenResponse {
	r := tokenResponse{
		AccessToken: iss.Raw,
		TokenType:   "Bearer",
		ExpiresIn:   int64(math.Round(iss.ExpiresAt.Sub(iss.IssuedAt).Seconds())),
	}
	if docker {
		r.Token = iss.Raw
		r.IssuedAt = iss.IssuedAt.UTC().Format(time.RFC3339)
	} else {
		r.ExtExpiresIn = r.ExpiresIn
	}
	return r
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// dockerError answers in the registry's error shape, with the Basic challenge on 401.
func dockerError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="coffer"`)
	}
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// oauthError answers in the OAuth2 error shape (RFC 6749 section 5.2).
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="coffer", error="`+code+`"`)
	}
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}

// clientAddr is the caller's address (the key of per-address throttling).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "addr:" + r.RemoteAddr
	}
	return "addr:" + host
}

// authenticate checks username/secret (any credential kind) with throttling per name and
// per address. It returns the wait before another attempt when throttled.
func (a *API) authenticate(ctx context.Context, r *http.Request, username, secret string) (identity.Principal, time.Duration, error) {
	return a.throttled(ctx, r, username, func() (identity.Principal, error) {
		return a.cfg.Identity.Authenticate(ctx, username, secret)
	})
}

// authenticateClient checks a service principal's client id and secret, throttled alike.
func (a *API) authenticateClient(ctx context.Context, r *http.Request, clientID, secret string) (identity.Principal, time.Duration, error) {
	return a.throttled(ctx, r, clientID, func() (identity.Principal, error) {
		return a.cfg.Identity.AuthenticateClient(ctx, clientID, secret)
	})
}

// throttled runs check unless the client's address, or this name from this address, is
// throttled. Names are not secret, so a name's failures from other addresses never refuse a
// correct secret: a failure counts against the address, the (name, address) pair and the
// name, and only the first two refuse attempts (429). Once the name itself has failed too
// often (guesses spread over many addresses), a wrong answer is delayed by up to
// maxNameDelay, so distributed guessing stays slow while the right secret is answered at
// once. A success resets the pair's count.
func (a *API) throttled(ctx context.Context, r *http.Request, name string, check func() (identity.Principal, error)) (identity.Principal, time.Duration, error) {
	addrKey := clientAddr(r)
	nameKey := "name:" + strings.ToLower(name)
	pairKey := "pair:" + strings.ToLower(name) + "|" + addrKey
	if wait := a.cfg.Limiter.Check(pairKey, addrKey); wait > 0 {
		return identity.Principal{}, wait, errThrottled
	}
	p, err := check()
	switch {
	case errors.Is(err, identity.ErrInvalidCredentials):
		a.cfg.Limiter.Fail(pairKey, addrKey, nameKey)
		a.logFailure(ctx, r, name)
		if wait := a.cfg.Limiter.Check(nameKey); wait > 0 {
			t := time.NewTimer(min(wait, maxNameDelay))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	case err == nil:
		a.cfg.Limiter.Reset(pairKey)
	}
	return p, 0, err
}

// maxNameDelay bounds how long a wrong answer for a much-guessed name is held back.
const maxNameDelay = time.Second

func (a *API) logFailure(ctx context.Context, r *http.Request, name string) {
	if a.cfg.Log != nil {
		a.cfg.Log.InfoContext(ctx, "login failed", "name", clip(name), "addr", clientAddr(r))
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

var errThrottled = errors.New("too many failed logins")

const throttledMessage = "too many failed logins: wait before trying again"

// dockerToken is GET /oauth2/token: the Docker registry token flow.
func (a *API) dockerToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service := q.Get("service")
	if service == "" {
		service = token.RegistryService
	}
	aud, err := a.granter.Audience(service)
	if err != nil {
		dockerError(w, http.StatusUnauthorized, "UNAUTHORIZED", err.Error())
		return
	}
	scopes, err := token.ParseRegistryScopes(q["scope"], a.granter.OwnRegistryHost)
	if err != nil {
		dockerError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid scope: "+err.Error())
		return
	}
	var p identity.Principal
	username, secret, hasBasic := r.BasicAuth()
	switch {
	case hasBasic:
		var wait time.Duration
		p, wait, err = a.authenticate(r.Context(), r, username, secret)
		switch {
		case errors.Is(err, errThrottled):
			tooMany(w, wait)
			dockerError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", throttledMessage)
			return
		case errors.Is(err, identity.ErrInvalidCredentials):
			dockerError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid username or password")
			return
		case err != nil:
			a.internal(w, r, err, true)
			return
		}
	case a.granter.AnonymousPull() && aud == token.RegistryService:
		p = identity.Principal{Kind: identity.KindAnonymous, Name: "anonymous"}
	case aud == token.RegistryService && token.HasTrustScope(scopes):
		// No credentials for a content-trust collection: a token that grants nothing. The
		// notary CLI asks anonymously first for its reads and, on the trust API's 401,
		// asks again with credentials (as Distribution's token servers allow).
		p = identity.Principal{Kind: identity.KindAnonymous, Name: "anonymous"}
	default:
		dockerError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required: send a username and password (HTTP Basic)")
		return
	}
	if err := a.granter.CheckAudience(p, aud); err != nil {
		dockerError(w, http.StatusUnauthorized, "UNAUTHORIZED", err.Error())
		return
	}
	a.issue(w, r, p, aud, scopes, q.Get("offline_token") == "true" && p.Kind != identity.KindAnonymous, true)
}

// issue signs a token for p (with registry grants for scopes when the audience is the
// registry) and writes the answer, with a refresh token when offline is set.
func (a *API) issue(w http.ResponseWriter, r *http.Request, p identity.Principal, aud string, scopes []token.Scope, offline, docker bool) {
	g := token.Grant{Principal: p, Audience: aud}
	if aud == token.RegistryService {
		g.Access = a.granter.RegistryAccess(r.Context(), p, scopes)
	}
	iss, err := a.cfg.Tokens.Issue(r.Context(), g)
	if err != nil {
		a.internal(w, r, err, docker)
		return
	}
	resp := newTokenResponse(iss, docker)
	if offline {
		if resp.RefreshToken, err = a.cfg.Identity.IssueRefreshToken(r.Context(), p, aud); err != nil {
			a.internal(w, r, err, docker)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, err error, docker bool) {
	if store.IsConnectionLost(err) {
		// The database is down or unreachable: the client may ask again as it is (503
		// with Retry-After, as the registry answers), not a failure of the service.
		if a.cfg.Log != nil {
			a.cfg.Log.WarnContext(r.Context(), "token endpoint failed: metadata database unreachable", "err", err)
		}
		w.Header().Set("Retry-After", "1")
		const msg = "the metadata database is unreachable: retry shortly"
		if docker {
			dockerError(w, http.StatusServiceUnavailable, "UNAVAILABLE", msg)
		} else {
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", msg)
		}
		return
	}
	if a.cfg.Log != nil {
		a.cfg.Log.ErrorContext(r.Context(), "token endpoint failed", "err", err)
	}
	if docker {
		dockerError(w, http.StatusInternalServerError, "UNKNOWN", "the token service failed; see the server log")
		return
	}
	oauthError(w, http.StatusInternalServerError, "server_error", "the token service failed; see the server log")
}

// postToken is POST /oauth2/token: the OAuth2 form docker and containerd use
// (grant_type=password|refresh_token) and client credentials.
func (a *API) postToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	f := r.PostForm
	grant := f.Get("grant_type")
	switch grant {
	case "password", "refresh_token":
		a.passwordOrRefresh(w, r, grant)
	case "client_credentials":
		a.clientCredentials(w, r, false)
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required: password, refresh_token or client_credentials")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported: use password, refresh_token or client_credentials", clip(grant)))
	}
}

func (a *API) passwordOrRefresh(w http.ResponseWriter, r *http.Request, grant string) {
	f := r.PostForm
	service := f.Get("service")
	if service == "" {
		service = token.RegistryService
	}
	aud, err := a.granter.Audience(service)
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_scope", err.Error())
		return
	}
	scopes, err := token.ParseRegistryScopes(f["scope"], a.granter.OwnRegistryHost)
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_scope", err.Error())
		return
	}
	var p identity.Principal
	offline := false
	if grant == "password" {
		var wait time.Duration
		p, wait, err = a.authenticate(r.Context(), r, f.Get("username"), f.Get("password"))
		offline = f.Get("access_type") == "offline"
		if errors.Is(err, errThrottled) {
			tooMany(w, wait)
			oauthError(w, http.StatusTooManyRequests, "slow_down", throttledMessage)
			return
		}
	} else {
		keys := []string{clientAddr(r)}
		if wait := a.cfg.Limiter.Check(keys...); wait > 0 {
			tooMany(w, wait)
			oauthError(w, http.StatusTooManyRequests, "slow_down", throttledMessage)
			return
		}
		p, err = a.cfg.Identity.RedeemRefreshToken(r.Context(), f.Get("refresh_token"), aud)
		if errors.Is(err, identity.ErrRefreshAudience) {
			msg := "this refresh token was issued for another audience: sign in again for " + aud
			if aud == token.AudienceManagement {
				msg = "this refresh token was issued to a registry client (docker login) and gets registry tokens only: use 'coffer login' for management"
			}
			oauthError(w, http.StatusBadRequest, "invalid_grant", msg)
			return
		}
		if errors.Is(err, identity.ErrInvalidCredentials) {
			a.cfg.Limiter.Fail(keys...)
			oauthError(w, http.StatusUnauthorized, "invalid_grant", "the refresh token is invalid, expired or revoked: log in again")
			return
		}
	}
	switch {
	case errors.Is(err, identity.ErrInvalidCredentials):
		oauthError(w, http.StatusUnauthorized, "invalid_grant", "invalid username or password")
		return
	case err != nil:
		a.internal(w, r, err, false)
		return
	}
	if err := a.granter.CheckAudience(p, aud); err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_scope", err.Error())
		return
	}
	g := token.Grant{Principal: p, Audience: aud}
	if aud == token.RegistryService {
		g.Access = a.granter.RegistryAccess(r.Context(), p, scopes)
	}
	iss, err := a.cfg.Tokens.Issue(r.Context(), g)
	if err != nil {
		a.internal(w, r, err, false)
		return
	}
	resp := newTokenResponse(iss, true)
	switch {
	case offline:
		if resp.RefreshToken, err = a.cfg.Identity.IssueRefreshToken(r.Context(), p, aud); err != nil {
			a.internal(w, r, err, false)
			return
		}
	case grant == "refresh_token":
		resp.RefreshToken = f.Get("refresh_token")
	}
	writeJSON(w, http.StatusOK, resp)
}

// clientCredentials is the OAuth2 client-credentials grant: client_id and client_secret in
// the form (or HTTP Basic), scope=<resource>/.default (or service=, resource=).
func (a *API) clientCredentials(w http.ResponseWriter, r *http.Request, entra bool) {
	f := r.PostForm
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if u, pw, ok := r.BasicAuth(); ok && clientID == "" {
		clientID, secret = u, pw
	}
	if clientID == "" || secret == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client_id and client_secret are required")
		return
	}
	aud, scopes, err := a.clientAudience(f)
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_scope", err.Error())
		return
	}
	p, wait, err := a.authenticateClient(r.Context(), r, clientID, secret)
	switch {
	case errors.Is(err, errThrottled):
		tooMany(w, wait)
		oauthError(w, http.StatusTooManyRequests, "slow_down", throttledMessage)
		return
	case errors.Is(err, identity.ErrInvalidCredentials):
		oauthError(w, http.StatusUnauthorized, "invalid_client", "invalid client id or client secret (secrets expire: reset with 'coffer sp credential reset')")
		return
	case err != nil:
		a.internal(w, r, err, false)
		return
	}
	g := token.Grant{Principal: p, Audience: aud}
	if aud == token.RegistryService {
		g.Access = a.granter.RegistryAccess(r.Context(), p, scopes)
	}
	iss, err := a.cfg.Tokens.Issue(r.Context(), g)
	if err != nil {
		a.internal(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, newTokenResponse(iss, !entra))
}

// clientAudience finds the audience of a client-credentials request. Docker style:
// service=<audience> with registry scopes in scope=. OAuth2 style: scope=<resource>/.default
// (or resource=<resource>), exactly one resource per token, like Entra ID.
func (a *API) clientAudience(f url.Values) (string, []token.Scope, error) {
	if service := f.Get("service"); service != "" {
		aud, err := a.granter.Audience(service)
		if err != nil {
			return "", nil, err
		}
		var scopes []token.Scope
		if aud == token.RegistryService {
			if scopes, err = token.ParseRegistryScopes(f["scope"], a.granter.OwnRegistryHost); err != nil {
				return "", nil, err
			}
		}
		return aud, scopes, nil
	}
	ref := f.Get("scope")
	if ref == "" {
		ref = f.Get("resource")
	}
	fields := resourceScopes(ref)
	if len(fields) != 1 {
		return "", nil, errors.New("ask for exactly one scope of the form <resource>/.default")
	}
	aud, err := a.granter.Audience(fields[0])
	return aud, nil, err
}

// resourceScopes drops the OpenID Connect scopes MSAL adds to every request (openid,
// profile, offline_access, email): they ask for no resource.
func resourceScopes(scope string) []string {
	var out []string
	for _, f := range strings.Fields(scope) {
		switch f {
		case "openid", "profile", "offline_access", "email":
		default:
			out = append(out, f)
		}
	}
	return out
}

// entraToken is POST /{tenant}/oauth2/v2.0/token, the token endpoint MSAL calls.
func (a *API) entraToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported here: use client_credentials", clip(g)))
		return
	}
	a.clientCredentials(w, r, true)
}

// revoke is POST /oauth2/revoke (RFC 7009) for refresh tokens: the refresh token itself
// is the credential, so whoever holds it may revoke it.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "give the refresh token to revoke as token=")
		return
	}
	if err := a.cfg.Identity.RevokeRefreshToken(r.Context(), r.PostForm.Get("token")); err != nil {
		a.internal(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// jwks is GET /oauth2/keys.
func (a *API) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	json.NewEncoder(w).Encode(a.cfg.Tokens.Keys().Public(r.Context()))
}

// baseURL is the scheme and host the client used to reach this server.
func baseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// discovery is the OpenID Connect discovery document, in the shape of Entra ID's v2.0
// endpoint. The "issuer" names the authority URL the client used (MSAL requires its host
// to match the authority); tokens carry token.Issuer(tenant), see docs/identity.md.
func (a *API) discovery(w http.ResponseWriter, r *http.Request) {
	base := baseURL(r)
	tenant := a.cfg.Tokens.TenantID()
	auth := base + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                auth + "/v2.0",
		"token_endpoint":                        auth + "/oauth2/v2.0/token",
		"authorization_endpoint":                auth + "/oauth2/v2.0/authorize",
		"jwks_uri":                              base + "/oauth2/keys",
		"response_types_supported":              []string{"token"},
		"grant_types_supported":                 []string{"client_credentials", "password", "refresh_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"scopes_supported":                      []string{token.AudienceManagement + "/.default", token.RegistryService + "/.default", a.granter.VaultResource() + "/.default"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "oid", "tid", "appid", "kind", "name", "access"},
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   r.Host,
		"coffer_token_issuer":                   token.Issuer(tenant),
	})
}

// managedIdentityToken is GET /msi/token in the App Service managed-identity protocol
// (api-version 2019-08-01): the secret header proves the caller runs on this machine.
func (a *API) managedIdentityToken(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		oauthError(w, http.StatusForbidden, "invalid_request", "the managed identity endpoint answers only processes on the same machine")
		return
	}
	hdr := r.Header.Get("X-IDENTITY-HEADER")
	if hdr == "" || subtle.ConstantTimeCompare([]byte(hdr), []byte(a.cfg.IdentityHeader)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_request", "missing or wrong X-IDENTITY-HEADER (the value of IDENTITY_HEADER)")
		return
	}
	q := r.URL.Query()
	if q.Get("mi_res_id") != "" || q.Get("msi_res_id") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "identities by resource id are not supported: use client_id or principal_id")
		return
	}
	aud, err := a.granter.Audience(q.Get("resource"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_resource", err.Error())
		return
	}
	objectID := q.Get("principal_id")
	if objectID == "" {
		objectID = q.Get("object_id")
	}
	p, err := a.cfg.Identity.ManagedIdentity(r.Context(), q.Get("client_id"), objectID)
	if errors.Is(err, identity.ErrNotFound) {
		oauthError(w, http.StatusBadRequest, "invalid_request", "no managed identity with that client_id or principal_id: create one with 'coffer identity create'")
		return
	}
	if err != nil {
		a.internal(w, r, err, false)
		return
	}
	iss, err := a.cfg.Tokens.Issue(r.Context(), token.Grant{Principal: p, Audience: aud})
	if err != nil {
		a.internal(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": iss.Raw,
		"expires_on":   strconv.FormatInt(iss.ExpiresAt.Unix(), 10),
		"resource":     q.Get("resource"),
		"token_type":   "Bearer",
		"client_id":    p.ClientID,
	})
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
