package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

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
	c, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush)
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
				if registry.ValidName(from) && h.auth.CanMountFrom(r.Context(), c, from) {
					b, merr = h.svc.Mount(r.Context(), rt.name, d, from)
				} else {
					merr = &registry.Error{Code: registry.CodeBlobUnknown}
				}
			} else {
				b, merr = h.svc.MountAny(r.Context(), rt.name, d, func(repo string) bool { return h.auth.CanMountFrom(r.Context(), c, repo) })
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
		h.cfg.Metrics.Push("blob", b.Size, err)
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

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush); !ok {
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
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush); !ok {
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
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush); !ok {
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
	h.cfg.Metrics.Push("blob", b.Size, err)
	if err != nil {
		h.failUpload(w, r, err)
		return
	}
	blobCreated(w, rt.name, b.Digest)
}

func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush); !ok {
		return
	}
	if err := h.svc.CancelUpload(r.Context(), rt.name, rt.ref); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}
