package api

import (
	"net/http"

	"github.com/cofferhq/coffer/internal/identity"
	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

// keyOperation serves the cryptographic operations on a key version: sign, verify, and
// encrypt, decrypt, wrapKey, unwrapKey.
func (h *Handler) keyOperation(w http.ResponseWriter, r *http.Request, v string, p identity.Principal, name, version, op string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	ctx, svc := r.Context(), h.cfg.Service
	switch op {
	case vault.OpSign:
		var req signRequest
		if !decode(w, r, &req) {
			return
		}
		kid, sig, err := svc.Sign(ctx, p, v, name, version, req.Alg, req.Value)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, keyOperationResult{Kid: kid, Value: sig})
	case vault.OpVerify:
		var req verifyRequest
		if !decode(w, r, &req) {
			return
		}
		_, ok, err := svc.Verify(ctx, p, v, name, version, req.Alg, req.Digest, req.Signature)
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, verifyResult{Value: ok})
	default:
		var req keyOperationRequest
		if !decode(w, r, &req) {
			return
		}
		kid, res, err := svc.Crypt(ctx, p, v, name, version, op, keys.CipherParams{Alg: req.Alg, Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
		if err != nil {
			h.writeServiceError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, keyOperationResult{Kid: kid, Value: res.Value, IV: res.IV, Tag: res.Tag, AAD: res.AAD})
	}
}
