package registry

import (
	"context"
	"errors"
	"fmt"
)

// Repository summarises a repository (NAME_UNKNOWN if absent).
func (s *Service) Repository(ctx context.Context, repo string) (RepositoryInfo, error) {
	if err := checkName(repo); err != nil {
		return RepositoryInfo{}, err
	}
	info, err := s.meta.RepositoryInfo(ctx, repo)
	if errors.Is(err, ErrNotFound) {
		return info, newError(CodeNameUnknown, "repository %s is not known", repo)
	}
	return info, asRegistryError(err)
}

// Repositories summarises up to n repositories after last in lexical order (n < 0: all)
// in one metadata query, and reports whether more follow: the management listing's page.
func (s *Service) Repositories(ctx context.Context, last string, n int) ([]RepositoryInfo, bool, error) {
	q := n
	if n >= 0 {
		q = n + 1
	}
	infos, err := s.meta.RepositoryInfos(ctx, last, q)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if n >= 0 && len(infos) > n {
		return infos[:n], n > 0, nil
	}
	return infos, false, nil
}

// TagDetails lists the tags of repo with their digests.
func (s *Service) TagDetails(ctx context.Context, repo string) ([]TagInfo, error) {
	if _, err := s.Repository(ctx, repo); err != nil {
		return nil, err
	}
	tags, err := s.meta.TagDetails(ctx, repo)
	return tags, asRegistryError(err)
}

// DeleteRepository deletes a repository's manifests, tags, links and uploads; the blobs
// go at the next garbage collection if no other repository needs them.
func (s *Service) DeleteRepository(ctx context.Context, repo string) error {
	if err := checkName(repo); err != nil {
		return err
	}
	uploads, found, err := s.meta.DeleteRepository(ctx, repo)
	if err != nil {
		return asRegistryError(err)
	}
	if !found {
		return newError(CodeNameUnknown, "repository %s is not known", repo)
	}
	for _, id := range uploads {
		s.hashes.drop(id)
		s.driver.Delete(ctx, uploadPath(id))
	}
	if s.opts.OnRepositoryDeleted != nil {
		if err := s.opts.OnRepositoryDeleted(ctx, repo); err != nil {
			return fmt.Errorf("repository %s deleted, but not its trust data: %w", repo, err)
		}
	}
	return nil
}
