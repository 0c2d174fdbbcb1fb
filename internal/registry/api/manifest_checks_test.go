package api_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// TestManifestDescriptorsMatchStoredContent: a descriptor whose size is not the stored
// blob's (or child manifest's), or a manifest that is not UTF-8, is refused with
// MANIFEST_INVALID; the exact manifest is accepted.
func TestManifestDescriptorsMatchStoredContent(t *testing.T) {
	const repo = "valid/sizes"
	c := newV2(t, newService(t), repo)
	cfg, layer := []byte(`{"architecture":"amd64"}`), []byte("layer bytes")
	cd, ld := c.blob(repo, cfg), c.blob(repo, layer)

	good := ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, len(layer)))
	for _, bad := range []struct {
		name string
		body []byte
	}{
		{"config size too large", ociManifest(desc(ociConfig, cd, len(cfg)+1), desc(ociLayer, ld, len(layer)))},
		{"layer size too small", ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, len(layer)-1))},
		{"layer size zero", ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, 0))},
		{"same layer twice, once with a wrong size", ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, len(layer)), desc(ociLayer, ld, len(layer)+7))},
		{"invalid UTF-8 in an annotation value", bytes.Replace(good, []byte(`"layers"`), []byte("\"annotations\":{\"note\":\"caf\xe9\"},\"layers\""), 1)},
		{"invalid UTF-8 in an annotation key", bytes.Replace(good, []byte(`"layers"`), []byte("\"annotations\":{\"\xff\xfe\":\"v\"},\"layers\""), 1)},
	} {
		t.Run(bad.name, func(t *testing.T) {
			a := c.manifest(repo, "bad", registry.MediaTypeOCIManifest, bad.body)
			if a.status != http.StatusBadRequest || a.code() != "MANIFEST_INVALID" {
				t.Fatalf("PUT manifest: %s, want 400 MANIFEST_INVALID", a)
			}
			if testing.Verbose() {
				t.Log(a)
			}
		})
	}
	if a := c.do("GET", "/v2/"+repo+"/manifests/bad", nil); a.status != http.StatusNotFound {
		t.Fatalf("a refused manifest was tagged: %s", a)
	}
	if a := c.manifest(repo, "good", registry.MediaTypeOCIManifest, good); a.status != http.StatusCreated {
		t.Fatalf("PUT exact manifest: %s", a)
	}
	// Valid UTF-8 beyond ASCII is of course fine.
	accented := bytes.Replace(good, []byte(`"layers"`), []byte(`"annotations":{"note":"café ☕"},"layers"`), 1)
	if a := c.manifest(repo, "accented", registry.MediaTypeOCIManifest, accented); a.status != http.StatusCreated {
		t.Fatalf("PUT manifest with UTF-8 annotations: %s", a)
	}

	// An index's children are checked against the stored manifests' sizes.
	child := digest.FromBytes(good)
	if a := c.manifest(repo, "idx-bad", registry.MediaTypeOCIIndex, indexOf(registry.MediaTypeOCIIndex, desc(registry.MediaTypeOCIManifest, child, len(good)+1))); a.status != http.StatusBadRequest || a.code() != "MANIFEST_INVALID" {
		t.Fatalf("PUT index with a wrong child size: %s, want 400 MANIFEST_INVALID", a)
	}
	if a := c.manifest(repo, "idx", registry.MediaTypeOCIIndex, indexOf(registry.MediaTypeOCIIndex, desc(registry.MediaTypeOCIManifest, child, len(good)))); a.status != http.StatusCreated {
		t.Fatalf("PUT exact index: %s", a)
	}
}
