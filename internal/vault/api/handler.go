// Package api serves a vault's data plane in the Azure Key Vault keys REST dialect, so the
// official Azure SDKs work against Coffer unchanged. Handlers are thin: they parse the
// request, authenticate the bearer token and call vault.Service, which authorizes, applies
// network rules and audits.
package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/token"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Config wires the API. Functions are read per request (parts wired later).
type Config struct {
	Service  *vault.Service
	Verifier func() authn.Verifier
	TenantID func() string
	// AuthorityURL is the server's main URL; the challenge names AuthorityURL/TENANT.
	AuthorityURL func() string
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
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, buckets: map[string]*bucket{}, tokens: map[[32]byte]cachedToken{}}
}

// Error codes the Key Vault SDKs know.
const (
	CodeBadParameter = "BadParameter"
	CodeUnauthorized = "Unauthorized"
	CodeForbidden    = "Forbidden"
	CodeKeyNotFound  = "KeyNotFound"
	CodeNotFound     = "NotFound"
	CodeConflict     = "Conflict"
	CodeThrottled    = "Throttled"
	CodeInternal     = "InternalServerError"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *innerError `json:"innererror,omitempty"`
}

type innerError struct {
	Code string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, code, msg, inner string) {
	d := errorDetail{Code: code, Message: msg}
	if inner != "" {
		d.InnerError = &innerError{Code: inner}
	}
	writeJSON(w, status, errorBody{Error: d})
}

// writeServiceError maps the service's typed errors to Key Vault's status codes and shapes.
func (h *Handler) writeServiceError(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	switch {
	case errors.Is(err, vault.ErrNetworkDenied):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "ForbiddenByFirewall")
	case errors.Is(err, vault.ErrForbidden):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "AccessDenied")
	case errors.Is(err, vault.ErrDisabled):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyDisabled")
	case errors.Is(err, vault.ErrExpired):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyExpired")
	case errors.Is(err, vault.ErrNotYetValid):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyNotYetValid")
	case errors.Is(err, vault.ErrPurgeProtected):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "PurgeProtected")
	case errors.Is(err, keys.ErrUnsupported):
		writeError(w, http.StatusBadRequest, CodeBadParameter, msg, "KeyAlgorithmMismatch")
	case errors.Is(err, vault.ErrOperationNotAllowed):
		writeError(w, http.StatusForbidden, CodeForbidden, msg, "KeyOperationNotPermitted")
	case errors.Is(err, keys.ErrDecrypt), errors.Is(err, vault.ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeBadParameter, msg, "")
	case errors.Is(err, vault.ErrNotFound):
		writeError(w, http.StatusNotFound, CodeKeyNotFound, msg, "")
	case errors.Is(err, vault.ErrConflict):
		writeError(w, http.StatusConflict, CodeConflict, msg, "")
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request cancelled", "")
	default:
		h.cfg.Log.Error("vault request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "the vault could not complete the request; see the server log", "")
	}
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
	tenant := ""
	if h.cfg.TenantID != nil {
		tenant = h.cfg.TenantID()
	}
	auth := ""
	if h.cfg.AuthorityURL != nil {
		auth = strings.TrimRight(h.cfg.AuthorityURL(), "/")
	}
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
		if errors.Is(err, errNoVerifier) {
			writeError(w, http.StatusServiceUnavailable, CodeInternal, "the token service is not available", "")
			return
		}
		h.challenge(w, r, portMode, "AKV10022: invalid token: "+err.Error())
		return
	}
	if wait, ok := h.allow(name); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, http.StatusTooManyRequests, CodeThrottled, fmt.Sprintf("vault %q is over its request rate; retry after %s", name, wait.Round(time.Millisecond)), "")
		return
	}
	c := vault.Client{UserAgent: r.UserAgent(), BaseURL: "https://" + r.Host}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Addr = ap.Addr().Unmap()
	}
	ctx := vault.WithClient(r.Context(), c)
	h.route(w, r.WithContext(ctx), name, p)
}

var errNoVerifier = errors.New("no token verifier")

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
	var ver authn.Verifier
	if h.cfg.Verifier != nil {
		ver = h.cfg.Verifier()
	}
	if ver == nil {
		return identity.Principal{}, errNoVerifier
	}
	claims, err := ver.Verify(ctx, raw, token.VaultResource(h.cfg.Domain))
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

// ---- rate limiting: a token bucket per vault ----

type bucket struct {
	tokens float64
	last   time.Time
}

func (h *Handler) allow(name string) (time.Duration, bool) {
	rate := h.cfg.RateLimit
	if rate <= 0 {
		return 0, true
	}
	burst := math.Max(rate, 1)
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.buckets[name]
	if !ok {
		if len(h.buckets) > 10000 {
			clear(h.buckets)
		}
		b = &bucket{tokens: burst, last: now}
		h.buckets[name] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second)), false
}

// ---- routing ----

var keyOps = map[string]string{
	"wrapkey": vault.OpWrap, "unwrapkey": vault.OpUnwrap, "encrypt": vault.OpEncrypt,
	"decrypt": vault.OpDecrypt, "sign": vault.OpSign, "verify": vault.OpVerify,
}

var keyVerbs = map[string]bool{
	"create": true, "backup": true, "rotate": true, "rotationpolicy": true, "versions": true,
	"release": true, "attestation": true,
}

func segments(path string) []string {
	var out []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, CodeBadParameter, fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path), "")
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request, v string, p identity.Principal) {
	seg := segments(r.URL.EscapedPath())
	for i, s := range seg {
		u, err := url.PathUnescape(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadParameter, "bad path escape", "")
			return
		}
		seg[i] = u
	}
	m := r.Method
	switch {
	case len(seg) == 1 && seg[0] == "keys":
		if m != http.MethodGet {
			methodNotAllowed(w, r)
			return
		}
		h.listKeys(w, r, v, p)
	case len(seg) == 2 && seg[0] == "keys" && seg[1] == "restore" && m == http.MethodPost:
		h.restore(w, r, v, p)
	case len(seg) == 2 && seg[0] == "keys":
		switch m {
		case http.MethodGet:
			h.getKey(w, r, v, p, seg[1], "")
		case http.MethodPut:
			h.importKey(w, r, v, p, seg[1])
		case http.MethodDelete:
			h.deleteKey(w, r, v, p, seg[1])
		case http.MethodPatch:
			h.updateKey(w, r, v, p, seg[1], "")
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 3 && seg[0] == "keys" && keyOps[strings.ToLower(seg[2])] != "":
		h.keyOperation(w, r, v, p, seg[1], "", keyOps[strings.ToLower(seg[2])])
	case len(seg) == 3 && seg[0] == "keys" && keyVerbs[strings.ToLower(seg[2])]:
		h.keyVerb(w, r, v, p, seg[1], strings.ToLower(seg[2]))
	case len(seg) == 3 && seg[0] == "keys":
		switch m {
		case http.MethodGet:
			h.getKey(w, r, v, p, seg[1], seg[2])
		case http.MethodPatch:
			h.updateKey(w, r, v, p, seg[1], seg[2])
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 4 && seg[0] == "keys" && keyOps[strings.ToLower(seg[3])] != "":
		h.keyOperation(w, r, v, p, seg[1], seg[2], keyOps[strings.ToLower(seg[3])])
	case len(seg) == 4 && seg[0] == "keys" && (strings.EqualFold(seg[3], "release") || strings.EqualFold(seg[3], "attestation")):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "key release and attestation need an HSM: this vault has none", "NotSupported")
	case len(seg) == 1 && seg[0] == "deletedkeys" && m == http.MethodGet:
		h.listDeleted(w, r, v, p)
	case len(seg) == 2 && seg[0] == "deletedkeys":
		switch m {
		case http.MethodGet:
			d, err := h.cfg.Service.GetDeletedKey(r.Context(), p, v, seg[1])
			if err != nil {
				h.writeServiceError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, deletedBundle(d))
		case http.MethodDelete:
			if err := h.cfg.Service.PurgeDeletedKey(r.Context(), p, v, seg[1]); err != nil {
				h.writeServiceError(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 3 && seg[0] == "deletedkeys" && seg[2] == "recover" && m == http.MethodPost:
		k, err := h.cfg.Service.RecoverDeletedKey(r.Context(), p, v, seg[1])
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, bundle(k))
	case len(seg) == 1 && seg[0] == "rng" && m == http.MethodPost:
		var req randomRequest
		if !decode(w, r, &req) {
			return
		}
		b, err := h.cfg.Service.RandomBytes(r.Context(), p, v, req.Count)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]keys.B64{"value": b})
	case len(seg) >= 1 && (seg[0] == "secrets" || seg[0] == "certificates" || seg[0] == "deletedsecrets" || seg[0] == "deletedcertificates"):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "this vault serves keys only: secrets and certificates are not supported", "NotSupported")
	default:
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no vault operation at %s %s", r.Method, r.URL.Path), "")
	}
}

// decode reads a JSON body (at most 4 MiB) into v; unknown fields are ignored so newer
// SDKs keep working.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request body: "+err.Error(), "")
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request body is empty", "")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "invalid JSON body: "+err.Error(), "")
		return false
	}
	return true
}

func (h *Handler) nextLink(r *http.Request, next string) *string {
	if next == "" {
		return nil
	}
	q := url.Values{}
	q.Set("api-version", r.URL.Query().Get("api-version"))
	if mr := r.URL.Query().Get("maxresults"); mr != "" {
		q.Set("maxresults", mr)
	}
	q.Set("$skiptoken", next)
	s := "https://" + r.Host + r.URL.Path + "?" + q.Encode()
	return &s
}

func maxResults(r *http.Request) (int, error) {
	s := r.URL.Query().Get("maxresults")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 25 {
		return 0, fmt.Errorf("%w: maxresults must be 1 to 25", vault.ErrInvalid)
	}
	return n, nil
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, v string, p identity.Principal) {
	writePage(h, w, r, func(n int, skip string) (vault.Page[vault.Key], error) {
		return h.cfg.Service.ListKeys(r.Context(), p, v, n, skip)
	}, item)
}

func (h *Handler) listDeleted(w http.ResponseWriter, r *http.Request, v string, p identity.Principal) {
	writePage(h, w, r, func(n int, skip string) (vault.Page[vault.DeletedKey], error) {
		return h.cfg.Service.ListDeletedKeys(r.Context(), p, v, n, skip)
	}, deletedItem)
}

// writePage answers a list call: maxresults and $skiptoken in, one page of items and the
// nextLink out.
func writePage[T, U any](h *Handler, w http.ResponseWriter, r *http.Request, list func(n int, skip string) (vault.Page[T], error), conv func(T) U) {
	n, err := maxResults(r)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	page, err := list(n, r.URL.Query().Get("$skiptoken"))
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	out := listResult[U]{Value: []U{}, NextLink: h.nextLink(r, page.Next)}
	for _, x := range page.Items {
		out.Value = append(out.Value, conv(x))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name, version string) {
	k, err := h.cfg.Service.GetKey(r.Context(), p, v, name, version)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(k))
}

func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name string) {
	d, err := h.cfg.Service.DeleteKey(r.Context(), p, v, name)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deletedBundle(d))
}

func (h *Handler) importKey(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name string) {
	var req importKeyRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Key == nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "key is required", "")
		return
	}
	ip := vault.ImportKeyParams{JWK: *req.Key, HSM: req.HSM != nil && *req.HSM, Tags: req.Tags}
	if a := req.Attributes; a != nil {
		ip.Enabled, ip.NotBefore, ip.Expires = a.Enabled, a.NotBefore.time(), a.Expires.time()
	}
	k, err := h.cfg.Service.ImportKey(r.Context(), p, v, name, ip)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(k))
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name, version string) {
	var req updateKeyRequest
	if !decode(w, r, &req) {
		return
	}
	up := vault.UpdateKeyParams{KeyOps: req.KeyOps, Tags: req.Tags}
	if a := req.Attributes; a != nil {
		up.Enabled, up.NotBefore, up.Expires = a.Enabled, a.NotBefore.time(), a.Expires.time()
	}
	k, err := h.cfg.Service.UpdateKey(r.Context(), p, v, name, version, up)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(k))
}

func (h *Handler) restore(w http.ResponseWriter, r *http.Request, v string, p identity.Principal) {
	var req restoreRequest
	if !decode(w, r, &req) {
		return
	}
	k, err := h.cfg.Service.RestoreKey(r.Context(), p, v, req.Value)
	if err != nil {
		h.writeServiceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(k))
}

func (h *Handler) keyVerb(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name, verb string) {
	ctx, svc, m := r.Context(), h.cfg.Service, r.Method
	switch {
	case verb == "create" && m == http.MethodPost:
		var req createKeyRequest
		if !decode(w, r, &req) {
			return
		}
		cp := vault.CreateKeyParams{Kty: req.Kty, Curve: req.Crv, KeyOps: req.KeyOps, Tags: req.Tags}
		if req.KeySize != nil {
			cp.Size = *req.KeySize
		}
		if req.PublicExponent != nil {
			cp.PublicExponent = *req.PublicExponent
		}
		if a := req.Attributes; a != nil {
			cp.Enabled, cp.NotBefore, cp.Expires = a.Enabled, a.NotBefore.time(), a.Expires.time()
		}
		k, err := svc.CreateKey(ctx, p, v, name, cp)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, bundle(k))
	case verb == "backup" && m == http.MethodPost:
		blob, err := svc.BackupKey(ctx, p, v, name)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, backupResult{Value: blob})
	case verb == "rotate" && m == http.MethodPost:
		k, err := svc.RotateKey(ctx, p, v, name)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, bundle(k))
	case verb == "rotationpolicy" && m == http.MethodGet:
		pol, err := svc.GetRotationPolicy(ctx, p, v, name)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, policyOut(pol))
	case verb == "rotationpolicy" && m == http.MethodPut:
		var req rotationPolicyJSON
		if !decode(w, r, &req) {
			return
		}
		in := vault.RotationPolicy{LifetimeActions: req.LifetimeActions}
		if req.Attributes != nil {
			in.Attributes.ExpiryTime = req.Attributes.ExpiryTime
		}
		pol, err := svc.SetRotationPolicy(ctx, p, v, name, in)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, policyOut(pol))
	case verb == "versions" && m == http.MethodGet:
		writePage(h, w, r, func(n int, skip string) (vault.Page[vault.Key], error) {
			return svc.ListKeyVersions(ctx, p, v, name, n, skip)
		}, item)
	case verb == "release" || verb == "attestation":
		writeError(w, http.StatusBadRequest, CodeBadParameter, "key release and attestation need an HSM: this vault has none", "NotSupported")
	default:
		methodNotAllowed(w, r)
	}
}

func (h *Handler) keyOperation(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name, version, op string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	ctx, svc := r.Context(), h.cfg.Service
	switch op {
	case vault.OpSign:
		var req signRequest
		if !decode(w, r, &req) {
			return
		}
		kid, sig, err := svc.Sign(ctx, p, v, name, version, req.Alg, req.Value)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, keyOperationResult{Kid: kid, Value: sig})
	case vault.OpVerify:
		var req verifyRequest
		if !decode(w, r, &req) {
			return
		}
		_, ok, err := svc.Verify(ctx, p, v, name, version, req.Alg, req.Digest, req.Signature)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, verifyResult{Value: ok})
	default:
		var req keyOperationRequest
		if !decode(w, r, &req) {
			return
		}
		kid, res, err := svc.Crypt(ctx, p, v, name, version, op, keys.CipherParams{Alg: req.Alg, Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, keyOperationResult{Kid: kid, Value: res.Value, IV: res.IV, Tag: res.Tag, AAD: res.AAD})
	}
}
