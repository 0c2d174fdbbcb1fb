package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// TestManifestAccept: a manifest GET or HEAD whose Accept names manifest types but not the
// stored one's answers 404 MANIFEST_UNKNOWN, as Distribution does; no Accept, a wildcard
// or an Accept that lists the type get the manifest. Docker schema 2 image manifests are
// served whatever the Accept (Distribution too: every client reads them).
func TestManifestAccept(t *testing.T) {
	const repo = "accept/app"
	c := newV2(t, newService(t), repo)
	cfg, layer := []byte(`{"accept":1}`), []byte("accept layer")
	cd, ld := c.blob(repo, cfg), c.blob(repo, layer)
	oci := ociManifest(desc(ociConfig, cd, len(cfg)), desc(ociLayer, ld, len(layer)))
	dockerM, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": registry.MediaTypeDockerManifest,
		"config": desc(dockerCfg, cd, len(cfg)), "layers": []any{desc(dockerLayer, ld, len(layer))}})
	for tag, m := range map[string]struct {
		mt   string
		body []byte
	}{"oci": {registry.MediaTypeOCIManifest, oci}, "docker": {registry.MediaTypeDockerManifest, dockerM}} {
		if a := c.manifest(repo, tag, m.mt, m.body); a.status != http.StatusCreated {
			t.Fatalf("push %s: %s", tag, a)
		}
	}
	ociIdx := indexOf(registry.MediaTypeOCIIndex, desc(registry.MediaTypeOCIManifest, digest.FromBytes(oci), len(oci)))
	dockerList := indexOf(registry.MediaTypeDockerList, desc(registry.MediaTypeDockerManifest, digest.FromBytes(dockerM), len(dockerM)))
	if a := c.manifest(repo, "oci-index", registry.MediaTypeOCIIndex, ociIdx); a.status != http.StatusCreated {
		t.Fatalf("push index: %s", a)
	}
	if a := c.manifest(repo, "docker-list", registry.MediaTypeDockerList, dockerList); a.status != http.StatusCreated {
		t.Fatalf("push list: %s", a)
	}
	const (
		dm = registry.MediaTypeDockerManifest
		dl = registry.MediaTypeDockerList
		om = registry.MediaTypeOCIManifest
		oi = registry.MediaTypeOCIIndex
	)
	allTypes := strings.Join([]string{om, oi, dm, dl}, ", ")
	for _, tc := range []struct {
		ref    string
		accept []string // Accept headers sent
		ok     bool
	}{
		{"oci-index", []string{dm}, false},
		{"oci-index", []string{dm + ", " + dl}, false},
		{"oci-index", []string{om}, false},
		{"oci-index", nil, true},
		{"oci-index", []string{"*/*"}, true},
		{"oci-index", []string{"application/*"}, true},
		{"oci-index", []string{allTypes}, true},
		{"oci-index", []string{dm, oi + "; q=0.5"}, true},
		{digest.FromBytes(ociIdx).String(), []string{dm}, false},
		{"oci", []string{dm, dl}, false},
		{"oci", []string{oi}, false},
		{"oci", []string{om}, true},
		{"oci", []string{"application/json"}, false},
		{"docker-list", []string{dm}, false},
		{"docker-list", []string{om, oi}, false},
		{"docker-list", []string{dl}, true},
		{"docker", []string{om}, true},
		{"docker", []string{oi}, true},
		{"docker", nil, true},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			var hdr []string
			for _, v := range tc.accept {
				hdr = append(hdr, "Accept", v)
			}
			a := c.do(method, "/v2/"+repo+"/manifests/"+tc.ref, nil, hdr...)
			if tc.ok && a.status != http.StatusOK {
				t.Errorf("%s %s with Accept %q: %s, want 200", method, tc.ref, tc.accept, a)
			}
			if !tc.ok && (a.status != http.StatusNotFound || (method == "GET" && a.code() != "MANIFEST_UNKNOWN")) {
				t.Errorf("%s %s with Accept %q: %s, want 404 MANIFEST_UNKNOWN", method, tc.ref, tc.accept, a)
			}
		}
	}
}
