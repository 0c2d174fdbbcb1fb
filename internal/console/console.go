// Package console is Coffer's web console, served by `coffer serve` under /console/ on the
// main listener from files embedded in the binary (no CDN, no Node.js at run time).
//
// Pages are rendered on the server with html/template; the one script library, htmx, is
// vendored and pinned (scripts/vendor-htmx checks its checksum). Every read and every change
// a page makes is a request to the same APIs the CLI and registry clients use — the
// management API (/coffer/v1, the route table in internal/mgmt) and, for manifests and
// referrers, the registry API (/v2) — sent in-process to the server's own handler with a
// short-lived token minted for the signed-in user. The console therefore has no private
// backdoor: it can do exactly what that user could do with `coffer` or docker, and every
// change is authorized and audited by the API that makes it.
//
// Sessions: sign-in checks the user's password with the token service's own check and
// throttling; the session cookie (__Host-coffer-session) is HttpOnly, Secure and
// SameSite=Strict, with an idle and an absolute expiry; the session lives in the metadata
// database (every replica sees it) and sign-out deletes it there. Every POST carries the
// session's CSRF token and must come from the console's own origin. Every answer carries a
// strict Content-Security-Policy with no inline script and frame-ancestors 'none'.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/token"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

const (
	sessionCookie = "__Host-coffer-session"
	signinCookie  = "__Host-coffer-signin"
	// DefaultIdle and DefaultAbsolute are the session expiries unless Config says.
	DefaultIdle     = 30 * time.Minute
	DefaultAbsolute = 12 * time.Hour
	// touchEvery bounds how often a session's last-seen time is written.
	touchEvery = time.Minute
)

// CSP is the Content-Security-Policy of every console answer: scripts and styles only from
// the console's own files (no inline script or style), no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// PasswordCheck checks a user name and password with the token service's throttling. A
// wait > 0 means the attempt was refused unchecked (throttled); wrong credentials wrap
// identity.ErrInvalidCredentials.
type PasswordCheck func(ctx context.Context, r *http.Request, username, password string) (identity.Principal, time.Duration, error)

// Tokens signs tokens (*token.Service).
type Tokens interface {
	Issue(ctx context.Context, g token.Grant) (token.Issued, error)
}

// Grants is the registry grant policy (*token.Granter): what a registry token for a user
// may carry, exactly as the token endpoint decides it.
type Grants interface {
	RegistryAccess(ctx context.Context, p identity.Principal, scopes []token.Scope) []token.Access
}

// Config is what the console needs.
type Config struct {
	// API is the server's own handler for /coffer/v1 and /v2: every page goes through it.
	API           http.Handler
	CheckPassword PasswordCheck
	Tokens        Tokens
	Grants        Grants
	// Authz is the management API's authorizer: a page asks it whether to offer a control
	// (the API still decides every request). Optional: without it controls are shown.
	Authz    access.Authorizer
	Sessions SessionStore
	// Idle and Absolute expire sessions (DefaultIdle, DefaultAbsolute when 0).
	Idle, Absolute time.Duration
	Log            *slog.Logger
	Now            func() time.Time
}

// Console serves the web console.
type Console struct {
	cfg    Config
	pages  map[string]*template.Template
	static http.Handler
	mux    *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.CheckPassword == nil || cfg.Tokens == nil || cfg.Grants == nil || cfg.Sessions == nil {
		return nil, errors.New("console: API, CheckPassword, Tokens, Grants and Sessions are required")
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.Absolute <= 0 {
		cfg.Absolute = DefaultAbsolute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: pages, static: http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)), mux: http.NewServeMux()}
	c.routes()
	return c, nil
}

// Register mounts the console on mux: /console/ and the browser redirect from /.
func (c *Console) Register(mux *http.ServeMux) {
	mux.Handle(Prefix, c)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, Prefix, http.StatusFound)
	})
}

// ServeHTTP sets the security headers of every answer, then routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

// page is a handler of a signed-in page.
type page func(w http.ResponseWriter, r *http.Request, rq *request)

func (c *Console) routes() {
	m := c.mux
	m.Handle("GET "+Prefix+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET "+Prefix+"signin", c.signinForm)
	m.HandleFunc("POST "+Prefix+"signin", c.signin)
	m.Handle("POST "+Prefix+"signout", c.signedIn(c.signout))
	m.Handle("GET "+Prefix+"{$}", c.signedIn(c.overview))
	m.Handle("GET "+Prefix+"repositories", c.signedIn(c.repositories))
	m.Handle("GET "+Prefix+"repository", c.signedIn(c.repository))
	m.Handle("GET "+Prefix+"tag", c.signedIn(c.tag))
	m.Handle("GET "+Prefix+"tag/delete", c.signedIn(c.confirmDelete))
	m.Handle("POST "+Prefix+"tag/delete", c.signedIn(c.deleteTag))
	m.Handle("GET "+Prefix+"encryption", c.signedIn(c.encryption))
	m.Handle("POST "+Prefix+"encryption/key", c.signedIn(c.changeKey))
	m.Handle("POST "+Prefix+"encryption/rotate", c.signedIn(c.rotateNow))
	m.Handle("GET "+Prefix+"trust", c.signedIn(c.trust))
	m.Handle("POST "+Prefix+"trust", c.signedIn(c.setTrust))
	m.Handle("GET "+Prefix+"vaults", c.signedIn(c.vaults))
	m.Handle("GET "+Prefix+"vault", c.signedIn(c.vault))
	m.Handle("POST "+Prefix+"vault/keys", c.signedIn(c.createKey))
	m.Handle("GET "+Prefix+"key", c.signedIn(c.key))
	m.Handle("POST "+Prefix+"key/rotate", c.signedIn(c.rotateKey))
	m.Handle("POST "+Prefix+"key/enabled", c.signedIn(c.setKeyEnabled))
	m.Handle("GET "+Prefix+"access", c.signedIn(c.accessPage))
	m.Handle("POST "+Prefix+"access/tokens", c.signedIn(c.createToken))
	m.Handle("GET "+Prefix+"signatures", c.signedIn(c.signatures))
	m.Handle("POST "+Prefix+"signatures/anchors", c.signedIn(c.addAnchor))
	m.Handle("POST "+Prefix+"signatures/anchor/refresh", c.signedIn(c.refreshAnchor))
	m.Handle("GET "+Prefix+"signatures/anchor/delete", c.signedIn(c.confirmAnchorDelete))
	m.Handle("POST "+Prefix+"signatures/anchor/delete", c.signedIn(c.deleteAnchor))
	m.Handle("POST "+Prefix+"signatures/rules", c.signedIn(c.saveRule))
	m.Handle("POST "+Prefix+"signatures/rules/delete", c.signedIn(c.deleteRule))
	m.Handle("POST "+Prefix+"signatures/policy", c.signedIn(c.setPolicyDoc))
	m.Handle("GET "+Prefix+"kms", c.signedIn(c.kmsClusters))
	m.Handle("POST "+Prefix+"kms/clusters", c.signedIn(c.createKMSCluster))
	m.Handle("GET "+Prefix+"kms/cluster", c.signedIn(c.kmsCluster))
	m.Handle("POST "+Prefix+"kms/cluster/update", c.signedIn(c.updateKMSCluster))
	m.Handle("POST "+Prefix+"kms/cluster/rotate", c.signedIn(c.rotateKMSCluster))
	m.Handle("POST "+Prefix+"kms/cluster/delete", c.signedIn(c.deleteKMSCluster))
	m.Handle("GET "+Prefix+"roles", c.signedIn(c.roles))
	m.Handle("POST "+Prefix+"roles", c.signedIn(c.assignRole))
	m.Handle("GET "+Prefix+"roles/delete", c.signedIn(c.confirmUnassign))
	m.Handle("POST "+Prefix+"roles/delete", c.signedIn(c.unassignRole))
	m.Handle("GET "+Prefix+"audit", c.signedIn(c.audit))
	m.Handle("POST "+Prefix+"audit/verify", c.signedIn(c.verifyAudit))
	c.vaultRoutes()
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", nil, map[string]any{"Title": "Not found", "Message": "There is no console page at this address.", "Next": "Go to the overview."})
	})
}

// request is one signed-in request: its session and an API client acting as its user.
type request struct {
	s   *Session
	api *apiClient
}

// signedIn runs p for a valid session; otherwise it sends the browser to sign in. A POST
// must carry the session's CSRF token and come from this origin.
func (c *Console) signedIn(p page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		se, err := c.lookupSession(r)
		if err != nil {
			// The session could not be read (the database is down or restarting): the
			// session may well be alive, so the cookie stays and the browser is not sent
			// to sign in; the page says to try again.
			c.sessionUnavailable(w, r, err)
			return
		}
		if se == nil {
			clearCookie(w, sessionCookie)
			if r.Method != http.MethodGet {
				c.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Title": "Signed out", "Message": "Your session has ended.", "Next": "Sign in again."})
				return
			}
			http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			if !sameOrigin(r) || !validCSRF(r, se.CSRF) {
				c.render(w, r, http.StatusForbidden, "error", se, map[string]any{"Title": "Refused", "Message": "This change did not carry the page's security token (CSRF), so it was refused.", "Next": "Go back, reload the page and try again."})
				return
			}
		}
		rq := &request{s: se, api: &apiClient{c: c, r: r, p: se.Principal}}
		p(w, r, rq)
	})
}

// session returns the request's live session, expiring it if idle or past its end; false
// also when the session could not be read (see lookupSession).
func (c *Console) session(r *http.Request) (*Session, bool) {
	se, err := c.lookupSession(r)
	return se, err == nil && se != nil
}

// lookupSession returns the request's live session, or nil when it has none (no cookie,
// an unknown one, or a session that ended, which it deletes). An error means the session
// store could not be read: whether the session is alive is not known.
func (c *Console) lookupSession(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, nil
	}
	hash := hashID(ck.Value)
	se, err := c.cfg.Sessions.Get(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	if !now.Before(se.Expires) || !now.Before(se.LastSeen.Add(c.cfg.Idle)) {
		c.cfg.Sessions.Delete(r.Context(), hash)
		return nil, nil
	}
	if now.Sub(se.LastSeen) >= touchEvery {
		if err := c.cfg.Sessions.Touch(r.Context(), hash, now); err != nil {
			c.cfg.Log.WarnContext(r.Context(), "console session touch failed", "err", err)
		}
	}
	return &se, nil
}

// sessionUnavailable answers a page whose session could not be read: 503 with Retry-After
// when the metadata database cannot be reached, 500 otherwise; the session cookie is kept.
func (c *Console) sessionUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	if store.IsConnectionLost(err) {
		c.cfg.Log.WarnContext(r.Context(), "console session lookup failed: metadata database unreachable", "err", err)
		w.Header().Set("Retry-After", "1")
		c.render(w, r, http.StatusServiceUnavailable, "error", nil, map[string]any{"Title": "Unavailable for a moment",
			"Message": "The server cannot reach its database just now.", "Next": "Try again in a few seconds; you are still signed in."})
		return
	}
	c.cfg.Log.ErrorContext(r.Context(), "console session lookup failed", "err", err)
	c.render(w, r, http.StatusInternalServerError, "error", nil, map[string]any{"Title": "Something failed",
		"Message": "The console could not read your session.", "Next": "Try again; if it keeps failing, see the server log."})
}

// validCSRF compares the form's (or htmx's header's) token with the session's in
// constant time.
func validCSRF(r *http.Request, want string) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses a state change sent from another site: the browser's Sec-Fetch-Site
// or, failing that, Origin must name this host.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser's cross-site form post (those carry Origin)
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// safeNext keeps a post-sign-in destination inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showSignin(w, r, http.StatusOK, "")
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	// Login CSRF: the form carries a value that must match a SameSite=Strict cookie.
	tok := newSecret()
	setCookie(w, signinCookie, tok, 15*time.Minute)
	w.Header().Set("Cache-Control", "no-store")
	data := map[string]any{"Title": "Sign in", "SigninToken": tok, "Next": safeNext(r.FormValue("next"))}
	if problem != "" {
		data["Problem"] = map[string]string{"Message": problem}
	}
	c.render(w, r, status, "signin", nil, data)
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.showSignin(w, r, http.StatusBadRequest, "The form could not be read: try again.")
		return
	}
	ck, err := r.Cookie(signinCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("signin"))) != 1 {
		c.showSignin(w, r, http.StatusForbidden, "The sign-in form expired or came from another site: sign in again from this page.")
		return
	}
	user, pw := r.PostFormValue("username"), r.PostFormValue("password")
	if user == "" || pw == "" {
		c.showSignin(w, r, http.StatusBadRequest, "Enter your user name and password.")
		return
	}
	p, wait, err := c.cfg.CheckPassword(r.Context(), r, user, pw)
	switch {
	case wait > 0:
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		c.showSignin(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins: wait %s before trying again.", wait.Round(time.Second)+time.Second))
		return
	case errors.Is(err, identity.ErrInvalidCredentials), err == nil && p.Kind != identity.KindUser:
		// Only users sign in to the console; a service principal or token gets the same answer.
		c.showSignin(w, r, http.StatusUnauthorized, "Wrong user name or password.")
		return
	case err != nil:
		c.cfg.Log.ErrorContext(r.Context(), "console sign-in failed", "err", err)
		c.showSignin(w, r, http.StatusInternalServerError, "Sign-in failed on the server; see the server log.")
		return
	}
	id := newSecret()
	now := c.cfg.Now()
	se := Session{Hash: hashID(id), Principal: p, CSRF: newSecret(), Created: now, LastSeen: now, Expires: now.Add(c.cfg.Absolute)}
	if err := c.cfg.Sessions.Create(r.Context(), se); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console sign-in failed", "err", err)
		c.showSignin(w, r, http.StatusInternalServerError, "Sign-in failed on the server; see the server log.")
		return
	}
	clearCookie(w, signinCookie)
	setCookie(w, sessionCookie, id, c.cfg.Absolute)
	c.cfg.Log.InfoContext(r.Context(), "console sign-in", "user", p.Name, "addr", r.RemoteAddr)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, rq *request) {
	if err := c.cfg.Sessions.Delete(r.Context(), rq.s.Hash); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console sign-out failed", "err", err)
	}
	clearCookie(w, sessionCookie)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// SweepSessions deletes expired sessions; the server runs it as a background job.
func (c *Console) SweepSessions(ctx context.Context) (int64, error) {
	now := c.cfg.Now()
	return c.cfg.Sessions.DeleteExpired(ctx, now, now.Add(-c.cfg.Idle))
}
