package signatures_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	notationreg "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/signatures"
)

func notationSign(t testing.TB, r *remote.Repository, desc ocispec.Descriptor, ca *testCA) {
	t.Helper()
	key, chain := ca.leaf(t, "signer", time.Now().Add(time.Hour))
	s, err := signer.NewGenericSigner(key, chain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notation.Sign(context.Background(), s, notationreg.NewRepository(r), notation.SignOptions{
		ArtifactReference: r.Reference.Registry + "/" + r.Reference.Repository + "@" + desc.Digest.String(),
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: jws.MediaTypeEnvelope}}); err != nil {
		t.Fatalf("notation sign: %v", err)
	}
}

// TestAuditAnchorRemovalExempt: audit mode lets an unverified pull through and counts
// and audits it; removing an anchor refuses images signed only under it at once; an
// identity listed as exempt pulls an unverified image, audited.
func TestAuditAnchorRemovalExempt(t *testing.T) {
	e := startEnv(t)
	pw, pullerID := e.userID("puller", "AcrPull", "/registry")
	caA, caB := newCA(t, "CA A"), newCA(t, "CA B")
	e.addAnchor(wire.SignatureAnchor{Name: "ca-a", Kind: wire.AnchorNotation, Certificates: caA.pem()})
	e.addAnchor(wire.SignatureAnchor{Name: "ca-b", Kind: wire.AnchorNotation, Certificates: caB.pem()})
	rules := []wire.SignatureRule{
		{Scope: "audit/*", Mode: wire.SignatureModeAudit},
		{Scope: "prod/*", Mode: wire.SignatureModeEnforce},
	}
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca-a", "ca-b"), Repositories: rules})

	// Audit: the pull succeeds, /metrics counts it, the trail has it.
	ar := e.repo("audit/app")
	unsignedAudit := e.pushImage(ar, "v1")
	if err := pull(e.repoAs("audit/app", "puller", pw), "v1"); err != nil {
		t.Fatalf("audit mode refused a pull: %v", err)
	}
	if got := e.metric(`coffer_signature_pulls_total{mode="audit",result="unverified"}`); got != "2" { // GET and HEAD
		t.Fatalf("audit pulls counted %q, want 2", got)
	}
	recs := e.auditRecords(signatures.OpPullUnverified, 2)
	if len(recs) < 2 || recs[0].Target != "audit/app@"+unsignedAudit.Digest.String() || recs[0].PrincipalName != "puller" ||
		!strings.Contains(recs[0].Detail, "no signature") {
		t.Fatalf("audit trail has %+v", recs)
	}
	var tags wire.TagList
	e.must(http.MethodGet, "/registry/tags?repository=audit/app", nil, &tags, http.StatusOK)
	if len(tags.Tags) != 1 || tags.Tags[0].Verified == nil || *tags.Tags[0].Verified || tags.Tags[0].SignaturePolicy != "audit" || tags.Tags[0].SignatureReason != signatures.ReasonNoSignature {
		t.Fatalf("tag list shows %+v", tags.Tags)
	}

	// Anchor removal.
	r := e.repo("prod/app")
	pr := e.repoAs("prod/app", "puller", pw)
	a, b := e.pushImage(r, "a"), e.pushImage(r, "b")
	notationSign(t, r, a, caA)
	notationSign(t, r, b, caB)
	for _, tag := range []string{"a", "b"} {
		if err := pull(pr, tag); err != nil {
			t.Fatalf("image %s signed under a trusted anchor: %v", tag, err)
		}
	}
	var v wire.SignatureVerification
	e.must(http.MethodGet, "/registry/signatures/verification?repository=prod/app&reference=a", nil, &v, http.StatusOK)
	if !v.Verified || v.Anchor != "ca-a" || v.Kind != wire.SignatureNotation {
		t.Fatalf("verdict on a: %+v", v)
	}
	e.must(http.MethodDelete, "/registry/signatures/anchors/ca-a", nil, nil, http.StatusNoContent)
	wantDenied(t, "signed under a removed anchor", pull(pr, "a"), "untrusted key")
	if err := pull(pr, "b"); err != nil {
		t.Fatalf("image signed under the remaining anchor: %v", err)
	}

	// Exemption: the rule lists the puller.
	e.pushImage(r, "unsigned")
	wantDenied(t, "unsigned", pull(pr, "unsigned"), "no signature")
	rules[1].Exempt = []string{pullerID}
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca-b"), Repositories: rules})
	if err := pull(pr, "unsigned"); err != nil {
		t.Fatalf("exempt identity refused: %v", err)
	}
	ex := e.auditRecords(signatures.OpPullExempt, 1)
	found := false
	for _, rec := range ex {
		found = found || (rec.PrincipalID == pullerID && strings.Contains(rec.Detail, "exempt"))
	}
	if !found {
		t.Fatalf("exempt pull not audited: %+v", ex)
	}
	if got := e.metric(`coffer_signature_pulls_total{mode="enforce",result="refused"}`); got == "" || got == "0" {
		t.Fatalf("refusals not counted: %q", got)
	}
}

// TestPermissions is the permission table of the anchor and policy routes: Owner writes;
// Owner, Contributor and Reader read; AcrPull neither.
func TestPermissions(t *testing.T) {
	e := startEnv(t)
	users := map[string]string{"owner": e.mgmt}
	for name, role := range map[string]string{"contrib": "Contributor", "reader": "Reader", "puller": "AcrPull"} {
		users[name] = e.login(name, e.user(name, role, "/"))
	}
	ca := newCA(t, "perm CA")
	anchor := func(n string) wire.SignatureAnchor {
		return wire.SignatureAnchor{Name: n, Kind: wire.AnchorNotation, Certificates: ca.pem()}
	}
	policy := wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "x/*", Mode: wire.SignatureModeAudit}}}
	for _, tc := range []struct {
		who, method, path string
		body              any
		want              int
	}{
		{"owner", "GET", "/registry/signatures/anchors", nil, 200},
		{"contrib", "GET", "/registry/signatures/anchors", nil, 200},
		{"reader", "GET", "/registry/signatures/anchors", nil, 200},
		{"puller", "GET", "/registry/signatures/anchors", nil, 403},
		{"owner", "GET", "/registry/signatures/policy", nil, 200},
		{"contrib", "GET", "/registry/signatures/policy", nil, 200},
		{"reader", "GET", "/registry/signatures/policy", nil, 200},
		{"puller", "GET", "/registry/signatures/policy", nil, 403},
		{"contrib", "POST", "/registry/signatures/anchors", anchor("c"), 403},
		{"reader", "POST", "/registry/signatures/anchors", anchor("r"), 403},
		{"puller", "POST", "/registry/signatures/anchors", anchor("p"), 403},
		{"owner", "POST", "/registry/signatures/anchors", anchor("o"), 201},
		{"reader", "GET", "/registry/signatures/anchors/o", nil, 200},
		{"contrib", "PUT", "/registry/signatures/policy", policy, 403},
		{"reader", "PUT", "/registry/signatures/policy", policy, 403},
		{"puller", "PUT", "/registry/signatures/policy", policy, 403},
		{"owner", "PUT", "/registry/signatures/policy", policy, 200},
		{"contrib", "DELETE", "/registry/signatures/anchors/o", nil, 403},
		{"reader", "DELETE", "/registry/signatures/anchors/o", nil, 403},
		{"puller", "DELETE", "/registry/signatures/anchors/o", nil, 403},
		{"owner", "DELETE", "/registry/signatures/anchors/o", nil, 204},
		{"owner", "DELETE", "/registry/signatures/anchors/o", nil, 404},
	} {
		if got, raw := e.call(users[tc.who], tc.method, tc.path, tc.body, nil); got != tc.want {
			t.Errorf("%s %s %s = %d %s, want %d", tc.who, tc.method, tc.path, got, raw, tc.want)
		}
	}
	// Every write was audited, refused ones included in the access decision's own trail.
	recs := e.auditRecords(signatures.OpAnchorAdd, 1)
	if len(recs) != 1 || recs[0].Target != "o" || recs[0].PrincipalName != "admin" {
		t.Fatalf("anchor add audit: %+v", recs)
	}
	if recs := e.auditRecords(signatures.OpPolicySet, 1); len(recs) != 1 {
		t.Fatalf("policy set audit: %+v", recs)
	}
}

// TestBadInput: the management API answers bad policies and anchors with 400 and a
// message that says what to fix.
func TestBadInput(t *testing.T) {
	e := startEnv(t)
	for _, tc := range []struct {
		path, body, want string
	}{
		{"/registry/signatures/policy", `{"repositories":[{"scope":"a/*","mode":"block"}]}`, "use off, audit or enforce"},
		{"/registry/signatures/policy", `{"repositories":[{"scope":"A","mode":"off"}]}`, "not a repository name"},
		{"/registry/signatures/policy", `{"repositories":[],"colour":1}`, "unknown field"},
		{"/registry/signatures/policy", `{"repositories":[{"scope":"a","mode":"enforce","cosignKeys":["nope"]}]}`, "not a cosign anchor"},
		{"/registry/signatures/policy", `{"repositories":[],"notation":{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:missing"],"trustedIdentities":["*"]}]}}`, "not a notation anchor"},
		{"/registry/signatures/policy", `{"repositories":[],"notation":{"version":"2.0","trustPolicies":[]}}`, "notation:"},
	} {
		req, _ := http.NewRequest(http.MethodPut, e.inst.URL+"/coffer/v1"+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+e.mgmt)
		resp, err := e.inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var msg wire.Error
		decodeJSON(t, resp, &msg)
		if resp.StatusCode != 400 || !strings.Contains(msg.Error.Message, tc.want) {
			t.Errorf("PUT %s %s = %d %q, want 400 saying %q", tc.path, tc.body, resp.StatusCode, msg.Error.Message, tc.want)
		}
	}
	for _, tc := range []struct {
		a    wire.SignatureAnchor
		want string
	}{
		{wire.SignatureAnchor{Name: "x", Kind: "pgp"}, "use notation or cosign"},
		{wire.SignatureAnchor{Name: "bad name", Kind: wire.AnchorCosign}, "anchor name"},
		{wire.SignatureAnchor{Name: "x", Kind: wire.AnchorCosign, PublicKey: "not pem"}, "publicKey"},
		{wire.SignatureAnchor{Name: "x", Kind: wire.AnchorNotation, Certificates: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "certificates"},
	} {
		if got, raw := e.call(e.mgmt, "POST", "/registry/signatures/anchors", tc.a, nil); got != 400 || !strings.Contains(raw, tc.want) {
			t.Errorf("add %+v = %d %s, want 400 saying %q", tc.a, got, raw, tc.want)
		}
	}
}

// TestIndexPlatforms: an index is verified as a whole; its platform manifests pass
// through it ("index", the default) or need their own signature ("each").
func TestIndexPlatforms(t *testing.T) {
	e := startEnv(t)
	pw := e.user("puller", "AcrPull", "/registry")
	ca := newCA(t, "index CA")
	e.addAnchor(wire.SignatureAnchor{Name: "ca", Kind: wire.AnchorNotation, Certificates: ca.pem()})
	r, pr := e.repo("multi/app"), e.repoAs("multi/app", "puller", pw)
	child := e.pushImage(r, "child-only")
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	raw, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{child}})
	idx := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, raw)
	if err := r.PushReference(context.Background(), idx, bytes.NewReader(raw), "multi"); err != nil {
		t.Fatal(err)
	}
	notationSign(t, r, idx, ca)
	rule := wire.SignatureRule{Scope: "multi/*", Mode: wire.SignatureModeEnforce}
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{rule}})
	if err := pull(pr, "multi"); err != nil {
		t.Fatalf("signed index: %v", err)
	}
	if err := pull(pr, child.Digest.String()); err != nil {
		t.Fatalf("platform manifest of a signed index: %v", err)
	}
	rule.Platforms = "each"
	e.setPolicy(wire.SignaturePolicy{Notation: notationPolicy("ca"), Repositories: []wire.SignatureRule{rule}})
	wantDenied(t, "platform manifest, platforms each", pull(pr, child.Digest.String()), "no signature")
	if err := pull(pr, "multi"); err != nil {
		t.Fatalf("signed index, platforms each: %v", err)
	}
}

// TestSubjectIsNoWayAround: signature artifacts stay readable under enforce, but an image
// that carries a subject, or hides under a signature tag, is still judged as an image.
func TestSubjectIsNoWayAround(t *testing.T) {
	e := startEnv(t)
	pw := e.user("puller", "AcrPull", "/registry")
	e.setPolicy(wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "*", Mode: wire.SignatureModeEnforce}}})
	r, pr := e.repo("sneaky/app"), e.repoAs("sneaky/app", "puller", pw)
	base := e.pushImage(r, "base")
	cfg := pushBlob(t, r, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := pushBlob(t, r, ocispec.MediaTypeImageLayer, []byte("runnable"))
	withSubject := pushManifest(t, r, ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}, Subject: &base}, "")
	wantDenied(t, "image with a subject", pull(pr, withSubject.Digest.String()), "no signature")
	pushManifest(t, r, ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}}, "sha256-"+base.Digest.Encoded()+".sig")
	wantDenied(t, "image under a .sig tag", pull(pr, "sha256-"+base.Digest.Encoded()+".sig"), "no signature")
	// A real signature artifact (no image layer) is readable.
	empty := pushBlob(t, r, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	sbom := pushBlob(t, r, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
	art := pushManifest(t, r, ocispec.Manifest{ArtifactType: "application/spdx+json", Config: empty, Layers: []ocispec.Descriptor{sbom}, Subject: &base}, "")
	if err := pull(pr, art.Digest.String()); err != nil {
		t.Fatalf("artifact about an image: %v", err)
	}
}
