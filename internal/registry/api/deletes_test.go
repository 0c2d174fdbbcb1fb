package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// TestDeleteKeepsTaggedImagesPullable: a manifest that an index of the repository lists,
// or a blob that a manifest of the repository references, cannot be deleted (409 DENIED
// naming the referrer) until the referrer is gone; the image stays pullable meanwhile.
func TestDeleteKeepsTaggedImagesPullable(t *testing.T) {
	const repo = "deletes/app"
	c := newV2(t, newService(t), repo)
	cfg, layer := []byte(`{"os":"linux"}`), []byte("the only layer")
	cd, ld := c.blob(repo, cfg), c.blob(repo, layer)
	img := ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, len(layer)))
	imgD := digest.FromBytes(img)
	if a := c.manifest(repo, "image", registry.MediaTypeOCIManifest, img); a.status != http.StatusCreated {
		t.Fatalf("push image: %s", a)
	}
	idx := indexOf(registry.MediaTypeOCIIndex, desc(registry.MediaTypeOCIManifest, imgD, len(img)))
	idxD := digest.FromBytes(idx)
	if a := c.manifest(repo, "multi", registry.MediaTypeOCIIndex, idx); a.status != http.StatusCreated {
		t.Fatalf("push index: %s", a)
	}
	refused := func(what, path string, referrer digest.Digest) {
		t.Helper()
		a := c.do("DELETE", path, nil)
		if a.status != http.StatusConflict || a.code() != "DENIED" || !strings.Contains(string(a.body), referrer.String()) {
			t.Fatalf("DELETE %s: %s, want 409 DENIED naming %s", what, a, referrer)
		}
	}
	pullable := func(tag string) {
		t.Helper()
		a := c.do("GET", "/v2/"+repo+"/manifests/"+tag, nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET %s: %s", tag, a)
		}
		for _, d := range []digest.Digest{cd, ld} {
			if a := c.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil); a.status != http.StatusOK {
				t.Fatalf("GET blob %s of %s: %s", d, tag, a)
			}
		}
	}
	refused("the index's child", "/v2/"+repo+"/manifests/"+imgD.String(), idxD)
	refused("the layer", "/v2/"+repo+"/blobs/"+ld.String(), imgD)
	refused("the config", "/v2/"+repo+"/blobs/"+cd.String(), imgD)
	pullable("multi")
	pullable("image")

	// Referrer first: then each delete goes through, top down.
	for _, p := range []string{"manifests/" + idxD.String(), "manifests/" + imgD.String(), "blobs/" + ld.String(), "blobs/" + cd.String()} {
		if a := c.do("DELETE", "/v2/"+repo+"/"+p, nil); a.status != http.StatusAccepted {
			t.Fatalf("DELETE %s after its referrers: %s", p, a)
		}
	}
	// A subject is not a reference: deleting an image that a signature refers to is allowed
	// (the referrer stays, as the spec says).
	cd2 := c.blob(repo, []byte(`{"os":"plan9"}`))
	subj := ociManifest(desc(ociConfig, cd2, len(`{"os":"plan9"}`)))
	if a := c.manifest(repo, "signed", registry.MediaTypeOCIManifest, subj); a.status != http.StatusCreated {
		t.Fatalf("push subject: %s", a)
	}
	var sig map[string]any
	json.Unmarshal(ociManifest(desc("application/vnd.example.sig", cd2, len(`{"os":"plan9"}`))), &sig)
	sig["subject"] = desc(registry.MediaTypeOCIManifest, digest.FromBytes(subj), len(subj))
	sigBody, _ := json.Marshal(sig)
	if a := c.manifest(repo, digest.FromBytes(sigBody).String(), registry.MediaTypeOCIManifest, sigBody); a.status != http.StatusCreated {
		t.Fatalf("push referrer: %s", a)
	}
	if a := c.do("DELETE", "/v2/"+repo+"/manifests/"+digest.FromBytes(subj).String(), nil); a.status != http.StatusAccepted {
		t.Fatalf("DELETE a subject: %s", a)
	}
}
