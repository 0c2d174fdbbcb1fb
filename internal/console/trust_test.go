package console_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/signatures"
)

// cosignSign stores a cosign signature of repo@digest as cosign v2 does by default (the
// tag sha256-<hex>.sig, a simple-signing layer with the signature in an annotation) and
// returns the public key, PEM.
func (e *env) cosignSign(t testing.TB, repo, digest string) string {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(e.host + "/" + repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	body, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(body, signatures.MediaTypeSimpleSigning),
		Annotations: map[string]string{signatures.AnnotationCosignSig: base64.StdEncoding.EncodeToString(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	tag := mustRef(t, e.host+"/"+repo+":sha256-"+strings.TrimPrefix(digest, "sha256:")+".sig")
	if err := remote.Write(tag, img, e.remoteOpts("admin", e.Inst.AdminPassword)...); err != nil {
		t.Fatalf("push the cosign signature: %v", err)
	}
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// pushEncrypted pushes an image whose second layer carries ocicrypt's encrypted media type.
func (e *env) pushEncrypted(t testing.TB, ref string) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte("ciphertext of a layer"), "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, e.host+"/"+ref), img, e.remoteOpts("admin", e.Inst.AdminPassword)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestConsoleTrustAndSignatures drives Chromium through what the content-trust,
// signature and image-encryption parts added: the overview's content-trust and signature
// policy tiles, the tags table's signed/verified/anchor and client-encrypted columns, and
// the content-trust toggle with its warning and typed confirmation; a Reader sees no
// control and a forced change is refused by the API.
func TestConsoleTrustAndSignatures(t *testing.T) {
	e := start(t)
	pub := e.cosignSign(t, "team/app", e.digest)
	e.MustDo(t, "POST", "/coffer/v1/registry/signatures/anchors", wire.SignatureAnchor{Name: "release-key", Kind: wire.AnchorCosign, PublicKey: pub}, nil)
	e.MustDo(t, "PUT", "/coffer/v1/registry/signatures/policy", wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "team/*", Mode: wire.SignatureModeAudit}}}, nil)
	e.pushEncrypted(t, "team/app:secret")
	e.push(t, "admin", e.Inst.AdminPassword, "team/app:unsigned", nil)

	b := newBrowser(t, e, 1280, 900)
	b.signIn("admin", e.Inst.AdminPassword)
	if got := b.text("#trust-state"); got != "disabled" {
		t.Fatalf("overview content trust %q, want disabled", got)
	}
	if got := b.text("#sig-mode"); got != "audit" {
		t.Fatalf("overview signature policy mode %q, want audit", got)
	}
	if got := b.text("#sig-rules"); got != "team/*: audit" {
		t.Fatalf("overview signature rules %q", got)
	}

	b.run("tags", chromedp.Navigate(b.base+"/console/repository?name=team/app"), chromedp.WaitVisible(chromedp.CSS("#tags")))
	row := func(tag string) (sig, enc string) {
		sig = get(b, "signatures of "+tag, chromedp.Evaluate[string](`(() => { for (const tr of document.querySelectorAll("#tags tbody tr")) { if (tr.cells[0].innerText === "`+tag+`") return tr.querySelector("td.signatures").innerText } return "no row" })()`))
		enc = get(b, "encryption of "+tag, chromedp.Evaluate[string](`(() => { for (const tr of document.querySelectorAll("#tags tbody tr")) { if (tr.cells[0].innerText === "`+tag+`") return tr.querySelector("td.encrypted").innerText } return "no row" })()`))
		return sig, enc
	}
	if sig, enc := row("v1"); !strings.Contains(sig, "cosign") || !strings.Contains(sig, "verified by release-key") || strings.Contains(sig, "not verified") || enc != "no" {
		t.Fatalf("v1 row: signatures %q, encrypted %q; want cosign, verified by release-key, not encrypted", sig, enc)
	}
	if sig, _ := row("unsigned"); !strings.HasPrefix(sig, "unsigned") {
		t.Fatalf("unsigned row: signatures %q", sig)
	}
	if _, enc := row("secret"); enc != "1 encrypted layer" {
		t.Fatalf("secret row: encrypted %q, want 1 encrypted layer", enc)
	}
	b.doc("tags")

	// Content trust: enable, refuse a mistyped confirmation, disable.
	b.run("trust page", chromedp.Navigate(b.base+"/console/trust"), chromedp.WaitVisible(chromedp.CSS("#trust-enable")))
	b.run("enable", chromedp.Click(chromedp.CSS("#trust-enable")), chromedp.WaitVisible(chromedp.CSS("#trust-disable")))
	if got := b.text("#trust-state"); got != "enabled" {
		t.Fatalf("after enabling, state %q", got)
	}
	if got := b.text("#trust-warning"); !strings.Contains(got, "irreversibly") || !strings.Contains(got, "Notary v1 trust data") ||
		!strings.Contains(got, "server-held trust key") || !strings.Contains(got, "notation and cosign signatures") {
		t.Fatalf("warning before disabling says %q", got)
	}
	b.doc("trust")
	b.run("mistyped", chromedp.SendKeys(chromedp.CSS("#trust-confirm"), "disable"), chromedp.Click(chromedp.CSS("#trust-disable")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	if got := b.text("#trust-state"); got != "enabled" {
		t.Fatalf("a mistyped confirmation changed the state to %q", got)
	}
	b.run("disable", chromedp.SendKeys(chromedp.CSS("#trust-confirm"), "disable content trust"), chromedp.Click(chromedp.CSS("#trust-disable")), chromedp.WaitVisible(chromedp.CSS("#trust-deleted")))
	if got := b.text("#trust-state"); got != "disabled" {
		t.Fatalf("after disabling, state %q", got)
	}
	var pol wire.ContentTrustPolicy
	e.MustDo(t, "GET", "/coffer/v1/registry/config/content-trust", nil, &pol)
	if pol.Status != wire.ContentTrustDisabled {
		t.Fatalf("the API says %q after the console disabled it", pol.Status)
	}
	if got := b.text("#trust-deleted"); !strings.Contains(got, "server-held keys") {
		t.Fatalf("deletion report %q", got)
	}

	// A Reader sees the status but no control, and a forced change is refused.
	e.MustDo(t, "POST", "/coffer/v1/users", map[string]string{"name": "reader", "password": "reader-password-1"}, nil)
	e.MustDo(t, "POST", "/coffer/v1/role-assignments", map[string]string{"role": "Reader", "assignee": "reader", "scope": "/registry"}, nil)
	rc, _ := e.session(t, "reader", "reader-password-1")
	page := e.get(t, rc, "/console/trust", http.StatusOK)
	if strings.Contains(page, `id="trust-enable"`) || strings.Contains(page, `id="trust-disable"`) || !strings.Contains(page, `id="trust-readonly"`) {
		t.Fatalf("the Reader's content-trust page offers the toggle:\n%s", page)
	}
	code, refused := e.post(t, rc, "/console/trust", url.Values{"csrf": {formToken(t, page, "csrf")}, "status": {"enabled"}}, nil)
	if code != http.StatusForbidden || !strings.Contains(refused, "Ask an Owner") {
		t.Fatalf("forced enable by a Reader = %d\n%s", code, refused)
	}
	e.MustDo(t, "GET", "/coffer/v1/registry/config/content-trust", nil, &pol)
	if pol.Status != wire.ContentTrustDisabled {
		t.Fatal("the Reader changed content trust")
	}
}
