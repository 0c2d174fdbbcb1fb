package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// keyOps maps the path verb of a cryptographic operation to the service's operation.
var keyOps = map[string]string{
	"wrapkey": vault.OpWrap, "unwrapkey": vault.OpUnwrap, "encrypt": vault.OpEncrypt,
	"decrypt": vault.OpDecrypt, "sign": vault.OpSign, "verify": vault.OpVerify,
}

var keyVerbs = map[string]bool{
	"create": true, "backup": true, "rotate": true, "rotationpolicy": true, "versions": true,
	"release": true, "attestation": true,
}

func segments(path string) []string {
	var out []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, CodeBadParameter, fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path), "")
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request, v string, p identity.Principal) {
	seg := segments(r.URL.EscapedPath())
	for i, s := range seg {
		u, err := url.PathUnescape(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadParameter, "bad path escape", "")
			return
		}
		seg[i] = u
	}
	m := r.Method
	switch {
	case len(seg) == 1 && seg[0] == "keys":
		if m != http.MethodGet {
			methodNotAllowed(w, r)
			return
		}
		h.listKeys(w, r, v, p)
	case len(seg) == 2 && seg[0] == "keys" && seg[1] == "restore" && m == http.MethodPost:
		h.restore(w, r, v, p)
	case len(seg) == 2 && seg[0] == "keys":
		switch m {
		case http.MethodGet:
			h.getKey(w, r, v, p, seg[1], "")
		case http.MethodPut:
			h.importKey(w, r, v, p, seg[1])
		case http.MethodDelete:
			h.deleteKey(w, r, v, p, seg[1])
		case http.MethodPatch:
			h.updateKey(w, r, v, p, seg[1], "")
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 3 && seg[0] == "keys" && keyOps[strings.ToLower(seg[2])] != "":
		h.keyOperation(w, r, v, p, seg[1], "", keyOps[strings.ToLower(seg[2])])
	case len(seg) == 3 && seg[0] == "keys" && keyVerbs[strings.ToLower(seg[2])]:
		h.keyVerb(w, r, v, p, seg[1], strings.ToLower(seg[2]))
	case len(seg) == 3 && seg[0] == "keys":
		switch m {
		case http.MethodGet:
			h.getKey(w, r, v, p, seg[1], seg[2])
		case http.MethodPatch:
			h.updateKey(w, r, v, p, seg[1], seg[2])
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 4 && seg[0] == "keys" && keyOps[strings.ToLower(seg[3])] != "":
		h.keyOperation(w, r, v, p, seg[1], seg[2], keyOps[strings.ToLower(seg[3])])
	case len(seg) == 4 && seg[0] == "keys" && (strings.EqualFold(seg[3], "release") || strings.EqualFold(seg[3], "attestation")):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "key release and attestation need an HSM: this vault has none", "NotSupported")
	case len(seg) == 1 && seg[0] == "deletedkeys" && m == http.MethodGet:
		h.listDeleted(w, r, v, p)
	case len(seg) == 2 && seg[0] == "deletedkeys":
		switch m {
		case http.MethodGet:
			d, err := h.cfg.Service.GetDeletedKey(r.Context(), p, v, seg[1])
			if err != nil {
				h.writeServiceError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, deletedBundle(d))
		case http.MethodDelete:
			if err := h.cfg.Service.PurgeDeletedKey(r.Context(), p, v, seg[1]); err != nil {
				h.writeServiceError(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			methodNotAllowed(w, r)
		}
	case len(seg) == 3 && seg[0] == "deletedkeys" && seg[2] == "recover" && m == http.MethodPost:
		k, err := h.cfg.Service.RecoverDeletedKey(r.Context(), p, v, seg[1])
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, bundle(k))
	case len(seg) == 1 && seg[0] == "rng" && m == http.MethodPost:
		var req randomRequest
		if !decode(w, r, &req) {
			return
		}
		b, err := h.cfg.Service.RandomBytes(r.Context(), p, v, req.Count)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]keys.B64{"value": b})
	case len(seg) >= 1 && (seg[0] == "secrets" || seg[0] == "certificates" || seg[0] == "deletedsecrets" || seg[0] == "deletedcertificates"):
		writeError(w, http.StatusBadRequest, CodeBadParameter, "this vault serves keys only: secrets and certificates are not supported", "NotSupported")
	default:
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no vault operation at %s %s", r.Method, r.URL.Path), "")
	}
}

// decode reads a JSON body (at most 4 MiB) into v; unknown fields are ignored so newer
// SDKs keep working.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request body: "+err.Error(), "")
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "request body is empty", "")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadParameter, "invalid JSON body: "+err.Error(), "")
		return false
	}
	return true
}
