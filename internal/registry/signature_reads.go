package registry

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// ReferrerRecords lists the manifests of repo whose subject is d, as metadata only (no
// blob read): the signature policy checks them on every manifest pull.
func (s *Service) ReferrerRecords(ctx context.Context, repo string, d digest.Digest) ([]ManifestRecord, error) {
	if err := checkName(repo); err != nil {
		return nil, err
	}
	recs, err := s.meta.Referrers(ctx, repo, d, "")
	return recs, asRegistryError(err)
}

// parentLister is the optional capability of a Metadata to list the indexes of a
// repository that list a manifest.
type parentLister interface {
	ParentIndexes(ctx context.Context, repo string, d digest.Digest) ([]digest.Digest, error)
}

// ParentIndexes lists the indexes of repo that list manifest d (none if the metadata
// store cannot say).
func (s *Service) ParentIndexes(ctx context.Context, repo string, d digest.Digest) ([]digest.Digest, error) {
	if err := checkName(repo); err != nil {
		return nil, err
	}
	pl, ok := s.meta.(parentLister)
	if !ok {
		return nil, nil
	}
	out, err := pl.ParentIndexes(ctx, repo, d)
	return out, asRegistryError(err)
}

// ParentIndexes lists the manifests of repo that reference manifest d (indexes).
func (m *SQLMetadata) ParentIndexes(ctx context.Context, repo string, d digest.Digest) ([]digest.Digest, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT r.manifest FROM registry_manifest_refs r
		JOIN registry_manifests m ON m.repo = r.repo AND m.digest = r.manifest
		WHERE r.ref = ? AND r.repo = ? ORDER BY r.manifest LIMIT 100`, d.String(), repo)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", d, err)
	}
	defer rows.Close()
	var out []digest.Digest
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, digest.Digest(s))
	}
	return out, rows.Err()
}
