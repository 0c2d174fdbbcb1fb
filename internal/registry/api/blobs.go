package api

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

func (h *Handler) blobDigest(w http.ResponseWriter, r *http.Request, s string) (digest.Digest, bool) {
	d, err := registry.ParseDigest(s)
	if err != nil {
		h.fail(w, r, err)
		return "", false
	}
	return d, true
}

func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPull); !ok {
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
		registryauth.WriteError(w, http.StatusRequestedRangeNotSatisfiable, &registry.Error{Code: registry.CodeBlobUnknown,
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
	// Large copies in large writes (the response writer is wrapped, so no sendfile).
	buf := make([]byte, max(1, min(length, 1<<20)))
	// The first bytes before the status: damage found there is an error status, not a 200
	// cut short.
	body := io.LimitReader(rc, length)
	var first int
	for first == 0 && length > 0 && err == nil {
		first, err = body.Read(buf)
	}
	if first == 0 && err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the stored blob is shorter than recorded
		}
		hd.Del("Content-Length")
		hd.Del("Content-Range")
		h.cfg.Metrics.Pull("blob", 0, err)
		h.fail(w, r, fmt.Errorf("read blob %s: %w", d, err))
		return
	}
	w.WriteHeader(status)
	n, err := w.Write(buf[:first])
	if err == nil {
		var rest int64
		rest, err = io.CopyBuffer(w, body, buf)
		n += int(rest)
	}
	h.cfg.Metrics.Pull("blob", int64(n), err)
	if err != nil && r.Context().Err() == nil {
		h.cfg.Log.WarnContext(r.Context(), "blob read failed mid-response", "repo", rt.name, "digest", d, "request_id", requestID(r), "err", err)
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
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionDelete); !ok {
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
