package signatures_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/signatures"
	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// vaultSigner is a sigstore signature.Signer whose key stays in Coffer's vault: the
// message is hashed with SHA-256 and the digest signed by the vault's sign operation (ES256
// through the Azure SDK, as sigstore's azurekms signer does), the raw r||s answer turned
// into the ASN.1 form cosign stores.
type vaultSigner struct {
	c       *azkeys.Client
	name    string
	version string // "": the newest
}

var _ signature.Signer = vaultSigner{}

func (s vaultSigner) SignMessage(msg io.Reader, _ ...signature.SignOption) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, msg); err != nil {
		return nil, err
	}
	res, err := s.c.Sign(context.Background(), s.name, s.version, azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: h.Sum(nil)}, nil)
	if err != nil {
		return nil, err
	}
	if len(res.Result) != 64 {
		return nil, fmt.Errorf("ES256 signature of %d bytes", len(res.Result))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(res.Result[:32]), new(big.Int).SetBytes(res.Result[32:])})
}

func (s vaultSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	k, err := s.c.GetKey(context.Background(), s.name, s.version, nil)
	if err != nil {
		return nil, err
	}
	return &ecdsa.PublicKey{X: new(big.Int).SetBytes(k.Key.X), Y: new(big.Int).SetBytes(k.Key.Y)}, nil
}

// TestCosignKeyInVault: a cosign anchor referencing a key in Coffer's vault by key URL.
// Signatures made by the vault's sign operation verify under enforce; a versionless URL
// follows rotation once the anchor is refreshed (old versions keep verifying while they
// are enabled); a disabled version and a deleted key stop verifying.
func TestCosignKeyInVault(t *testing.T) {
	ve := vaulttest.Start(t, nil)
	u, _ := url.Parse(ve.Inst.URL)
	e := &env{t: t, inst: ve.Inst, host: u.Host, mgmt: ve.Token}
	ctx := context.Background()

	ve.CreateVault(t, "signing", nil)
	signer := ve.ServicePrincipal(t, "release-signer")
	ve.SetPolicy(t, "signing", signer.ObjectID, "create", "get", "list", "sign", "rotate", "update", "delete")
	kc, err := azkeys.NewClient(ve.HostURL("signing"), ve.Credential(t, signer), &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{Transport: ve.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	created, err := kc.CreateKey(ctx, "release", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := created.Key.KID.Version()
	keyURL := ve.HostURL("signing") + "/keys/release"

	// The registry reads the key as its system identity: without an access policy the
	// anchor is refused, saying what to grant.
	status, body := e.call(e.mgmt, http.MethodPost, "/registry/signatures/anchors", wire.SignatureAnchor{Name: "release", Kind: wire.AnchorCosign, KeyURL: keyURL}, nil)
	if status != http.StatusBadRequest || !strings.Contains(body, "get and list key permissions") {
		t.Fatalf("anchor add without access = %d %s, want 400 naming the permissions", status, body)
	}
	var sys struct {
		Value []struct{ ID, Kind string } `json:"value"`
	}
	e.must(http.MethodGet, "/managedIdentities", nil, &sys, http.StatusOK)
	for _, p := range sys.Value {
		if p.Kind == wire.KindSystemIdentity {
			ve.SetPolicy(t, "signing", p.ID, "get", "list")
		}
	}
	var a wire.SignatureAnchor
	e.must(http.MethodPost, "/registry/signatures/anchors", wire.SignatureAnchor{Name: "release", Kind: wire.AnchorCosign, KeyURL: keyURL}, &a, http.StatusCreated)
	if a.KeyURL != keyURL || len(a.Fingerprints) != 1 || !strings.Contains(a.PublicKey, "Key-Version: "+v1) || a.Refreshed == nil {
		t.Fatalf("vault anchor = %+v", a)
	}
	// A URL that is not a vault of this server, and a malformed one, are refused.
	for _, bad := range []string{"https://vault.example.com/keys/release", ve.HostURL("signing") + "/secrets/release", "ftp://x/keys/a"} {
		if status, body := e.call(e.mgmt, http.MethodPost, "/registry/signatures/anchors", wire.SignatureAnchor{Name: "bad", Kind: wire.AnchorCosign, KeyURL: bad}, nil); status != http.StatusBadRequest {
			t.Fatalf("anchor add %s = %d %s, want 400", bad, status, body)
		}
	}
	e.setPolicy(wire.SignaturePolicy{Repositories: []wire.SignatureRule{{Scope: "vk/*", Mode: wire.SignatureModeEnforce, CosignKeys: []string{"release"}}}})

	pw := e.user("puller", "AcrPull", "/registry")
	r, pr := e.repo("vk/app"), e.repoAs("vk/app", "puller", pw)
	img1, img2 := e.pushImage(r, "v1"), e.pushImage(r, "v2")
	cosignOCI(t, r, cosignKey{signer: vaultSigner{c: kc, name: "release"}}, img1, img1)
	if err := pull(pr, "v1"); err != nil {
		t.Fatalf("image signed by the vault key: %v", err)
	}
	wantDenied(t, "unsigned", pull(pr, "v2"), "no signature")

	// Rotation: v2 is signed by the new version, which the anchor does not know yet.
	rot, err := kc.RotateKey(ctx, "release", nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := rot.Key.KID.Version()
	cosignLegacy(t, r, cosignKey{signer: vaultSigner{c: kc, name: "release"}}, img2, img2)
	wantDenied(t, "signed by a version made after the anchor was read", pull(pr, "v2"), "untrusted key")
	var ref wire.SignatureAnchorRefresh
	e.must(http.MethodPost, "/registry/signatures/anchors/release/refresh", nil, &ref, http.StatusOK)
	if !ref.Changed || len(ref.Versions) != 2 || ref.Versions[0] != v2 || ref.Versions[1] != v1 {
		t.Fatalf("refresh after rotation = %+v, want versions [%s %s]", ref, v2, v1)
	}
	for _, tag := range []string{"v1", "v2"} {
		if err := pull(pr, tag); err != nil {
			t.Fatalf("%s after the refresh: %v", tag, err)
		}
	}
	// Nothing changed: a refresh does not bump the policy version.
	var before, after wire.SignaturePolicy
	e.must(http.MethodGet, "/registry/signatures/policy", nil, &before, http.StatusOK)
	e.must(http.MethodPost, "/registry/signatures/anchors/release/refresh", nil, &ref, http.StatusOK)
	e.must(http.MethodGet, "/registry/signatures/policy", nil, &after, http.StatusOK)
	if ref.Changed || before.Version != after.Version {
		t.Fatalf("an idle refresh changed something: %+v, version %d → %d", ref, before.Version, after.Version)
	}

	// A disabled version stops verifying; the other still does.
	if _, err := kc.UpdateKey(ctx, "release", v2, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}}, nil); err != nil {
		t.Fatal(err)
	}
	e.must(http.MethodPost, "/registry/signatures/anchors/release/refresh", nil, &ref, http.StatusOK)
	if !ref.Changed || len(ref.Versions) != 1 || ref.Versions[0] != v1 {
		t.Fatalf("refresh after disabling %s = %+v", v2, ref)
	}
	wantDenied(t, "signed by a disabled version", pull(pr, "v2"), "untrusted key")
	if err := pull(pr, "v1"); err != nil {
		t.Fatalf("v1 after disabling the other version: %v", err)
	}

	// The key deleted: the anchor trusts nothing, and says why.
	if _, err := kc.DeleteKey(ctx, "release", nil); err != nil {
		t.Fatal(err)
	}
	e.must(http.MethodPost, "/registry/signatures/anchors/release/refresh", nil, &ref, http.StatusOK)
	if !ref.Changed || len(ref.Versions) != 0 || !strings.Contains(ref.Status, "not in its vault") {
		t.Fatalf("refresh after deleting the key = %+v", ref)
	}
	wantDenied(t, "signed by a deleted key", pull(pr, "v1"), "untrusted key")
	var list wire.List[wire.SignatureAnchor]
	e.must(http.MethodGet, "/registry/signatures/anchors", nil, &list, http.StatusOK)
	if len(list.Value) != 1 || list.Value[0].KeyStatus == "" {
		t.Fatalf("anchor list after deleting the key: %+v", list.Value)
	}
	if recs := e.auditRecords(signatures.OpAnchorRefresh, 4); len(recs) < 4 {
		t.Fatalf("refreshes audited: %d records, want 4", len(recs))
	}
}
