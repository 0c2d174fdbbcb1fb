package imagecrypt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// SignatureNote is what inspect says of signatures, signed or not: ocicrypt's format
// authenticates nothing about the publisher (anyone holding a recipient's public key can
// encrypt an image to it).
const SignatureNote = "encryption proves nothing about who built the image: anyone with a recipient's public key can encrypt to it; only a signature (notation, cosign) over the encrypted manifest does"

// Signatures are the signatures a registry holds for an inspected manifest.
type Signatures struct {
	// Count is the number of signatures found (referrers of a signature artifact type,
	// and cosign's sha256-<hex>.sig tag).
	Count int `json:"count"`
	// Kinds are their kinds (notation, cosign, cosign-bundle), one each.
	Kinds []string `json:"kinds,omitempty"`
	// Note says what encryption does not prove (always set).
	Note string `json:"note"`
	// Error is why the registry could not be asked (the count is then unknown).
	Error string `json:"error,omitempty"`
}

// signatureKinds maps a referrer's artifact type to a signature kind.
var signatureKinds = map[string]string{
	"application/vnd.cncf.notary.signature":           "notation",
	"application/vnd.dev.cosign.artifact.sig.v1+json": "cosign",
	"application/vnd.dev.sigstore.bundle.v0.3+json":   "cosign-bundle",
}

// findSignatures asks the registry for the signatures of desc: its referrers (the
// referrers API, or the tag schema oras falls back to) and cosign's legacy tag.
func findSignatures(ctx context.Context, st oras.ReadOnlyTarget, desc ocispec.Descriptor) *Signatures {
	s := &Signatures{Note: SignatureNote}
	seen := map[string]bool{}
	add := func(kind string) {
		s.Count++
		if !seen[kind] {
			seen[kind] = true
			s.Kinds = append(s.Kinds, kind)
		}
	}
	if gs, ok := st.(registry.ReferrerLister); ok {
		err := gs.Referrers(ctx, desc, "", func(refs []ocispec.Descriptor) error {
			for _, r := range refs {
				if kind, ok := signatureKinds[r.ArtifactType]; ok {
					add(kind)
				}
			}
			return nil
		})
		if err != nil {
			s.Error = fmt.Sprintf("list the referrers of %s: %v", desc.Digest, err)
		}
	}
	tag := strings.Replace(desc.Digest.String(), ":", "-", 1) + ".sig"
	if _, err := st.Resolve(ctx, tag); err == nil {
		add("cosign")
	} else if !errors.Is(err, errdef.ErrNotFound) && s.Error == "" {
		s.Error = fmt.Sprintf("resolve %s: %v", tag, err)
	}
	return s
}
