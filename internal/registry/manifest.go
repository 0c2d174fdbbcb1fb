package registry

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

// Manifest media types the registry accepts.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndexType(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

func isManifestType(mt string) bool {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList:
		return true
	}
	return false
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// parsedManifest is what the registry keeps of a manifest it accepted.
type parsedManifest struct {
	MediaType    string
	ArtifactType string
	Subject      digest.Digest
	Annotations  map[string]string
	Refs         []Reference
}

// nonDistributable reports whether a layer may be absent from the registry: its bytes
// are fetched from elsewhere (OCI non-distributable and Docker foreign layers).
func nonDistributable(mediaType string) bool {
	return strings.Contains(mediaType, ".nondistributable.") || strings.Contains(mediaType, ".foreign.")
}

// parseManifest validates a manifest. contentType is the request's Content-Type; the
// manifest's own mediaType wins where both are given and they differ only in parameters.
func parseManifest(body []byte, contentType string) (parsedManifest, error) {
	var pm parsedManifest
	var raw rawManifest
	// JSON is UTF-8 (RFC 8259), and encoding/json would silently turn invalid bytes into
	// U+FFFD: annotations the registry shows would not be the ones that were pushed.
	if !utf8.Valid(body) {
		return pm, newError(CodeManifestInvalid, "manifest is not valid UTF-8 (first invalid byte at offset %d): encode every string, annotations included, as UTF-8", invalidUTF8At(body))
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return pm, newError(CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return pm, newError(CodeManifestInvalid, "manifest schemaVersion must be 2 (schema 1 manifests are not supported)")
	}
	ct := contentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	mt := raw.MediaType
	switch {
	case mt != "" && isManifestType(ct) && ct != mt:
		return pm, newError(CodeManifestInvalid, "Content-Type %s does not match the manifest's mediaType %s", ct, mt)
	case mt == "" && isManifestType(ct):
		mt = ct
	case mt == "":
		// Neither says: infer from the shape (skopeo omits mediaType in OCI manifests).
		switch {
		case raw.Manifests != nil && raw.Config == nil:
			mt = MediaTypeOCIIndex
		case raw.Config != nil:
			mt = MediaTypeOCIManifest
		}
	}
	if !isManifestType(mt) {
		return pm, newError(CodeManifestInvalid, "unsupported manifest media type %q: use an OCI or Docker schema 2 image manifest or index", mt)
	}
	pm.MediaType, pm.Annotations = mt, raw.Annotations
	checkDesc := func(what string, d descriptor) (digest.Digest, error) {
		dg, err := digest.Parse(d.Digest)
		if err != nil {
			return "", newError(CodeManifestInvalid, "%s has an invalid digest %q: %v", what, d.Digest, err)
		}
		if d.Size < 0 {
			return "", newError(CodeManifestInvalid, "%s has a negative size", what)
		}
		if d.MediaType == "" {
			return "", newError(CodeManifestInvalid, "%s has no mediaType", what)
		}
		return dg, nil
	}
	if isIndexType(mt) {
		if raw.Config != nil || raw.Layers != nil {
			return pm, newError(CodeManifestInvalid, "an index has manifests, not config or layers")
		}
		for i, d := range raw.Manifests {
			dg, err := checkDesc("manifests["+itoa(i)+"]", d)
			if err != nil {
				return pm, err
			}
			pm.Refs = append(pm.Refs, Reference{Digest: dg, Manifest: isManifestType(d.MediaType), Size: d.Size, Field: "manifests[" + itoa(i) + "]"})
		}
		pm.ArtifactType = raw.ArtifactType
	} else {
		if raw.Config == nil {
			return pm, newError(CodeManifestInvalid, "an image manifest needs a config descriptor")
		}
		if raw.Manifests != nil {
			return pm, newError(CodeManifestInvalid, "an image manifest has layers, not manifests")
		}
		dg, err := checkDesc("config", *raw.Config)
		if err != nil {
			return pm, err
		}
		pm.Refs = append(pm.Refs, Reference{Digest: dg, Size: raw.Config.Size, Field: "config"})
		for i, d := range raw.Layers {
			dg, err := checkDesc("layers["+itoa(i)+"]", d)
			if err != nil {
				return pm, err
			}
			if nonDistributable(d.MediaType) {
				continue
			}
			pm.Refs = append(pm.Refs, Reference{Digest: dg, Size: d.Size, Field: "layers[" + itoa(i) + "]"})
		}
		pm.ArtifactType = raw.ArtifactType
		if pm.ArtifactType == "" {
			pm.ArtifactType = raw.Config.MediaType
		}
	}
	if raw.Subject != nil {
		dg, err := checkDesc("subject", *raw.Subject)
		if err != nil {
			return pm, err
		}
		pm.Subject = dg
	}
	refs, err := dedupRefs(pm.Refs)
	if err != nil {
		return pm, err
	}
	pm.Refs = refs
	return pm, nil
}

// dedupRefs keeps the first reference to each digest; one digest declared with two sizes
// is refused (one of them is wrong whatever is stored).
func dedupRefs(refs []Reference) ([]Reference, error) {
	seen := map[digest.Digest]Reference{}
	out := refs[:0]
	for _, r := range refs {
		first, dup := seen[r.Digest]
		if !dup {
			seen[r.Digest] = r
			out = append(out, r)
			continue
		}
		if first.Size != r.Size {
			return nil, newError(CodeManifestInvalid, "%s and %s both name %s but declare %d and %d bytes", first.Field, r.Field, r.Digest, first.Size, r.Size)
		}
	}
	return out, nil
}

// invalidUTF8At is the offset of the first byte of b that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
