package signatures_test

import (
	"context"
	"testing"
	"time"

	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	notationreg "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func TestNotationEnforce(t *testing.T) {
	e := startEnv(t)
	ca, other := newCA(t, "trusted CA"), newCA(t, "untrusted CA")
	pw := e.user("puller", "AcrPull", "/registry")
	e.addAnchor(wire.SignatureAnchor{Name: "team-ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("team-ca"),
		Repositories: []wire.SignatureRule{{Scope: "notation/*", Mode: wire.SignatureModeEnforce}}})

	for _, tc := range []struct {
		name      string
		forceTag  bool
		mediaType string
	}{
		{"referrers-tag/jws", true, jws.MediaTypeEnvelope},
		{"referrers-api/cose", false, cose.MediaTypeEnvelope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := *e
			e.t = t
			ctx := context.Background()
			name := "notation/" + map[bool]string{true: "tagged", false: "api"}[tc.forceTag]
			r := e.repo(name)
			pr := e.repoAs(name, "puller", pw)
			r.SetReferrersCapability(!tc.forceTag)
			sigRepo := notationreg.NewRepository(r)
			sign := func(desc ocispec.Descriptor, ca *testCA, notAfter time.Time) {
				t.Helper()
				key, chain := ca.leaf(t, "signer", notAfter)
				s, err := signer.NewGenericSigner(key, chain)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := notation.Sign(ctx, s, sigRepo, notation.SignOptions{
					ArtifactReference: r.Reference.Registry + "/" + r.Reference.Repository + "@" + desc.Digest.String(),
					SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: tc.mediaType}}); err != nil {
					t.Fatalf("notation sign: %v", err)
				}
			}
			signed := e.pushImage(r, "signed")
			sign(signed, ca, time.Now().Add(time.Hour))
			unsigned := e.pushImage(r, "unsigned")
			untrusted := e.pushImage(r, "untrusted")
			sign(untrusted, other, time.Now().Add(time.Hour))

			// A signature made for the signed image, attached to another one.
			moved := e.pushImage(r, "moved")
			key, chain := ca.leaf(t, "signer", time.Now().Add(time.Hour))
			gs, _ := signer.NewGenericSigner(key, chain)
			env, _, err := gs.Sign(ctx, signed, notation.SignerSignOptions{SignatureMediaType: tc.mediaType})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := sigRepo.PushSignature(ctx, tc.mediaType, env, moved, nil); err != nil {
				t.Fatal(err)
			}
			// A signature whose certificate has expired since.
			expired := e.pushImage(r, "expired")
			notAfter := time.Now().Add(2 * time.Second)
			sign(expired, ca, notAfter)

			if err := pull(pr, "signed"); err != nil {
				t.Fatalf("signed image: %v", err)
			}
			if err := pull(pr, signed.Digest.String()); err != nil {
				t.Fatalf("signed image by digest: %v", err)
			}
			wantDenied(t, "unsigned", pull(pr, "unsigned"), `"notation/*"`, "enforce", "no signature")
			wantDenied(t, "unsigned by digest", pull(pr, unsigned.Digest.String()), "no signature")
			wantDenied(t, "untrusted", pull(pr, "untrusted"), "untrusted key")
			wantDenied(t, "moved", pull(pr, "moved"), "different digest")
			time.Sleep(time.Until(notAfter) + 100*time.Millisecond)
			wantDenied(t, "expired", pull(pr, "expired"), "expired certificate")

			// The signatures and the referrers API stay readable.
			n := 0
			if err := r.Referrers(ctx, signed, "", func(rs []ocispec.Descriptor) error {
				for _, d := range rs {
					n++
					if err := pull(pr, d.Digest.String()); err != nil {
						t.Errorf("signature manifest %s: %v", d.Digest, err)
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("referrers: %v", err)
			}
			if n == 0 {
				t.Fatal("no referrer listed for the signed image")
			}
		})
	}
}
