// Package api serves a vault's data plane in the Azure Key Vault keys REST dialect, so the
// official Azure SDKs work against Coffer unchanged. Handlers are thin: they parse the
// request, authenticate the bearer token and call vault.Service, which authorizes, applies
// network rules and audits.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
)

// Config wires the API. Service and Verifier are required.
type Config struct {
	Service *vault.Service
	// Verifier checks bearer tokens (the token service).
	Verifier authn.Verifier
	// TenantID is this server's tenant; the challenge names AuthorityURL/TENANT.
	TenantID string
	// AuthorityURL is the server's main URL (vault.Addresses.AuthorityURL).
	AuthorityURL string
	// Domain is the vault domain (vault NAME answers at NAME.<Domain>).
	Domain string
	// RateLimit is requests per second per vault (0: unlimited).
	RateLimit float64
	Log       *slog.Logger
	Now       func() time.Time
}

// Handler serves vault data planes.
type Handler struct {
	cfg     Config
	mu      sync.Mutex
	buckets map[string]*bucket
	// tokens caches verified bearer tokens (by SHA-256 of the token) for at most
	// tokenCacheTTL and never past their expiry: a signature check per request costs as
	// much as the vault's own work on small operations.
	tokens map[[32]byte]cachedToken
}

type cachedToken struct {
	p     identity.Principal
	until time.Time
}

const tokenCacheTTL = 30 * time.Second

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil {
		return nil, errors.New("vault api: Config.Service is required")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("vault api: Config.Verifier is required (the token service verifies every bearer token)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, buckets: map[string]*bucket{}, tokens: map[[32]byte]cachedToken{}}, nil
}

var apiVersionRE = regexp.MustCompile(`^(\d+)\.(\d+)(-preview(\.\d+)?)?$|^(\d{4})-(\d{2})-(\d{2})(-preview(\.\d+)?)?$`)

// checkAPIVersion accepts 7.x (7.0 on), dated versions (2025-07-01 and later ones that do
// not exist yet are tolerated) and refuses what is missing or older than 7.0.
func checkAPIVersion(v string) error {
	if v == "" {
		return errors.New("the api-version query parameter is required (for example api-version=7.4)")
	}
	m := apiVersionRE.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("api-version %q is not a version this vault understands (7.0 to 7.6, or a dated version such as 2025-07-01)", v)
	}
	if m[1] != "" {
		major, _ := strconv.Atoi(m[1])
		if major < 7 {
			return fmt.Errorf("api-version %q is too old: use 7.0 or later", v)
		}
		return nil
	}
	year, _ := strconv.Atoi(m[5])
	if year < 2016 {
		return fmt.Errorf("api-version %q is too old", v)
	}
	if year < 2024 {
		// Dated versions before 7.0 (2015-06-01, 2016-10-01) are the old service versions.
		return fmt.Errorf("api-version %q is too old: use 7.0 or later", v)
	}
	return nil
}

// resource is the challenge's resource for a request: the vault domain, with the port the
// client used, so the SDK's check (vault host ends with "." + resource host) passes. For a
// vault reached on a port of its own by address, no resource host can be a parent of an IP
// address: clients set DisableChallengeResourceVerification (see docs/vault.md).
func (h *Handler) resource(r *http.Request, portMode bool) string {
	res := token.VaultResource(h.cfg.Domain)
	if portMode {
		return res
	}
	if _, port, err := net.SplitHostPort(r.Host); err == nil && port != "" && port != "443" {
		return res + ":" + port
	}
	return res
}

func (h *Handler) challenge(w http.ResponseWriter, r *http.Request, portMode bool, problem string) {
	auth := strings.TrimRight(h.cfg.AuthorityURL, "/")
	tenant := h.cfg.TenantID
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`, auth, tenant, h.resource(r, portMode)))
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, problem, "")
}

// Serve serves one request to the data plane of vault name. portMode says the request came
// in on the vault's own port (not by host name).
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, name string, portMode bool) {
	if err := checkAPIVersion(r.URL.Query().Get("api-version")); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, err.Error(), "")
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		// The SDK's first request: cheap, not rate-limited, body ignored.
		h.challenge(w, r, portMode, "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	p, err := h.verify(r.Context(), raw)
	if err != nil {
		h.challenge(w, r, portMode, "AKV10022: invalid token: "+err.Error())
		return
	}
	if wait, ok := h.allow(name); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, http.StatusTooManyRequests, CodeThrottled, fmt.Sprintf("vault %q is over its request rate; retry after %s", name, wait.Round(time.Millisecond)), "")
		return
	}
	// Key ids name the vault that answered. By host name, the host the client used: the
	// router checked it is NAME.<vault domain>, and its port is the one the client reached
	// (a proxy may map it), in lower case as the vault's name is stored. On the vault's own
	// port the Host header may say anything: ids use the vault's configured URL.
	c := vault.Client{UserAgent: r.UserAgent()}
	if !portMode {
		c.BaseURL = "https://" + strings.ToLower(r.Host)
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Addr = ap.Addr().Unmap()
	}
	ctx := vault.WithClient(r.Context(), c)
	h.route(w, r.WithContext(ctx), name, p)
}

// verify checks a bearer token for the vault audience, from the cache when it was checked
// in the last tokenCacheTTL.
func (h *Handler) verify(ctx context.Context, raw string) (identity.Principal, error) {
	sum := sha256.Sum256([]byte(raw))
	now := h.cfg.Now()
	h.mu.Lock()
	c, ok := h.tokens[sum]
	h.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.p, nil
	}
	claims, err := h.cfg.Verifier.Verify(ctx, raw, token.VaultResource(h.cfg.Domain))
	if err != nil {
		return identity.Principal{}, err
	}
	until := now.Add(tokenCacheTTL)
	if claims.ExpiresAt != nil && claims.ExpiresAt.Time.Before(until) {
		until = claims.ExpiresAt.Time
	}
	h.mu.Lock()
	if len(h.tokens) > 10000 {
		clear(h.tokens)
	}
	h.tokens[sum] = cachedToken{p: claims.Principal(), until: until}
	h.mu.Unlock()
	return claims.Principal(), nil
}
