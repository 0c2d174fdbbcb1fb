package registry

import (
	"testing"
)

func TestParseManifest(t *testing.T) {
	const cfg = `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	const layer = `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}`
	const foreign = `{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9","size":3}`
	cases := []struct {
		name, body, ct string
		wantType       string
		wantArtifact   string
		wantRefs       int
		wantErr        Code
	}{
		{"oci image", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + cfg + `,"layers":[` + layer + `]}`, MediaTypeOCIManifest, MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json", 2, ""},
		{"no mediaType, content type says", `{"schemaVersion":2,"config":` + cfg + `,"layers":[]}`, MediaTypeOCIManifest, MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json", 1, ""},
		{"no mediaType, no content type", `{"schemaVersion":2,"config":` + cfg + `,"layers":[]}`, "", MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json", 1, ""},
		{"artifactType wins", `{"schemaVersion":2,"artifactType":"a/b","config":` + cfg + `,"layers":[]}`, MediaTypeOCIManifest, MediaTypeOCIManifest, "a/b", 1, ""},
		{"foreign layer skipped", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":` + cfg + `,"layers":[` + foreign + `]}`, "", MediaTypeDockerManifest, "application/vnd.oci.image.config.v1+json", 1, ""},
		{"index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}]}`, "", MediaTypeOCIIndex, "", 1, ""},
		{"duplicate refs", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer + `,` + layer + `]}`, MediaTypeOCIManifest, MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json", 2, ""},
		{"content type parameters", `{"schemaVersion":2,"config":` + cfg + `,"layers":[]}`, MediaTypeOCIManifest + "; charset=utf-8", MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json", 1, ""},
		{"not json", `{`, "", "", "", 0, CodeManifestInvalid},
		{"schema 1", `{"schemaVersion":1}`, "", "", "", 0, CodeManifestInvalid},
		{"no schema", `{"config":` + cfg + `}`, "", "", "", 0, CodeManifestInvalid},
		{"unknown type", `{"schemaVersion":2,"mediaType":"text/plain","config":` + cfg + `}`, "", "", "", 0, CodeManifestInvalid},
		{"bad digest", `{"schemaVersion":2,"config":{"mediaType":"x/y","digest":"sha256:zz","size":1},"layers":[]}`, "", "", "", 0, CodeManifestInvalid},
		{"negative size", `{"schemaVersion":2,"config":{"mediaType":"x/y","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":-1},"layers":[]}`, "", "", "", 0, CodeManifestInvalid},
		{"type mismatch", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + cfg + `}`, MediaTypeOCIIndex, "", "", 0, CodeManifestInvalid},
		{"index with config", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":` + cfg + `,"manifests":[]}`, "", "", "", 0, CodeManifestInvalid},
		{"bad subject", `{"schemaVersion":2,"config":` + cfg + `,"subject":{"mediaType":"x/y","digest":"nope","size":1}}`, MediaTypeOCIManifest, "", "", 0, CodeManifestInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pm, err := parseManifest([]byte(c.body), c.ct)
			if c.wantErr != "" {
				if ErrorCode(err) != c.wantErr {
					t.Fatalf("err = %v, want %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pm.MediaType != c.wantType || pm.ArtifactType != c.wantArtifact || len(pm.Refs) != c.wantRefs {
				t.Fatalf("got %+v", pm)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "a/b/c": true, "a-b__c.d/e": true, "a--b": true, "0": true,
		"": false, "A": false, "a/": false, "/a": false, "a//b": false, "a..b": false, "a___b": false, "-a": false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
	}
	for tag, ok := range map[string]bool{"v1": true, "_x": true, "1.0-rc.1": true, ".x": false, "-x": false, "a:b": false, "": false} {
		if ValidTag(tag) != ok {
			t.Errorf("ValidTag(%q) = %v", tag, !ok)
		}
	}
}

// FuzzParseManifest: untrusted manifests never panic, and accepted ones are consistent.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3},"layers":[]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}]}`), MediaTypeOCIIndex)
	f.Add([]byte(`{"schemaVersion":2}`), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		pm, err := parseManifest(body, ct)
		if err != nil {
			if ErrorCode(err) == "" {
				t.Fatalf("error without a spec code: %v", err)
			}
			return
		}
		if !isManifestType(pm.MediaType) {
			t.Fatalf("accepted media type %q", pm.MediaType)
		}
		for _, r := range pm.Refs {
			if r.Digest.Validate() != nil {
				t.Fatalf("accepted invalid reference %q", r.Digest)
			}
		}
	})
}
