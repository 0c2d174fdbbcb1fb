package api

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/registry/registryauth"
)

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt route) {
	caller, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPull)
	if !ok {
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
	if err == nil {
		err = acceptable(r, rec.MediaType)
	}
	if err == nil && h.cfg.Pull != nil {
		err = h.checkPull(r, caller, rt, rec)
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
		n, err := w.Write(body)
		h.cfg.Metrics.Pull("manifest", int64(n), err)
	}
}

// checkPull asks the pull policy; a refusal is DENIED with its message.
func (h *Handler) checkPull(r *http.Request, caller registryauth.Caller, rt route, rec registry.ManifestRecord) error {
	var who identity.Principal
	if caller.Claims != nil {
		who = caller.Claims.Principal()
	}
	refusal, err := h.cfg.Pull.CheckPull(r.Context(), who, r.Method, rt.name, rt.ref, rec)
	if err != nil {
		return err
	}
	if refusal != "" {
		return &registry.Error{Code: registry.CodeDenied, Message: refusal}
	}
	return nil
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt route) {
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionPush); !ok {
		return
	}
	max := h.svc.Options().MaxManifestSize
	if r.ContentLength > max {
		if r.ProtoMajor == 1 {
			// HTTP/1: the unread body must not be taken for the next request. Over HTTP/2
			// the header would make the server send GOAWAY and close the connection while
			// the client is still sending, and the client would lose this answer.
			w.Header().Set("Connection", "close")
		}
		h.fail(w, r, registry.TooLarge(r.ContentLength, max))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		h.fail(w, r, &registry.Error{Code: registry.CodeManifestInvalid, Message: "reading the manifest failed: " + err.Error()})
		return
	}
	res, err := h.svc.PutManifest(r.Context(), rt.name, rt.ref, r.Header.Get("Content-Type"), body, r.URL.Query()["tag"]...)
	h.cfg.Metrics.Push("manifest", int64(len(body)), err)
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
	if _, ok := h.auth.Require(w, r, rt.name, registryauth.ActionDelete); !ok {
		return
	}
	if err := h.svc.DeleteManifest(r.Context(), rt.name, rt.ref); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}
