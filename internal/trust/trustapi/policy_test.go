package trustapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/trust"
	"github.com/cofferhq/coffer/internal/vault"
)

// trustKeys lists the keys of the content trust vault, as the registry's identity.
func trustKeys(t *testing.T, e *env) []string {
	t.Helper()
	ctx := vault.AsService(context.Background(), "test")
	sys := e.inst.Server.Identities().SystemIdentity()
	page, err := e.inst.Server.Vault().ListKeys(ctx, sys, trust.DefaultVaultName, 100, "")
	if err != nil {
		t.Fatalf("list trust vault keys: %v", err)
	}
	var names []string
	for _, k := range page.Items {
		names = append(names, k.Name)
	}
	return names
}

// TestDisableWipesAndEnableStartsEmpty publishes with the notary CLI (server-managed
// snapshot), disables content trust (the trust API then answers 404 saying so, and the
// vault no longer lists the server-held keys; the image and its notation-style signature
// artifact, an OCI referrer, still pull), and enables it again with no trust data.
func TestDisableWipesAndEnableStartsEmpty(t *testing.T) {
	e := start(t, nil)
	img, sig := pushSignedArtifact(t, e, "team/app")
	n := newNotary(t, e, "admin", e.inst.AdminPassword)
	gun := e.gun("team/app")
	f := writeFile(t, n.dir, "v1.bin", "one")
	n.must("init", gun)
	n.must("add", gun, "v1", f)
	n.must("publish", gun)
	n.must("key", "rotate", gun, "snapshot", "-r")
	if keys := trustKeys(t, e); len(keys) != 2 {
		t.Fatalf("server-held keys before disable: %v, want timestamp and snapshot", keys)
	}

	res := e.setTrust(t, "disabled")
	if res.Deleted == nil || res.Deleted.Collections != 1 || res.Deleted.Keys != 2 {
		t.Fatalf("disable answer: %+v", res)
	}
	if keys := trustKeys(t, e); len(keys) != 0 {
		t.Fatalf("server-held keys after disable: %v", keys)
	}
	checkArtifactsPull(t, e, "team/app", img, sig)
	// The trust API now says content trust is disabled (404, which clients report as no trust data).
	resp, err := e.inst.Client.Get(e.inst.URL + "/v2/" + gun + "/_trust/tuf/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("timestamp while disabled: %d %s", resp.StatusCode, body)
	}
	fresh := newNotary(t, e, "admin", e.inst.AdminPassword)
	if out, err := fresh.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list while disabled: %v\n%s", err, out)
	}

	e.setTrust(t, "enabled")
	if out, err := fresh.run("list", gun); err == nil || !strings.Contains(out, "does not have trust data") {
		t.Fatalf("list after enabling again: %v\n%s", err, out)
	}
	// A new collection can be published again.
	again := newNotary(t, e, "admin", e.inst.AdminPassword)
	again.must("init", gun)
	again.must("add", gun, "v1", f)
	again.must("publish", gun)
	if out := fresh.must("list", gun); !strings.Contains(out, "v1") {
		t.Fatalf("list after republish:\n%s", out)
	}
}

func regOpts(e *env) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: "admin", Password: e.inst.AdminPassword}), remote.WithTransport(e.inst.Client.Transport)}
}

// notationArtifactType is what notation gives its signature manifests.
const notationArtifactType = "application/vnd.cncf.notary.signature"

// pushSignedArtifact pushes an image as tag v1 and, as notation and cosign do with OCI 1.1,
// a signature manifest whose subject is the image (a referrer). It returns both digests.
func pushSignedArtifact(t *testing.T, e *env, repo string) (img, sig v1.Hash) {
	t.Helper()
	image, err := random.Image(300, 1)
	must(t, err)
	ref, _ := name.ParseReference(e.gun(repo) + ":v1")
	must(t, remote.Write(ref, image, regOpts(e)...))
	desc, err := remote.Head(ref, regOpts(e)...)
	must(t, err)
	s := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	s = mutate.ConfigMediaType(s, types.MediaType(notationArtifactType))
	s, err = mutate.AppendLayers(s, static.NewLayer([]byte(`{"payload":"signature envelope"}`), "application/jose+json"))
	must(t, err)
	signature := mutate.Subject(s, *desc).(v1.Image)
	sd, err := signature.Digest()
	must(t, err)
	sref, _ := name.ParseReference(e.gun(repo) + "@" + sd.String())
	must(t, remote.Write(sref, signature, regOpts(e)...))
	return desc.Digest, sd
}

// checkArtifactsPull pulls the image by digest and finds and pulls its signature through
// the referrers API.
func checkArtifactsPull(t *testing.T, e *env, repo string, img, sig v1.Hash) {
	t.Helper()
	dref, _ := name.NewDigest(e.gun(repo) + "@" + img.String())
	image, err := remote.Image(dref, regOpts(e)...)
	must(t, err)
	layers, err := image.Layers()
	must(t, err)
	for _, l := range layers {
		rc, err := l.Compressed()
		must(t, err)
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	idx, err := remote.Referrers(dref, regOpts(e)...)
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	found := false
	for _, m := range im.Manifests {
		found = found || (m.Digest == sig && m.ArtifactType == notationArtifactType)
	}
	if !found {
		t.Fatalf("the image's referrers %+v do not list its signature %s", im.Manifests, sig)
	}
	sref, _ := name.NewDigest(e.gun(repo) + "@" + sig.String())
	signature, err := remote.Image(sref, regOpts(e)...)
	must(t, err)
	sl, err := signature.Layers()
	must(t, err)
	if len(sl) != 1 {
		t.Fatalf("signature has %d layers", len(sl))
	}
	rc, err := sl[0].Compressed()
	must(t, err)
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(b), "signature envelope") {
		t.Fatalf("signature content: %q", b)
	}
}
