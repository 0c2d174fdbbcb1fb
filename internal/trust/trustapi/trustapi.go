// Package trustapi serves the Notary v1 (TUF) server API of content trust on the registry
// listener (/v2/<gun>/_trust/...), through the registry's one authentication
// (registryauth): the same challenge, tokens and scopes as image pulls and pushes. A trust
// write also needs the signer grant (AcrImageSigner, or a repository token with
// content/sign), checked here since the token scope only says push.
package trustapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/trust"
)

// Handler serves /v2/<gun>/_trust/... and /v2/_trust/changefeed.
type Handler struct {
	svc   *trust.Service
	auth  *registryauth.Authenticator
	authz access.Authorizer
	log   *slog.Logger
}

// New returns the trust API handler.
func New(svc *trust.Service, auth *registryauth.Authenticator, authz access.Authorizer, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{svc: svc, auth: auth, authz: authz, log: log}
}

// Health serves /_notary_server/health.
func Health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok, err := trust.ParsePath(strings.TrimPrefix(r.URL.Path, "/v2/"))
	if !ok {
		h.write(w, r, &trust.Error{Status: http.StatusNotFound, Code: trust.CodeMetadataNotFound, Message: "no such trust resource"})
		return
	}
	if err != nil {
		h.write(w, r, &trust.Error{Status: http.StatusBadRequest, Code: trust.CodeInvalidRole, Message: err.Error()})
		return
	}
	// While content trust is disabled every trust path is absent (404, saying why).
	if on, err := h.svc.Enabled(r.Context()); err != nil || !on {
		if err == nil {
			err = &trust.Error{Status: http.StatusNotFound, Code: trust.CodeMetadataNotFound, Message: trust.ErrDisabled.Error()}
		}
		h.write(w, r, err)
		return
	}
	m := r.Method
	switch {
	case p.Kind == trust.KindChangefeed && m == http.MethodGet:
		h.changefeed(w, r, p)
	case (p.Kind == trust.KindMeta || p.Kind == trust.KindMetaChecksum || p.Kind == trust.KindMetaVersion) && (m == http.MethodGet || m == http.MethodHead):
		h.getMeta(w, r, p)
	case p.Kind == trust.KindKey && m == http.MethodGet:
		h.key(w, r, p, false)
	case p.Kind == trust.KindKey && m == http.MethodPost:
		h.key(w, r, p, true)
	case p.Kind == trust.KindCollection && m == http.MethodPost:
		h.update(w, r, p)
	case p.Kind == trust.KindCollection && m == http.MethodDelete:
		h.delete(w, r, p)
	default:
		w.Header().Set("Allow", allowFor(p.Kind))
		registryauth.WriteError(w, http.StatusMethodNotAllowed, &registry.Error{Code: registry.CodeUnsupported, Message: m + " is not supported on " + r.URL.Path})
	}
}

func allowFor(kind string) string {
	switch kind {
	case trust.KindKey:
		return "GET, POST"
	case trust.KindCollection:
		return "POST, DELETE"
	}
	return "GET, HEAD"
}

// gunOK refuses a GUN that is not this registry's before any token check says more.
func (h *Handler) gunOK(w http.ResponseWriter, r *http.Request, gun string) (string, bool) {
	repo, err := h.svc.CheckGUN(gun)
	if err != nil {
		h.write(w, r, err)
		return "", false
	}
	return repo, true
}

// requireSigner authorizes a trust write: the token grants push on the GUN (checked by
// Require), and the caller holds the signer grant on the repository.
func (h *Handler) requireSigner(w http.ResponseWriter, r *http.Request, gun, repo string) bool {
	c, ok := h.auth.Require(w, r, gun, registryauth.ActionPull, registryauth.ActionPush)
	if !ok {
		return false
	}
	err := h.authz.Authorize(r.Context(), access.Request{Principal: c.Claims.Principal(), Action: access.RegistrySign, Scope: access.RepositoryScope(repo)})
	if err == nil {
		return true
	}
	if !errors.Is(err, access.ErrDenied) {
		h.write(w, r, err)
		return false
	}
	pr := c.Claims.Principal()
	h.auth.Refuse(w, r, c, registryauth.RepositoryScope(gun, registryauth.ActionPush),
		fmt.Sprintf("signing is a separate grant: %s %q may push to %s but is not a signer; assign the %s role at a scope covering the repository (a repository token needs the %s action)",
			pr.Kind, pr.Name, repo, access.RoleAcrImageSigner, access.ScopeContentSign))
	return false
}

func (h *Handler) getMeta(w http.ResponseWriter, r *http.Request, p trust.Path) {
	if _, ok := h.gunOK(w, r, p.GUN); !ok {
		return
	}
	if _, ok := h.auth.Require(w, r, p.GUN, registryauth.ActionPull); !ok {
		return
	}
	var meta trust.Meta
	var err error
	switch p.Kind {
	case trust.KindMetaChecksum:
		meta, err = h.svc.GetChecksum(r.Context(), p.GUN, p.Role, p.Checksum)
	case trust.KindMetaVersion:
		meta, err = h.svc.GetVersion(r.Context(), p.GUN, p.Role, p.Version)
	default:
		meta, err = h.svc.Get(r.Context(), p.GUN, p.Role)
	}
	if err != nil {
		h.write(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(meta.Data)))
	hd.Set("ETag", `"`+meta.SHA256+`"`)
	hd.Set("Last-Modified", meta.Modified.UTC().Format(http.TimeFormat))
	if meta.Consistent {
		// A checksum- or version-addressed file never changes.
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// The current file changes with every publish (and timestamp.json on re-signing).
		hd.Set("Cache-Control", "no-cache, must-revalidate")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == `"`+meta.SHA256+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	w.Write(meta.Data)
}

func (h *Handler) key(w http.ResponseWriter, r *http.Request, p trust.Path, rotate bool) {
	repo, ok := h.gunOK(w, r, p.GUN)
	if !ok {
		return
	}
	// Fetching a key may create it in the vault: a write, like rotating it.
	if !h.requireSigner(w, r, p.GUN, repo) {
		return
	}
	var pub []byte
	var err error
	if rotate {
		pub, err = h.svc.RotateKey(r.Context(), p.GUN, p.Role)
	} else {
		pub, err = h.svc.Key(r.Context(), p.GUN, p.Role)
	}
	if err != nil {
		h.write(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pub)
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request, p trust.Path) {
	repo, ok := h.gunOK(w, r, p.GUN)
	if !ok {
		return
	}
	if !h.requireSigner(w, r, p.GUN, repo) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, trust.MaxUpdateSize+1<<20)
	parts, err := trust.ParseUpdate(r.Body, r.Header.Get("Content-Type"))
	if err != nil {
		h.write(w, r, err)
		return
	}
	if err := h.svc.Update(r.Context(), p.GUN, parts); err != nil {
		h.write(w, r, err)
		return
	}
	roles := make([]string, 0, len(parts))
	for _, pt := range parts {
		roles = append(roles, pt.Role.String())
	}
	h.log.InfoContext(r.Context(), "trust data published", "gun", p.GUN, "roles", roles)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, p trust.Path) {
	repo, ok := h.gunOK(w, r, p.GUN)
	if !ok {
		return
	}
	if !h.requireSigner(w, r, p.GUN, repo) {
		return
	}
	if err := h.svc.Delete(r.Context(), p.GUN); err != nil {
		h.write(w, r, err)
		return
	}
	h.log.InfoContext(r.Context(), "trust data deleted", "gun", p.GUN)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) changefeed(w http.ResponseWriter, r *http.Request, p trust.Path) {
	if p.GUN == "" {
		// Every repository's changes: the catalog grant.
		c, err := h.auth.Authenticate(r)
		if err != nil {
			h.auth.Reject(w, r, "registry:catalog:*", err)
			return
		}
		if !c.Allowed("registry", "catalog", registryauth.ActionAll) {
			h.auth.Refuse(w, r, c, "registry:catalog:*", "the registry-wide changefeed needs the catalog grant (registry:catalog:*)")
			return
		}
	} else {
		if _, ok := h.gunOK(w, r, p.GUN); !ok {
			return
		}
		if _, ok := h.auth.Require(w, r, p.GUN, registryauth.ActionPull); !ok {
			return
		}
	}
	q := r.URL.Query()
	recs, err := h.svc.Changefeed(r.Context(), p.GUN, q.Get("change"), q.Get("records"))
	if err != nil {
		h.write(w, r, err)
		return
	}
	body, _ := json.Marshal(struct {
		Count   int                  `json:"count"`
		Records []trust.ChangeRecord `json:"records"`
	}{len(recs), recs})
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// write answers err in the registry's error envelope with the notary code.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	var te *trust.Error
	if errors.As(err, &te) {
		registryauth.WriteError(w, te.Status, &registry.Error{Code: registry.Code(te.Code), Message: te.Message, Detail: te.Detail})
		return
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		registryauth.WriteError(w, http.StatusBadRequest, &registry.Error{Code: trust.CodeMalformedUpload, Message: "the update is too large"})
		return
	}
	if store.IsConnectionLost(err) {
		// The metadata database is down or restarting: retry as is, as the registry says.
		h.log.WarnContext(r.Context(), "trust API failure: metadata database unreachable", "path", r.URL.Path, "err", err)
		registryauth.WriteUnavailable(w)
		return
	}
	h.log.ErrorContext(r.Context(), "trust API failure", "path", r.URL.Path, "err", err)
	registryauth.WriteError(w, http.StatusInternalServerError, &registry.Error{Code: "UPDATING", Message: "internal error in the trust service; the server log has the cause"})
}
