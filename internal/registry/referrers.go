package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Referrer is one manifest that refers to a subject.
type Referrer struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Referrers lists the manifests of repo whose subject is d, optionally of one artifact type.
func (s *Service) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]Referrer, error) {
	if err := checkName(repo); err != nil {
		return nil, err
	}
	recs, err := s.meta.Referrers(ctx, repo, d, artifactType)
	if err != nil {
		return nil, asRegistryError(err)
	}
	out := make([]Referrer, 0, len(recs))
	for _, r := range recs {
		ref := Referrer{MediaType: r.MediaType, Digest: r.Digest, Size: r.Size, ArtifactType: r.ArtifactType}
		// Annotations are the manifest's content, kept only in the (sealed) blob store.
		ann, err := s.manifestAnnotations(ctx, r)
		if err != nil {
			return nil, err
		}
		ref.Annotations = ann
		out = append(out, ref)
	}
	return out, nil
}

// manifestAnnotations reads a stored manifest's annotations.
func (s *Service) manifestAnnotations(ctx context.Context, rec ManifestRecord) (map[string]string, error) {
	r, err := s.driver.Reader(ctx, blobPath(rec.Digest), 0)
	if err != nil {
		return nil, asRegistryError(fmt.Errorf("read manifest %s: %w", rec.Digest, err))
	}
	defer r.Close()
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(io.LimitReader(r, rec.Size)).Decode(&m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", rec.Digest, err)
	}
	return m.Annotations, nil
}
