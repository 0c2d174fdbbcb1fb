// Package signaturesapi is the management API of the signature policy,
// /coffer/v1/registry/signatures (docs/signatures.md): anchors, the policy document and
// the verdict on one manifest. Writes need access/manage at /registry (Owner), reads
// access/read at /registry (Owner, Contributor, Reader); the verdict on a manifest needs
// registry/pull on its repository. Every write is audited.
package signaturesapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/signatures"
)

// Registry is what the verdict route reads of the registry.
type Registry interface {
	StatManifest(ctx context.Context, repo, reference string) (registry.ManifestRecord, error)
}

// Config configures the handlers.
type Config struct {
	Service  *signatures.Service
	Registry Registry
	Authz    access.Authorizer
	Audit    *audit.Log
	Log      *slog.Logger
}

// Handler serves /coffer/v1/registry/signatures.
type Handler struct{ cfg Config }

// New returns the handlers.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg}
}

// Register mounts the routes through the management router (which authenticates).
func (h *Handler) Register(rt *mgmt.Router) {
	p := mgmt.Prefix + "/registry/signatures"
	rt.HandleFunc("GET "+p+"/anchors", h.read(h.listAnchors))
	rt.HandleFunc("GET "+p+"/anchors/{name}", h.read(h.getAnchor))
	rt.HandleFunc("POST "+p+"/anchors", h.write(h.addAnchor))
	rt.HandleFunc("DELETE "+p+"/anchors/{name}", h.write(h.deleteAnchor))
	rt.HandleFunc("POST "+p+"/anchors/{name}/refresh", h.write(h.refreshAnchor))
	rt.HandleFunc("GET "+p+"/policy", h.read(h.getPolicy))
	rt.HandleFunc("PUT "+p+"/policy", h.write(h.setPolicy))
	rt.HandleFunc("GET "+p+"/verification", h.verification)
}

func (h *Handler) read(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if mgmt.Authorize(w, r, h.cfg.Authz, access.AccessRead, access.ScopeRegistry) {
			f(w, r)
		}
	}
}

func (h *Handler) write(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if mgmt.Authorize(w, r, h.cfg.Authz, access.AccessManage, access.ScopeRegistry) {
			f(w, r)
		}
	}
}

func (h *Handler) listAnchors(w http.ResponseWriter, r *http.Request) {
	as, err := h.cfg.Service.Anchors(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	out := wire.List[wire.SignatureAnchor]{Value: make([]wire.SignatureAnchor, len(as))}
	for i, a := range as {
		out.Value[i] = wire.SignatureAnchor(a)
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) getAnchor(w http.ResponseWriter, r *http.Request) {
	as, err := h.cfg.Service.Anchors(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	for _, a := range as {
		if a.Name == r.PathValue("name") {
			mgmt.WriteJSON(w, http.StatusOK, wire.SignatureAnchor(a))
			return
		}
	}
	mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, "no signature anchor is named "+r.PathValue("name"))
}

func (h *Handler) addAnchor(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var in wire.SignatureAnchor
	if !mgmt.DecodeJSON(w, r, &in) {
		return
	}
	out, err := h.cfg.Service.AddAnchor(r.Context(), signatures.AnchorSpec(in))
	h.record(r, start, signatures.OpAnchorAdd, in.Name, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusCreated, wire.SignatureAnchor(out))
}

func (h *Handler) deleteAnchor(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("name")
	err := h.cfg.Service.DeleteAnchor(r.Context(), name)
	h.record(r, start, signatures.OpAnchorDelete, name, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) refreshAnchor(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("name")
	res, err := h.cfg.Service.RefreshKeys(r.Context(), name)
	h.record(r, start, signatures.OpAnchorRefresh, name, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, wire.SignatureAnchorRefresh(res[0]))
}

func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := h.cfg.Service.Policy(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, PolicyOut(p))
}

func (h *Handler) setPolicy(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, signatures.MaxPolicySize))
	if err != nil {
		mgmt.WriteError(w, http.StatusRequestEntityTooLarge, mgmt.CodeBadParameter, "the policy document is larger than 256 KiB")
		return
	}
	p, err := h.cfg.Service.SetPolicy(r.Context(), body)
	h.record(r, start, signatures.OpPolicySet, "policy", err)
	if err != nil {
		h.fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, PolicyOut(p))
}

func (h *Handler) verification(w http.ResponseWriter, r *http.Request) {
	repo, ref := r.URL.Query().Get("repository"), r.URL.Query().Get("reference")
	if !registry.ValidName(repo) || ref == "" {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "give ?repository=NAME&reference=TAG-OR-DIGEST")
		return
	}
	if !mgmt.Authorize(w, r, h.cfg.Authz, access.RegistryPull, access.RepositoryScope(repo)) {
		return
	}
	m, err := h.cfg.Registry.StatManifest(r.Context(), repo, ref)
	if err != nil {
		var e *registry.Error
		if errors.As(err, &e) && (e.Code == registry.CodeManifestUnknown || e.Code == registry.CodeNameUnknown) {
			mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, e.Message)
			return
		}
		h.fail(w, err)
		return
	}
	v, err := h.cfg.Service.Evaluate(r.Context(), repo, m)
	if err != nil {
		h.fail(w, err)
		return
	}
	mgmt.WriteJSON(w, http.StatusOK, VerdictOut(v, repo, m.Digest))
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, signatures.ErrInvalid):
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, err.Error())
	case errors.Is(err, signatures.ErrExists):
		mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, "a signature anchor of that name exists: delete it first")
	case errors.Is(err, signatures.ErrNotFound):
		mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, err.Error())
	default:
		h.cfg.Log.Error("signature policy request failed", "err", err)
		mgmt.WriteFailure(w, err, "the request failed; see the server log")
	}
}

// record audits a change.
func (h *Handler) record(r *http.Request, start time.Time, op, target string, err error) {
	if h.cfg.Audit == nil {
		return
	}
	c, _ := authn.CallerFrom(r.Context())
	rec := audit.Record{Time: start, Component: "registry", Operation: op, Target: target, Resource: "registry/signatures",
		PrincipalID: c.Principal.ID, PrincipalName: c.Principal.Name, PrincipalKind: string(c.Principal.Kind),
		UserAgent: r.UserAgent(), Duration: time.Since(start), Result: audit.ResultSuccess}
	if host, _, herr := net.SplitHostPort(r.RemoteAddr); herr == nil {
		rec.ClientAddr = host
	}
	if err != nil {
		rec.Result, rec.Detail = audit.ResultFailure, err.Error()
	}
	if aerr := h.cfg.Audit.RecordSync(r.Context(), rec); aerr != nil {
		h.cfg.Log.Error("audit record not written", "operation", op, "err", aerr)
	}
}

// PolicyOut is p on the wire.
func PolicyOut(p signatures.Policy) wire.SignaturePolicy {
	out := wire.SignaturePolicy{Version: p.Version, Notation: p.Notation, RegistryHost: p.RegistryHost, Updated: p.Updated,
		Repositories: make([]wire.SignatureRule, len(p.Repositories))}
	for i, r := range p.Repositories {
		out.Repositories[i] = wire.SignatureRule(r)
	}
	return out
}

// VerdictOut is v, the verdict on manifest d of repo, on the wire.
func VerdictOut(v signatures.Verdict, repo string, d digest.Digest) wire.SignatureVerification {
	found := v.Found
	if found == nil {
		found = []string{}
	}
	return wire.SignatureVerification{Repository: repo, Digest: d.String(), Mode: v.Mode, Scope: v.Scope,
		Signatures: found, Verified: v.Verified, Kind: v.Kind, Anchor: v.Anchor, Reason: v.Reason}
}

// Tags adds the signatures and the verdict of each tag's manifest to the registry's tag
// listing (a registry/api TagAnnotator).
type Tags struct{ Service *signatures.Service }

// AnnotateTag sets t's signature fields.
func (a Tags) AnnotateTag(ctx context.Context, repo string, m registry.ManifestRecord, t *wire.Tag) error {
	if art, err := a.Service.SignatureArtifact(ctx, repo, t.Name, m); err != nil || art {
		if art {
			t.SignatureReason = "a signature artifact: not judged, always readable"
		}
		return err
	}
	v, err := a.Service.Evaluate(ctx, repo, m)
	if err != nil {
		return err
	}
	t.Signatures, t.SignaturePolicy = v.Found, v.Mode
	if v.Mode == signatures.ModeOff && len(v.Found) == 0 {
		return nil
	}
	ok := v.Verified
	t.Verified, t.Anchor = &ok, v.Anchor
	if !ok {
		t.SignatureReason = v.Reason
	}
	return nil
}
