package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/access"
	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/mgmt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/registry"
)

// Management serves the registry's management API under /coffer/v1/registry:
//
//	GET    /coffer/v1/registry/repositories[?last=&n=]  list (registry/list at /registry),
//	       registry.DefaultPageSize a page unless n says (at most registry.MaxPageSize)
//	GET    /coffer/v1/registry/repositories/{name...}   show (registry/pull at the repository)
//	DELETE /coffer/v1/registry/repositories/{name...}   delete (registry/delete at the repository)
//	GET    /coffer/v1/registry/tags?repository=NAME     tags (registry/pull at the repository)
//	DELETE /coffer/v1/registry/tags?repository=NAME&tag=T  (registry/delete at the repository)
//	POST   /coffer/v1/registry/gc[?dryRun=true]         collect garbage (registry/manage at /registry);
//	       with Accept: application/x-ndjson it streams progress lines, then the report.
type Management struct {
	svc        *registry.Service
	authz      access.Authorizer
	annotators []TagAnnotator
}

// TagAnnotator adds a part's details to a tag of the tag listing (the signature policy:
// signatures and verification).
type TagAnnotator interface {
	AnnotateTag(ctx context.Context, repo string, m registry.ManifestRecord, t *wire.Tag) error
}

// MountManagement registers the management routes on the management router (which
// authenticates them); authz decides every request; annotators add to each listed tag.
func MountManagement(rt *mgmt.Router, svc *registry.Service, authz access.Authorizer, annotators ...TagAnnotator) {
	m := &Management{svc: svc, authz: authz, annotators: annotators}
	p := mgmt.Prefix + "/registry"
	rt.HandleFunc("GET "+p+"/repositories", m.listRepos)
	rt.HandleFunc("GET "+p+"/repositories/{name...}", m.showRepo)
	rt.HandleFunc("DELETE "+p+"/repositories/{name...}", m.deleteRepo)
	rt.HandleFunc("GET "+p+"/tags", m.listTags)
	rt.HandleFunc("DELETE "+p+"/tags", m.deleteTag)
	rt.HandleFunc("POST "+p+"/gc", m.gc)
}

func (m *Management) fail(w http.ResponseWriter, err error) {
	var e *registry.Error
	if errors.As(err, &e) {
		switch e.Code {
		case registry.CodeNameUnknown, registry.CodeManifestUnknown, registry.CodeBlobUnknown:
			mgmt.WriteError(w, http.StatusNotFound, mgmt.CodeNotFound, e.Message)
		case registry.CodeDenied:
			if errors.Is(err, registry.ErrReferenced) {
				mgmt.WriteError(w, http.StatusConflict, mgmt.CodeConflict, e.Message)
				return
			}
			mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, e.Message)
		case registry.CodeTooManyRequests:
			mgmt.WriteError(w, http.StatusTooManyRequests, "TooManyRequests", e.Message)
		default:
			mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, e.Message)
		}
		return
	}
	if errors.Is(err, blobstore.ErrAccessDenied) {
		mgmt.WriteError(w, http.StatusForbidden, mgmt.CodeForbidden, err.Error())
		return
	}
	mgmt.WriteFailure(w, err, err.Error())
}

func (m *Management) repoParam(w http.ResponseWriter, name string) bool {
	if !registry.ValidName(name) {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "invalid repository name "+strconv.Quote(name))
		return false
	}
	return true
}

func (m *Management) listRepos(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, m.authz, access.RegistryList, access.ScopeRegistry) {
		return
	}
	n, ok := intParam(w, r, "n", registry.DefaultPageSize)
	if !ok {
		return
	}
	infos, more, err := m.svc.Repositories(r.Context(), r.URL.Query().Get("last"), min(n, registry.MaxPageSize))
	if err != nil {
		m.fail(w, err)
		return
	}
	out := wire.RepositoryList{Repositories: make([]wire.Repository, 0, len(infos))}
	for _, info := range infos {
		out.Repositories = append(out.Repositories, RepositoryOut(info))
	}
	if more && len(infos) > 0 {
		out.Next = infos[len(infos)-1].Name
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (m *Management) showRepo(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !m.repoParam(w, name) || !mgmt.Authorize(w, r, m.authz, access.RegistryPull, access.RepositoryScope(name)) {
		return
	}
	info, err := m.svc.Repository(r.Context(), name)
	if err != nil {
		m.fail(w, err)
		return
	}
	out := RepositoryOut(info)
	tags, err := m.svc.TagDetails(r.Context(), name)
	if err != nil {
		m.fail(w, err)
		return
	}
	for _, t := range tags {
		if m.encryptedLayers(r.Context(), name, string(t.Digest), 0) > 0 {
			out.EncryptedTags++
		}
	}
	encrypted := out.EncryptedTags > 0
	out.ClientEncrypted = &encrypted
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (m *Management) deleteRepo(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !m.repoParam(w, name) || !mgmt.Authorize(w, r, m.authz, access.RegistryDelete, access.RepositoryScope(name)) {
		return
	}
	if err := m.svc.DeleteRepository(r.Context(), name); err != nil {
		m.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Management) listTags(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("repository")
	if !m.repoParam(w, name) || !mgmt.Authorize(w, r, m.authz, access.RegistryPull, access.RepositoryScope(name)) {
		return
	}
	tags, err := m.svc.TagDetails(r.Context(), name)
	if err != nil {
		m.fail(w, err)
		return
	}
	out := wire.TagList{Repository: name, Tags: make([]wire.Tag, len(tags))}
	for i, t := range tags {
		out.Tags[i] = wire.Tag{Name: t.Name, Digest: string(t.Digest), Updated: t.Updated,
			EncryptedLayers: m.encryptedLayers(r.Context(), name, string(t.Digest), 0)}
		if len(m.annotators) == 0 {
			continue
		}
		rec, err := m.svc.StatManifest(r.Context(), name, string(t.Digest))
		if registry.ErrorCode(err) == registry.CodeManifestUnknown {
			continue // deleted meanwhile
		}
		if err != nil {
			m.fail(w, err)
			return
		}
		for _, a := range m.annotators {
			if err := a.AnnotateTag(r.Context(), name, rec, &out.Tags[i]); err != nil {
				m.fail(w, err)
				return
			}
		}
	}
	mgmt.WriteJSON(w, http.StatusOK, out)
}

func (m *Management) deleteTag(w http.ResponseWriter, r *http.Request) {
	name, tag := r.URL.Query().Get("repository"), r.URL.Query().Get("tag")
	if !m.repoParam(w, name) || !mgmt.Authorize(w, r, m.authz, access.RegistryDelete, access.RepositoryScope(name)) {
		return
	}
	if tag == "" || registry.IsDigestRef(tag) {
		mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter, "give the tag to delete with ?tag=")
		return
	}
	if err := m.svc.DeleteManifest(r.Context(), name, tag); err != nil {
		m.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Management) gc(w http.ResponseWriter, r *http.Request) {
	if !mgmt.Authorize(w, r, m.authz, access.RegistryManage, access.ScopeRegistry) {
		return
	}
	dry, ok := boolParam(w, r, "dryRun")
	if !ok {
		return
	}
	if r.Header.Get("Accept") != "application/x-ndjson" {
		rep, err := m.svc.GC(r.Context(), dry, nil)
		if err != nil {
			m.fail(w, err)
			return
		}
		mgmt.WriteJSON(w, http.StatusOK, GCReportOut(rep))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	last := ""
	rep, err := m.svc.GC(r.Context(), dry, func(p registry.GCProgress) {
		// One line per phase and per 1% of a sweep keeps the stream short.
		key := p.Phase
		if p.Total > 0 {
			key += strconv.Itoa(p.Done * 100 / p.Total)
		}
		if key == last {
			return
		}
		last = key
		enc.Encode(wire.GCEvent{Phase: p.Phase, Done: p.Done, Total: p.Total})
		rc.Flush()
	})
	if err != nil {
		enc.Encode(wire.GCEvent{Error: err.Error()})
		return
	}
	out := GCReportOut(rep)
	enc.Encode(wire.GCEvent{Phase: "done", Report: &out})
}

// boolParam parses the optional boolean query parameter name (strconv.ParseBool's forms:
// true, false, 1, 0, t, f). A value that does not parse, or a parameter given twice, is a
// 400: a typo must not turn a dry run into a real one.
func boolParam(w http.ResponseWriter, r *http.Request, name string) (v, ok bool) {
	vals, given := r.URL.Query()[name]
	if !given {
		return false, true
	}
	if len(vals) == 1 {
		if b, err := strconv.ParseBool(vals[0]); err == nil {
			return b, true
		}
	}
	mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter,
		fmt.Sprintf("%s must be given once, as true or false (got %s)", name, strconv.Quote(strings.Join(vals, ","))))
	return false, false
}

// intParam parses the optional non-negative integer query parameter name (def when
// absent); anything else is a 400.
func intParam(w http.ResponseWriter, r *http.Request, name string, def int) (int, bool) {
	vals, given := r.URL.Query()[name]
	if !given {
		return def, true
	}
	if len(vals) == 1 {
		if n, err := strconv.Atoi(vals[0]); err == nil && n >= 0 {
			return n, true
		}
	}
	mgmt.WriteError(w, http.StatusBadRequest, mgmt.CodeBadParameter,
		fmt.Sprintf("%s must be given once, as a non-negative integer (got %s)", name, strconv.Quote(strings.Join(vals, ","))))
	return 0, false
}

// RepositoryOut is info on the wire.
func RepositoryOut(info registry.RepositoryInfo) wire.Repository {
	return wire.Repository{Name: info.Name, Created: info.Created, ManifestCount: info.ManifestCount,
		TagCount: info.TagCount, BlobCount: info.BlobCount, Size: info.Size}
}

// GCReportOut is rep on the wire.
func GCReportOut(rep registry.GCReport) wire.GCReport {
	out := wire.GCReport{DryRun: rep.DryRun, Cutoff: rep.Cutoff, StaleLinks: rep.StaleLinks, BytesFreed: rep.BytesFreed,
		OrphanFiles: rep.OrphanFiles, ExpiredUploads: rep.ExpiredUploads}
	if rep.Blobs != nil {
		out.Blobs = make([]wire.Blob, len(rep.Blobs))
		for i, b := range rep.Blobs {
			out.Blobs[i] = wire.Blob{Digest: string(b.Digest), Size: b.Size, Touched: b.Touched}
		}
	}
	return out
}

// encryptedLayers counts the client-encrypted (ocicrypt "+encrypted") layers of a manifest,
// and of the manifests of an index (one level deep). A manifest that cannot be read counts 0.
func (m *Management) encryptedLayers(ctx context.Context, repo, dgst string, depth int) int {
	_, raw, err := m.svc.GetManifest(ctx, repo, dgst)
	if err != nil {
		return 0
	}
	var doc struct {
		Layers    []struct{ MediaType string } `json:"layers"`
		Manifests []struct{ Digest string }    `json:"manifests"`
	}
	if json.Unmarshal(raw, &doc) != nil {
		return 0
	}
	n := 0
	for _, l := range doc.Layers {
		if strings.HasSuffix(l.MediaType, "+encrypted") {
			n++
		}
	}
	if depth == 0 {
		for _, c := range doc.Manifests {
			n += m.encryptedLayers(ctx, repo, c.Digest, 1)
		}
	}
	return n
}
