package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

// route is a parsed /v2/ path.
type route struct {
	kind string // base, catalog, manifest, blob, upload-start, upload, tags, referrers, trust
	name string
	ref  string
}

// parsePath splits /v2/<name>/<endpoint>. Repository names contain slashes, so the
// endpoint is recognised from the end of the path.
func parsePath(p string) (route, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	if rest == "" {
		return route{kind: "base"}, true
	}
	if rest == "_catalog" {
		return route{kind: "catalog"}, true
	}
	if rest == "_trust/changefeed" {
		return route{kind: "trust", name: rest}, true
	}
	if i := strings.Index(rest, "/_trust/"); i > 0 {
		return route{kind: "trust", name: rest[:i]}, true
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	join := func(k int) string { return strings.Join(segs[:k], "/") }
	switch {
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		if segs[n-1] == "" {
			return route{kind: "upload-start", name: join(n - 3)}, true
		}
		return route{kind: "upload", name: join(n - 3), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return route{kind: "upload-start", name: join(n - 2)}, true
	case n >= 2 && segs[n-2] == "blobs":
		return route{kind: "blob", name: join(n - 2), ref: segs[n-1]}, true
	case n >= 2 && segs[n-2] == "manifests":
		return route{kind: "manifest", name: join(n - 2), ref: segs[n-1]}, true
	case n >= 2 && segs[n-2] == "referrers":
		return route{kind: "referrers", name: join(n - 2), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return route{kind: "tags", name: join(n - 2)}, true
	}
	return route{}, false
}

// ServeHTTP routes a /v2/ request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	r = withRequestID(w, r)
	rt, ok := parsePath(r.URL.Path)
	if !ok || (rt.kind != "base" && rt.kind != "catalog" && rt.name == "") {
		registryauth.WriteError(w, http.StatusNotFound, &registry.Error{Code: registry.CodeNameUnknown, Message: "no such endpoint: " + r.URL.Path})
		return
	}
	if rt.kind == "trust" {
		if h.cfg.Trust != nil {
			h.cfg.Trust.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	if rt.name != "" && !registry.ValidName(rt.name) {
		registryauth.WriteError(w, http.StatusBadRequest, &registry.Error{Code: registry.CodeNameInvalid, Message: fmt.Sprintf("invalid repository name %q", rt.name)})
		return
	}
	m := r.Method
	switch rt.kind {
	case "base":
		if m != http.MethodGet && m != http.MethodHead {
			break
		}
		h.base(w, r)
		return
	case "catalog":
		if m == http.MethodGet {
			h.catalog(w, r)
			return
		}
	case "manifest":
		switch m {
		case http.MethodGet, http.MethodHead:
			h.getManifest(w, r, rt)
			return
		case http.MethodPut:
			h.putManifest(w, r, rt)
			return
		case http.MethodDelete:
			h.deleteManifest(w, r, rt)
			return
		}
	case "blob":
		switch m {
		case http.MethodGet, http.MethodHead:
			h.getBlob(w, r, rt)
			return
		case http.MethodDelete:
			h.deleteBlob(w, r, rt)
			return
		}
	case "upload-start":
		if m == http.MethodPost {
			h.startUpload(w, r, rt)
			return
		}
	case "upload":
		switch m {
		case http.MethodGet:
			h.uploadStatus(w, r, rt)
			return
		case http.MethodPatch:
			h.patchUpload(w, r, rt)
			return
		case http.MethodPut:
			h.putUpload(w, r, rt)
			return
		case http.MethodDelete:
			h.cancelUpload(w, r, rt)
			return
		}
	case "tags":
		if m == http.MethodGet {
			h.tags(w, r, rt)
			return
		}
	case "referrers":
		if m == http.MethodGet {
			h.referrers(w, r, rt)
			return
		}
	}
	registryauth.WriteError(w, http.StatusMethodNotAllowed, &registry.Error{Code: registry.CodeUnsupported, Message: r.Method + " is not supported on " + r.URL.Path})
}
