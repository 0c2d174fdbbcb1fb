package api

import (
	"net/http"

	"github.com/cofferhq/coffer/internal/registry"
)

func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPull); !ok {
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
