// Package api serves the OCI Distribution API v1.1 (with the referrers API) over HTTP on
// top of registry.Service: it parses requests, authorises them against the caller's
// Docker registry token and maps the service's answers and errors to the spec's status
// codes, headers and error bodies.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/authn"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/registry"
)

// Config configures the handler.
type Config struct {
	Service *registry.Service
	// Verifier returns the token verifier; it is called per request, so the token service
	// may be wired after the registry.
	Verifier func() authn.Verifier
	// AnonymousPull lets requests without a token pull.
	AnonymousPull bool
	// Authz, if it returns an authorizer, answers whether a caller's principal may pull
	// from a repository its token does not name (the source of a mount). Called per
	// request.
	Authz func() access.Authorizer
	// Trust, if it returns a handler, serves /v2/<name>/_trust/...; otherwise 404.
	Trust func() http.Handler
	Log   *slog.Logger
}

// Handler serves /v2/.
type Handler struct {
	cfg Config
	svc *registry.Service
}

// New returns the /v2/ handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, svc: cfg.Service}
}

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
	rt, ok := parsePath(r.URL.Path)
	if !ok || (rt.kind != "base" && rt.kind != "catalog" && rt.name == "") {
		writeError(w, http.StatusNotFound, &registry.Error{Code: registry.CodeNameUnknown, Message: "no such endpoint: " + r.URL.Path})
		return
	}
	if rt.kind == "trust" {
		if h.cfg.Trust != nil {
			if th := h.cfg.Trust(); th != nil {
				th.ServeHTTP(w, r)
				return
			}
		}
		http.NotFound(w, r)
		return
	}
	if rt.name != "" && !registry.ValidName(rt.name) {
		writeError(w, http.StatusBadRequest, &registry.Error{Code: registry.CodeNameInvalid, Message: fmt.Sprintf("invalid repository name %q", rt.name)})
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
	writeError(w, http.StatusMethodNotAllowed, &registry.Error{Code: registry.CodeUnsupported, Message: r.Method + " is not supported on " + r.URL.Path})
}

// --- errors ---

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    registry.Code `json:"code"`
	Message string        `json:"message"`
	Detail  any           `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, e *registry.Error) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// statusOf maps a spec code to its HTTP status.
func statusOf(e *registry.Error) int {
	switch {
	case errors.Is(e, registry.ErrRangeNotSatisfiable):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(e, registry.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	switch e.Code {
	case registry.CodeBlobUnknown, registry.CodeBlobUploadUnknown, registry.CodeManifestUnknown, registry.CodeNameUnknown:
		return http.StatusNotFound
	case registry.CodeUnauthorized:
		return http.StatusUnauthorized
	case registry.CodeDenied:
		return http.StatusForbidden
	case registry.CodeUnsupported:
		return http.StatusMethodNotAllowed
	case registry.CodeTooManyRequests:
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// fail answers err: spec errors with their status, anything else as 500 (logged).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		if e.Code == registry.CodeTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, statusOf(e), e)
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	if errors.Is(err, blobstore.ErrAccessDenied) {
		// The content is there but may not be read or written now (the encryption key was
		// revoked): DENIED with the cause, a 4xx so that clients show the message.
		h.cfg.Log.Warn("registry content refused", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusForbidden, &registry.Error{Code: registry.CodeDenied, Message: err.Error()})
		return
	}
	h.cfg.Log.Error("registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, &registry.Error{Code: "UNKNOWN", Message: "internal error: " + err.Error()})
}

// --- base, catalog ---

func (h *Handler) base(w http.ResponseWriter, r *http.Request) {
	c, err := h.authenticate(r)
	if err != nil {
		h.authFailure(w, r, "", err)
		return
	}
	if c.anonymous() {
		h.challenge(w, r, "", false, registry.CodeUnauthorized, "authentication required")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		io.WriteString(w, "{}")
	}
}

// pagination parses n and last; n < 0 means "no limit".
func pagination(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", &registry.Error{Code: "PAGINATION_NUMBER_INVALID", Message: "n must be a non-negative integer"}
		}
		n = v
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
	c, err := h.authenticate(r)
	if err != nil {
		h.authFailure(w, r, "registry:catalog:*", err)
		return
	}
	if !c.allowed("registry", "catalog", actionAll) {
		if c.anonymous() {
			h.challenge(w, r, "registry:catalog:*", false, registry.CodeUnauthorized, "authentication required")
		} else {
			h.challenge(w, r, "registry:catalog:*", true, registry.CodeDenied, "listing the catalog needs registry:catalog:*")
		}
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
	if _, ok := h.require(w, r, rt.name, actionPull); !ok {
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

// --- manifests ---

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPull); !ok {
		return
	}
	var rec registry.ManifestRecord
	var body []byte
	var err error
	if r.Method == http.MethodHead {
		rec, err = h.svc.StatManifest(r.Context(), rt.name, rt.ref)
	} else {
		rec, body, err = h.svc.GetManifest(r.Context(), rt.name, rt.ref)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", rec.MediaType)
	hd.Set("Content-Length", strconv.FormatInt(rec.Size, 10))
	hd.Set("Docker-Content-Digest", rec.Digest.String())
	hd.Set("ETag", `"`+rec.Digest.String()+`"`)
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, rec.Digest.String()) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPush); !ok {
		return
	}
	max := h.svc.Options().MaxManifestSize
	if r.ContentLength > max {
		w.Header().Set("Connection", "close")
		h.fail(w, r, registry.TooLarge(r.ContentLength, max))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		h.fail(w, r, &registry.Error{Code: registry.CodeManifestInvalid, Message: "reading the manifest failed: " + err.Error()})
		return
	}
	res, err := h.svc.PutManifest(r.Context(), rt.name, rt.ref, r.Header.Get("Content-Type"), body, r.URL.Query()["tag"]...)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.name+"/manifests/"+res.Digest.String())
	hd.Set("Docker-Content-Digest", res.Digest.String())
	if res.Subject != "" {
		hd.Set("OCI-Subject", res.Subject.String())
	}
	if len(r.URL.Query()["tag"]) > 0 {
		for _, t := range res.Tags {
			hd.Add("OCI-Tag", t)
		}
	}
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionDelete); !ok {
		return
	}
	if err := h.svc.DeleteManifest(r.Context(), rt.name, rt.ref); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// --- referrers ---

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

// --- blobs ---

func (h *Handler) blobDigest(w http.ResponseWriter, r *http.Request, s string) (digest.Digest, bool) {
	d, err := registry.ParseDigest(s)
	if err != nil {
		h.fail(w, r, err)
		return "", false
	}
	return d, true
}

func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPull); !ok {
		return
	}
	d, ok := h.blobDigest(w, r, rt.ref)
	if !ok {
		return
	}
	info, err := h.svc.StatBlob(r.Context(), rt.name, d)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("ETag", `"`+d.String()+`"`)
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Content-Type", "application/octet-stream")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, d.String()) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	start, end, partial, ok := parseRange(r.Header.Get("Range"), info.Size)
	if !ok {
		hd.Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
		writeError(w, http.StatusRequestedRangeNotSatisfiable, &registry.Error{Code: registry.CodeBlobUnknown,
			Message: fmt.Sprintf("range %q is not satisfiable for a blob of %d bytes", r.Header.Get("Range"), info.Size)})
		return
	}
	length := end - start
	hd.Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, info.Size))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	rc, err := h.svc.ReadBlob(r.Context(), info, start)
	if err != nil {
		hd.Del("Content-Length")
		hd.Del("Content-Range")
		h.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.WriteHeader(status)
	// Large copies in large writes (the response writer is wrapped, so no sendfile).
	buf := make([]byte, max(1, min(length, 1<<20)))
	if _, err := io.CopyBuffer(w, io.LimitReader(rc, length), buf); err != nil && r.Context().Err() == nil {
		h.cfg.Log.Warn("blob read failed mid-response", "repo", rt.name, "digest", d, "err", err)
	}
}

// parseRange parses a single "bytes=" range against size. It returns [start, end) and
// whether the answer is partial; ok is false for an unsatisfiable or malformed range.
func parseRange(hv string, size int64) (start, end int64, partial, ok bool) {
	if hv == "" {
		return 0, size, false, true
	}
	spec, found := strings.CutPrefix(hv, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	switch {
	case a == "": // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false, false
		}
		if n > size {
			n = size
		}
		return size - n, size, true, true
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 || s >= size {
			return 0, 0, false, false
		}
		e := size - 1
		if b != "" {
			v, err := strconv.ParseInt(b, 10, 64)
			if err != nil || v < s {
				return 0, 0, false, false
			}
			if v < e {
				e = v
			}
		}
		return s, e + 1, true, true
	}
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionDelete); !ok {
		return
	}
	d, ok := h.blobDigest(w, r, rt.ref)
	if !ok {
		return
	}
	if err := h.svc.DeleteBlob(r.Context(), rt.name, d); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// --- uploads ---

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/"+d.String())
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func uploadAnswer(w http.ResponseWriter, name string, u registry.Upload, status int) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/uploads/"+u.ID)
	hd.Set("Docker-Upload-UUID", u.ID)
	end := u.Offset - 1
	if end < 0 {
		end = 0
	}
	hd.Set("Range", fmt.Sprintf("0-%d", end))
	hd.Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, rt route) {
	c, ok := h.require(w, r, rt.name, actionPush)
	if !ok {
		return
	}
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := registry.ParseDigest(m)
		if err == nil {
			var b registry.BlobInfo
			var merr error
			if from := q.Get("from"); from != "" {
				if registry.ValidName(from) && h.canMountFrom(r, c, from) {
					b, merr = h.svc.Mount(r.Context(), rt.name, d, from)
				} else {
					merr = &registry.Error{Code: registry.CodeBlobUnknown}
				}
			} else {
				b, merr = h.svc.MountAny(r.Context(), rt.name, d, func(repo string) bool { return h.canMountFrom(r, c, repo) })
			}
			if merr == nil {
				blobCreated(w, rt.name, b.Digest)
				return
			}
			if registry.ErrorCode(merr) != registry.CodeBlobUnknown {
				h.fail(w, r, merr)
				return
			}
		}
		// Not mountable: fall back to an ordinary upload, as the spec says.
	}
	if ds := q.Get("digest"); ds != "" {
		d, ok := h.blobDigest(w, r, ds)
		if !ok {
			return
		}
		b, err := h.svc.PutBlob(r.Context(), rt.name, d, r.Body)
		if err != nil {
			h.failUpload(w, r, err)
			return
		}
		blobCreated(w, rt.name, b.Digest)
		return
	}
	u, err := h.svc.StartUpload(r.Context(), rt.name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	uploadAnswer(w, rt.name, u, http.StatusAccepted)
}

// failUpload answers an upload failure; a broken request body is the client's fault.
func (h *Handler) failUpload(w http.ResponseWriter, r *http.Request, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		h.fail(w, r, err)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	h.fail(w, r, &registry.Error{Code: registry.CodeBlobUploadInvalid, Message: err.Error()})
}

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPush); !ok {
		return
	}
	u, err := h.svc.UploadStatus(r.Context(), rt.name, rt.ref)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	uploadAnswer(w, rt.name, u, http.StatusNoContent)
}

// chunkStart parses Content-Range ("start-end", also "bytes start-end/total" and
// "bytes=start-end"); -1 when absent.
func chunkStart(r *http.Request) (int64, error) {
	cr := strings.TrimSpace(r.Header.Get("Content-Range"))
	if cr == "" {
		return -1, nil
	}
	cr = strings.TrimPrefix(strings.TrimPrefix(cr, "bytes="), "bytes ")
	if i := strings.IndexByte(cr, '/'); i >= 0 {
		cr = cr[:i]
	}
	a, b, ok := strings.Cut(cr, "-")
	s, err1 := strconv.ParseInt(a, 10, 64)
	e, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || s < 0 || e < s-1 {
		return 0, &registry.Error{Code: registry.CodeBlobUploadInvalid, Message: fmt.Sprintf("invalid Content-Range %q: use start-end", r.Header.Get("Content-Range"))}
	}
	if r.ContentLength >= 0 && e-s+1 != r.ContentLength {
		return 0, &registry.Error{Code: registry.CodeSizeInvalid, Message: fmt.Sprintf("Content-Range %q does not match Content-Length %d", r.Header.Get("Content-Range"), r.ContentLength)}
	}
	return s, nil
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPush); !ok {
		return
	}
	start, err := chunkStart(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	u, err := h.svc.AppendUpload(r.Context(), rt.name, rt.ref, start, r.Body)
	if err != nil {
		if errors.Is(err, registry.ErrRangeNotSatisfiable) {
			uploadHeaders(w, rt.name, u)
		}
		h.failUpload(w, r, err)
		return
	}
	uploadAnswer(w, rt.name, u, http.StatusAccepted)
}

func uploadHeaders(w http.ResponseWriter, name string, u registry.Upload) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/uploads/"+u.ID)
	end := u.Offset - 1
	if end < 0 {
		end = 0
	}
	hd.Set("Range", fmt.Sprintf("0-%d", end))
}

func (h *Handler) putUpload(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPush); !ok {
		return
	}
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		h.fail(w, r, &registry.Error{Code: registry.CodeDigestInvalid, Message: "closing an upload needs ?digest="})
		return
	}
	d, ok := h.blobDigest(w, r, ds)
	if !ok {
		return
	}
	start, err := chunkStart(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	b, err := h.svc.FinishUpload(r.Context(), rt.name, rt.ref, start, body, d)
	if err != nil {
		h.failUpload(w, r, err)
		return
	}
	blobCreated(w, rt.name, b.Digest)
}

func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.require(w, r, rt.name, actionPush); !ok {
		return
	}
	if err := h.svc.CancelUpload(r.Context(), rt.name, rt.ref); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}
