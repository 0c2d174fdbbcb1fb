package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
)

// The key handlers: list, get, import, update, delete, restore, and the per-key verbs
// (create, backup, rotate, rotation policy, versions).

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
