package registry

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Mount links blob d, present in repository from, into repo. The caller must already
// have checked that the requester may pull from "from". BLOB_UNKNOWN if from lacks it.
func (s *Service) Mount(ctx context.Context, repo string, d digest.Digest, from string) (BlobInfo, error) {
	if err := checkName(repo); err != nil {
		return BlobInfo{}, err
	}
	if err := checkName(from); err != nil {
		return BlobInfo{}, err
	}
	b, err := s.meta.RepoBlob(ctx, from, d)
	if errors.Is(err, ErrNotFound) {
		return b, newError(CodeBlobUnknown, "blob %s is not in repository %s", d, from)
	}
	if err != nil {
		return b, asRegistryError(err)
	}
	return b, s.link(ctx, repo, b)
}

// MountAny links blob d into repo from any repository the requester may pull from
// (canPull decides), or reports BLOB_UNKNOWN. It is the spec's automatic mount.
func (s *Service) MountAny(ctx context.Context, repo string, d digest.Digest, canPull func(repo string) bool) (BlobInfo, error) {
	if err := checkName(repo); err != nil {
		return BlobInfo{}, err
	}
	repos, err := s.meta.ReposWithBlob(ctx, d)
	if err != nil {
		return BlobInfo{}, asRegistryError(err)
	}
	for _, from := range repos {
		if from == repo || canPull(from) {
			return s.Mount(ctx, repo, d, from)
		}
	}
	return BlobInfo{}, newError(CodeBlobUnknown, "blob %s is not in a repository you may pull from", d)
}

func (s *Service) link(ctx context.Context, repo string, b BlobInfo) error {
	unlock, err := s.lockDigest(ctx, b.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	// The bytes must still be there: the collector removes the row before the file, under
	// this lock, so a row seen under the lock has its file.
	if _, err := s.driver.Stat(ctx, blobPath(b.Digest)); err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			return newError(CodeBlobUnknown, "blob %s is no longer stored", b.Digest)
		}
		return asRegistryError(err)
	}
	return asRegistryError(s.meta.LinkBlob(ctx, repo, b, s.now()))
}
