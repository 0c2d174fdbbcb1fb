package api

import (
	"net/http"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPull); !ok {
		return
	}
	d, err := registry.ParseDigest(rt.ref)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	at := r.URL.Query().Get("artifactType")
	refs, err := h.svc.Referrers(r.Context(), rt.name, d, at)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, http.StatusOK, registry.MediaTypeOCIIndex, map[string]any{
		"schemaVersion": 2,
		"mediaType":     registry.MediaTypeOCIIndex,
		"manifests":     refs,
	})
}
