package signatures_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/signatures"
)

// cosignKey is a cosign key pair: sigstore's signer for simple-signing payloads.
type cosignKey struct {
	signer signature.Signer
	pub    string
}

func newCosignKey(t testing.TB) cosignKey {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	return cosignKey{signer: s, pub: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
}

// simpleSigningLayer signs cosign's simple-signing payload for image digest signedFor and
// pushes it, as cosign sign does.
func simpleSigningLayer(t testing.TB, r *remote.Repository, k cosignKey, signedFor ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	ref, err := name.NewDigest(r.Reference.Registry + "/" + r.Reference.Repository + "@" + signedFor.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	d := pushBlob(t, r, signatures.MediaTypeSimpleSigning, body)
	d.Annotations = map[string]string{signatures.AnnotationCosignSig: base64.StdEncoding.EncodeToString(sig)}
	return d
}

func pushBlob(t testing.TB, r *remote.Repository, mt string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := content.NewDescriptorFromBytes(mt, data)
	if err := r.Push(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("push blob: %v", err)
	}
	return d
}

func pushManifest(t testing.TB, r *remote.Repository, m ocispec.Manifest, tag string) ocispec.Descriptor {
	t.Helper()
	m.Versioned, m.MediaType = specs.Versioned{SchemaVersion: 2}, ocispec.MediaTypeImageManifest
	raw, _ := json.Marshal(m)
	d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
	var err error
	if tag != "" {
		err = r.PushReference(context.Background(), d, bytes.NewReader(raw), tag)
	} else {
		err = r.Push(context.Background(), d, bytes.NewReader(raw))
	}
	if err != nil {
		t.Fatalf("push manifest: %v", err)
	}
	return d
}

// cosignLegacy stores a signature as cosign v2 does by default: under the tag
// sha256-<hex>.sig of the image (subject), signed for signedFor.
func cosignLegacy(t testing.TB, r *remote.Repository, k cosignKey, subject, signedFor ocispec.Descriptor) {
	t.Helper()
	cfg := pushBlob(t, r, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	pushManifest(t, r, ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{simpleSigningLayer(t, r, k, signedFor)}},
		"sha256-"+subject.Digest.Encoded()+".sig")
}

// cosignOCI stores a signature as cosign v2 --registry-referrers-mode=oci-1-1 does: a
// referrer of artifact type application/vnd.dev.cosign.artifact.sig.v1+json.
func cosignOCI(t testing.TB, r *remote.Repository, k cosignKey, subject, signedFor ocispec.Descriptor) {
	t.Helper()
	empty := pushBlob(t, r, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	pushManifest(t, r, ocispec.Manifest{ArtifactType: signatures.ArtifactTypeCosign, Config: empty,
		Layers: []ocispec.Descriptor{simpleSigningLayer(t, r, k, signedFor)}, Subject: &subject}, "")
}

// cosignBundle stores a Sigstore bundle v0.3 made by sigstore-go's sign package (a DSSE
// in-toto statement about signedFor) as cosign v3 does: a referrer of the bundle's type.
func cosignBundle(t testing.TB, r *remote.Repository, kp *sign.EphemeralKeypair, subject, signedFor ocispec.Descriptor) {
	t.Helper()
	stmt, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": r.Reference.Registry + "/" + r.Reference.Repository, "digest": map[string]string{"sha256": signedFor.Digest.Encoded()}}},
		"predicateType": "https://sigstore.dev/cosign/sign/v1",
		"predicate":     map[string]any{},
	})
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatalf("sign bundle: %v", err)
	}
	raw, err := (&bundle.Bundle{Bundle: pb}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	empty := pushBlob(t, r, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	layer := pushBlob(t, r, signatures.ArtifactTypeBundle, raw)
	pushManifest(t, r, ocispec.Manifest{ArtifactType: signatures.ArtifactTypeBundle, Config: empty, Layers: []ocispec.Descriptor{layer}, Subject: &subject,
		Annotations: map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}}, "")
}

func TestCosignEnforce(t *testing.T) {
	e := startEnv(t)
	pw := e.user("puller", "AcrPull", "/registry")
	trusted, untrusted := newCosignKey(t), newCosignKey(t)
	bundleKey, _ := sign.NewEphemeralKeypair(nil)
	otherBundleKey, _ := sign.NewEphemeralKeypair(nil)
	bundlePub, _ := bundleKey.GetPublicKeyPem()
	e.addAnchor(wire.SignatureAnchor{Name: "ci-key", Kind: wire.AnchorCosign, PublicKey: trusted.pub})
	e.addAnchor(wire.SignatureAnchor{Name: "ci-bundle-key", Kind: wire.AnchorCosign, PublicKey: bundlePub})
	e.setPolicy(wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "cosign/*", Mode: wire.SignatureModeEnforce}}})

	for _, tc := range []struct {
		kind string
		sign func(t testing.TB, r *remote.Repository, trusted bool, subject, signedFor ocispec.Descriptor)
	}{
		{wire.SignatureCosign, func(t testing.TB, r *remote.Repository, ok bool, s, f ocispec.Descriptor) {
			k := map[bool]cosignKey{true: trusted, false: untrusted}[ok]
			cosignLegacy(t, r, k, s, f)
		}},
		{wire.SignatureCosignOCI, func(t testing.TB, r *remote.Repository, ok bool, s, f ocispec.Descriptor) {
			k := map[bool]cosignKey{true: trusted, false: untrusted}[ok]
			cosignOCI(t, r, k, s, f)
		}},
		{wire.SignatureCosignBundle, func(t testing.TB, r *remote.Repository, ok bool, s, f ocispec.Descriptor) {
			k := map[bool]*sign.EphemeralKeypair{true: bundleKey, false: otherBundleKey}[ok]
			cosignBundle(t, r, k, s, f)
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			e := *e
			e.t = t
			name := "cosign/" + tc.kind
			r, pr := e.repo(name), e.repoAs(name, "puller", pw)
			signed := e.pushImage(r, "signed")
			// Refused before it is signed; the signature pushed after the policy was set
			// is honoured at once, with no restart.
			wantDenied(t, "not yet signed", pull(pr, "signed"), "no signature")
			tc.sign(t, r, true, signed, signed)
			if err := pull(pr, "signed"); err != nil {
				t.Fatalf("signed image: %v", err)
			}
			if err := pull(pr, signed.Digest.String()); err != nil {
				t.Fatalf("signed image by digest: %v", err)
			}
			e.pushImage(r, "unsigned")
			wantDenied(t, "unsigned", pull(pr, "unsigned"), `"cosign/*"`, "no signature")
			bad := e.pushImage(r, "untrusted")
			tc.sign(t, r, false, bad, bad)
			wantDenied(t, "untrusted", pull(pr, "untrusted"), "untrusted key")
			moved := e.pushImage(r, "moved")
			tc.sign(t, r, true, moved, signed)
			wantDenied(t, "moved", pull(pr, "moved"), "different digest")

			var tags wire.TagList
			e.must(http.MethodGet, "/registry/tags?repository="+name, nil, &tags, http.StatusOK)
			for _, tg := range tags.Tags {
				if tg.Name != "signed" {
					continue
				}
				if tg.Verified == nil || !*tg.Verified || len(tg.Signatures) != 1 || tg.Signatures[0] != tc.kind || tg.SignaturePolicy != "enforce" {
					t.Fatalf("tag list shows %+v", tg)
				}
				if want := map[bool]string{true: "ci-bundle-key", false: "ci-key"}[tc.kind == wire.SignatureCosignBundle]; tg.Anchor != want {
					t.Fatalf("tag list says anchor %q, want %q", tg.Anchor, want)
				}
			}
		})
	}
}
