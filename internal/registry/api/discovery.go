package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

func (h *Handler) base(w http.ResponseWriter, r *http.Request) {
	c, err := h.auth.Authenticate(r)
	if err != nil {
		h.auth.Reject(w, r, "", err)
		return
	}
	if c.Anonymous() {
		h.auth.Challenge(w, r, "", false, &registry.Error{Code: registry.CodeUnauthorized, Message: "authentication required"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		io.WriteString(w, "{}")
	}
}

// pagination parses n and last. Without n a page has registry.DefaultPageSize entries,
// and n is capped at registry.MaxPageSize (the spec lets a registry answer fewer than n;
// the Link header leads to the rest), so no listing is unbounded.
func pagination(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = registry.DefaultPageSize
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", &registry.Error{Code: "PAGINATION_NUMBER_INVALID", Message: "n must be a non-negative integer"}
		}
		n = min(v, registry.MaxPageSize)
	}
	return n, q.Get("last"), nil
}

func setNextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func (h *Handler) catalog(w http.ResponseWriter, r *http.Request) {
	const scope = "registry:catalog:*"
	c, err := h.auth.Authenticate(r)
	if err != nil {
		h.auth.Reject(w, r, scope, err)
		return
	}
	if !c.Allowed("registry", "catalog", registryauth.ActionAll) {
		h.auth.Refuse(w, r, c, scope, "listing the catalog needs "+scope)
		return
	}
	n, last, err := pagination(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	repos, more, err := h.svc.Catalog(r.Context(), last, n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if repos == nil {
		repos = []string{}
	}
	if more {
		setNextLink(w, "/v2/_catalog", n, repos[len(repos)-1])
	}
	writeJSON(w, r, http.StatusOK, "application/json", map[string]any{"repositories": repos})
}

func (h *Handler) tags(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPull); !ok {
		return
	}
	n, last, err := pagination(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tags, more, err := h.svc.Tags(r.Context(), rt.name, last, n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if tags == nil {
		tags = []string{}
	}
	if more {
		setNextLink(w, "/v2/"+rt.name+"/tags/list", n, tags[len(tags)-1])
	}
	writeJSON(w, r, http.StatusOK, "application/json", map[string]any{"name": rt.name, "tags": tags})
}
