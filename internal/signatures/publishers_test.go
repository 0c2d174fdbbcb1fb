package signatures_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	notationreg "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/signatures"
)

// TestPublisherExemption: under enforce, an identity that may push to the repository
// (AcrPush) may resolve an unverified image with HEAD — what notation sign does before
// signing, shown here by notation-go's Sign as that identity — but its GET is refused like
// anyone's; "publishers": "read" lets its GET through (audited), "refuse" its HEAD too.
func TestPublisherExemption(t *testing.T) {
	e := startEnv(t)
	ca := newCA(t, "trusted CA")
	pw, pusherID := e.userID("pusher", "AcrPush", "/registry")
	e.addAnchor(wire.SignatureAnchor{Name: "team-ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	rule := wire.SignatureRule{Scope: "pub/*", Mode: wire.SignatureModeEnforce}
	set := func(publishers string) {
		rule.Publishers = publishers
		e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("team-ca"), Repositories: []wire.SignatureRule{rule}})
	}
	set("")
	ctx := context.Background()
	r := e.repoAs("pub/app", "pusher", pw)
	img := e.pushImage(r, "v1")
	other := e.pushImage(r, "v2")

	// The pusher's HEAD passes, audited; its GET is refused.
	if _, err := r.Resolve(ctx, "v1"); err != nil {
		t.Fatalf("publisher HEAD of an unverified image: %v", err)
	}
	_, rc, err := r.FetchReference(ctx, "v1")
	if err == nil {
		rc.Close()
	}
	wantDenied(t, "publisher GET of an unverified image", err, `signature policy "pub/*" (mode enforce)`, "no signature")
	found := false
	for _, rec := range e.auditRecords(signatures.OpPullExempt, 1) {
		found = found || (rec.PrincipalID == pusherID && strings.Contains(rec.Detail, "HEAD"))
	}
	if !found {
		t.Fatal("the publisher's HEAD is not audited as an exemption")
	}

	// notation sign as the pusher needs no more than that HEAD.
	key, chain := ca.leaf(t, "signer", time.Now().Add(time.Hour))
	s, err := signer.NewGenericSigner(key, chain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notation.Sign(ctx, s, notationreg.NewRepository(r), notation.SignOptions{
		ArtifactReference: r.Reference.Registry + "/" + r.Reference.Repository + "@" + img.Digest.String(),
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: jws.MediaTypeEnvelope}}); err != nil {
		t.Fatalf("notation sign as a publisher under enforce: %v", err)
	}
	if err := pull(r, "v1"); err != nil {
		t.Fatalf("signed image: %v", err)
	}

	// "read": the publisher's GET of the unsigned one passes too.
	set(signatures.PublishersRead)
	if err := pull(r, other.Digest.String()); err != nil {
		t.Fatalf("publishers read: %v", err)
	}
	// "refuse": not even HEAD.
	set(signatures.PublishersRefuse)
	// (A HEAD answer has no body: the status says it.)
	_, err = r.Resolve(ctx, "v2")
	wantHeadForbidden(t, "publishers refuse, HEAD", err)
	// The admin (Owner) is a publisher too, and judged the same way.
	_, err = e.repo("pub/app").Resolve(ctx, "v2")
	wantHeadForbidden(t, "Owner under publishers refuse", err)
	_, rc, err = e.repo("pub/app").FetchReference(ctx, "v2")
	if err == nil {
		rc.Close()
	}
	wantDenied(t, "Owner GET under publishers refuse", err, "no signature")

	// An unknown value is refused when the policy is set.
	rule.Publishers = "all"
	if status, body := e.call(e.mgmt, http.MethodPut, "/registry/signatures/policy", wire.SignaturePolicy{Repositories: []wire.SignatureRule{rule}}, nil); status != http.StatusBadRequest || !strings.Contains(body, "publishers") {
		t.Fatalf("publishers all = %d %s, want 400", status, body)
	}
}

func wantHeadForbidden(t testing.TB, what string, err error) {
	t.Helper()
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusForbidden {
		t.Fatalf("%s: HEAD = %v, want 403", what, err)
	}
}
