package cli_test

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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
	"github.com/cofferhq/coffer/internal/servertest"
	"github.com/cofferhq/coffer/internal/signatures"
)

func TestRegistrySignatureCommands(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	a := decode[wire.SignatureAnchor](t, mustCLI(t, "registry", "signature", "anchor", "add", "ci", "--kind", "cosign", "--file", pub, "-o", "json"))
	if a.Name != "ci" || a.Kind != "cosign" || len(a.Fingerprints) != 1 {
		t.Fatalf("anchor add = %+v", a)
	}
	if out := mustCLI(t, "registry", "signature", "anchor", "list"); !strings.Contains(out, "ci") || !strings.Contains(out, "cosign") {
		t.Fatalf("anchor list:\n%s", out)
	}
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"repositories":[{"scope":"prod/*","mode":"enforce","cosignKeys":["ci"]}]}`), 0o600)
	p := decode[wire.SignaturePolicy](t, mustCLI(t, "registry", "signature", "policy", "set", "--file", policy, "-o", "json"))
	if len(p.Repositories) != 1 || p.Repositories[0].Mode != "enforce" || p.Version == 0 {
		t.Fatalf("policy set = %+v", p)
	}
	if out := mustCLI(t, "registry", "signature", "policy", "show"); !strings.Contains(out, "prod/*") || !strings.Contains(out, "enforce") {
		t.Fatalf("policy show:\n%s", out)
	}
	os.WriteFile(policy, []byte(`{"repositories":[{"scope":"prod/*","mode":"block"}]}`), 0o600)
	if _, err := runCLI(t, "registry", "signature", "policy", "set", "--file", policy); err == nil || !strings.Contains(err.Error(), "off, audit or enforce") {
		t.Fatalf("bad policy: %v", err)
	}
	if _, err := runCLI(t, "registry", "signature", "anchor", "delete", "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "registry", "signature", "anchor", "delete", "ci"); err == nil {
		t.Fatal("deleting a deleted anchor succeeded")
	}
}

// TestRepoShowSignatures: repo show gives each tag's signature state and a summary, from
// the tag listing.
func TestRepoShowSignatures(t *testing.T) {
	inst := servertest.Start(t, nil)
	asAdmin(t, inst)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	mustCLI(t, "registry", "signature", "anchor", "add", "ci", "--kind", "cosign", "--file", pub)
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"repositories":[{"scope":"prod/*","mode":"enforce","cosignKeys":["ci"]}]}`), 0o600)
	mustCLI(t, "registry", "signature", "policy", "set", "--file", policy)

	ctx := context.Background()
	u, _ := url.Parse(inst.URL)
	r, _ := remote.NewRepository(u.Host + "/prod/app")
	r.Client = &auth.Client{Client: inst.Client, Cache: auth.NewCache(),
		Credential: auth.StaticCredential(u.Host, auth.Credential{Username: "admin", Password: inst.AdminPassword})}
	push := func(mt string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, data)
		if err := r.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	manifest := func(m ocispec.Manifest, tag string) ocispec.Descriptor {
		m.Versioned, m.MediaType = specs.Versioned{SchemaVersion: 2}, ocispec.MediaTypeImageManifest
		raw, _ := json.Marshal(m)
		d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
		if err := r.PushReference(ctx, d, bytes.NewReader(raw), tag); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	signed := manifest(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{push(ocispec.MediaTypeImageLayer, []byte("one"))}}, "v1")
	manifest(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{push(ocispec.MediaTypeImageLayer, []byte("two"))}}, "v2")
	// A cosign signature of v1 (sigstore's signer over cosign's payload), under its .sig tag.
	ref, _ := name.NewDigest(u.Host + "/prod/app@" + signed.Digest.String())
	body, _ := payload.Cosign{Image: ref}.MarshalJSON()
	sv, _ := signature.LoadSigner(key, crypto.SHA256)
	sig, _ := sv.SignMessage(bytes.NewReader(body))
	layer := push(signatures.MediaTypeSimpleSigning, body)
	layer.Annotations = map[string]string{signatures.AnnotationCosignSig: base64.StdEncoding.EncodeToString(sig)}
	manifest(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{layer}}, signatures.CosignTag(signed.Digest))

	out := decode[struct {
		Name       string `json:"name"`
		TagCount   int    `json:"tagCount"`
		Signatures struct {
			Tags, Signed, Verified, Unverified int
		} `json:"signatures"`
		Tags []wire.Tag `json:"tags"`
	}](t, mustCLI(t, "registry", "repo", "show", "prod/app", "-o", "json"))
	if out.Name != "prod/app" || out.TagCount != 3 || len(out.Tags) != 3 {
		t.Fatalf("repo show = %+v", out)
	}
	if s := out.Signatures; s.Tags != 3 || s.Signed != 1 || s.Verified != 1 || s.Unverified != 1 {
		t.Fatalf("repo show summary = %+v (the .sig tag is neither verified nor unverified)", s)
	}
	table := mustCLI(t, "registry", "repo", "show", "prod/app")
	for _, want := range []string{"MANIFESTS", "1 of 3 tags signed, 1 verified, 1 unverified", "yes (ci)", "no (enforce: no signature)"} {
		if !strings.Contains(table, want) {
			t.Fatalf("repo show table lacks %q:\n%s", want, table)
		}
	}
}
