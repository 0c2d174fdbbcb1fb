package registry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// StatBlob describes blob d in repo. A check refreshes the blob's link when it is getting
// old, so a client that found it present has the GC grace period to reference it.
func (s *Service) StatBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	if err := checkName(repo); err != nil {
		return BlobInfo{}, err
	}
	b, err := s.meta.RepoBlob(ctx, repo, d)
	if errors.Is(err, ErrNotFound) {
		return b, newError(CodeBlobUnknown, "blob %s is not in repository %s", d, repo)
	}
	if err != nil {
		return b, asRegistryError(err)
	}
	if s.now().Sub(b.Touched) > s.opts.GCGrace/4 {
		// Under the digest's lock, like any link: the collector may be removing the blob
		// right now, and a refreshed row must never outlive its file.
		if err := s.link(ctx, repo, b); err != nil {
			if ErrorCode(err) == CodeBlobUnknown {
				return b, newError(CodeBlobUnknown, "blob %s is not in repository %s", d, repo)
			}
			s.opts.Log.Warn("refresh blob link", "repo", repo, "digest", d, "err", err)
		}
	}
	return b, nil
}

// OpenBlob opens blob d of repo at offset.
func (s *Service) OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, BlobInfo, error) {
	b, err := s.StatBlob(ctx, repo, d)
	if err != nil {
		return nil, b, err
	}
	r, err := s.ReadBlob(ctx, b, offset)
	return r, b, err
}

// ReadBlob opens the bytes of a blob that StatBlob has just found in a repository.
func (s *Service) ReadBlob(ctx context.Context, b BlobInfo, offset int64) (io.ReadCloser, error) {
	r, err := s.driver.Reader(ctx, blobPath(b.Digest), offset)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, newError(CodeBlobUnknown, "blob %s is recorded but its bytes are missing", b.Digest)
	}
	if err != nil {
		return nil, asRegistryError(fmt.Errorf("read blob %s: %w", b.Digest, err))
	}
	return r, nil
}

// DeleteBlob removes blob d from repo (the bytes go when no repository needs them). It is
// refused (DENIED, ErrReferenced) while a manifest of repo references d.
func (s *Service) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	if err := checkName(repo); err != nil {
		return err
	}
	ok, err := s.meta.UnlinkBlob(ctx, repo, d)
	if err != nil {
		return referencedError(err, "blob", d, repo, "manifest")
	}
	if !ok {
		return newError(CodeBlobUnknown, "blob %s is not in repository %s", d, repo)
	}
	return nil
}
