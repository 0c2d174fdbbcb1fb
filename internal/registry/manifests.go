package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
)

// ManifestResult is the outcome of a manifest push.
type ManifestResult struct {
	Digest  digest.Digest
	Subject digest.Digest
	// Tags are the tags now pointing at the manifest (the reference, if a tag, and any
	// extra tags given).
	Tags []string
}

// PutManifest validates and stores a manifest under reference (a tag or its digest),
// also tagging it with extraTags (the `tag` parameters of a push by digest).
func (s *Service) PutManifest(ctx context.Context, repo, reference, contentType string, body []byte, extraTags ...string) (ManifestResult, error) {
	var res ManifestResult
	if err := checkName(repo); err != nil {
		return res, err
	}
	if int64(len(body)) > s.opts.MaxManifestSize {
		return res, &Error{Code: CodeManifestInvalid, cause: ErrTooLarge,
			Message: fmt.Sprintf("manifest of %d bytes exceeds the limit of %d bytes", len(body), s.opts.MaxManifestSize)}
	}
	var tags []string
	alg := digest.SHA256
	var want digest.Digest
	if IsDigestRef(reference) {
		d, err := ParseDigest(reference)
		if err != nil {
			return res, err
		}
		want, alg = d, d.Algorithm()
	} else if !ValidTag(reference) {
		return res, newError(CodeManifestInvalid, "invalid tag %q: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", reference)
	} else {
		tags = append(tags, reference)
	}
	for _, t := range extraTags {
		if !ValidTag(t) {
			return res, newError(CodeManifestInvalid, "invalid tag %q: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", t)
		}
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	d := alg.FromBytes(body)
	if want != "" && d != want {
		return res, newError(CodeDigestInvalid, "manifest has digest %s, not %s", d, want)
	}
	pm, err := parseManifest(body, contentType)
	if err != nil {
		return res, err
	}
	// Bytes first, durably; the metadata transaction then makes the manifest visible. The
	// digest's lock keeps the collector from removing the bytes in between.
	unlock, err := s.lockDigest(ctx, d)
	if err != nil {
		return res, err
	}
	defer unlock()
	if err := s.storeBytes(ctx, d, body); err != nil {
		return res, err
	}
	rec := ManifestRecord{Repo: repo, Digest: d, MediaType: pm.MediaType, Size: int64(len(body)),
		ArtifactType: pm.ArtifactType, Subject: pm.Subject}
	err = s.meta.PutManifest(ctx, rec, pm.Refs, tags, s.now())
	var missing *MissingError
	if errors.As(err, &missing) {
		var list []string
		for _, m := range missing.Missing {
			list = append(list, m.Digest.String())
		}
		what := "blob"
		if missing.Missing[0].Manifest {
			what = "manifest"
		}
		return res, &Error{Code: CodeManifestBlobUnknown, Message: fmt.Sprintf("manifest references %s %s, which is not in repository %s: push it first", what, missing.Missing[0].Digest, repo),
			Detail: map[string]any{"missing": list}}
	}
	var mismatch *MismatchError
	if errors.As(err, &mismatch) {
		m := mismatch.Mismatched[0]
		what := "blob"
		if m.Manifest {
			what = "manifest"
		}
		var detail []map[string]any
		for _, m := range mismatch.Mismatched {
			detail = append(detail, map[string]any{"field": m.Field, "digest": m.Digest.String(), "size": m.Size, "storedSize": m.Stored})
		}
		return res, &Error{Code: CodeManifestInvalid, Message: fmt.Sprintf("manifest %s declares %s %s with %d bytes, but it has %d bytes in repository %s: fix the descriptor's size",
			m.Field, what, m.Digest, m.Size, m.Stored, repo), Detail: map[string]any{"sizeMismatch": detail}}
	}
	if err != nil {
		return res, asRegistryError(err)
	}
	return ManifestResult{Digest: d, Subject: pm.Subject, Tags: tags}, nil
}

// storeBytes makes small content (a manifest) durable at its digest's path. The caller
// holds the digest's lock.
func (s *Service) storeBytes(ctx context.Context, d digest.Digest, body []byte) error {
	if info, err := s.driver.Stat(ctx, blobPath(d)); err == nil && info.Size == int64(len(body)) {
		return nil
	}
	path := uploadPath(newID())
	w, err := s.driver.Writer(ctx, path)
	if err != nil {
		return asRegistryError(fmt.Errorf("store manifest: %w", err))
	}
	if _, err := w.Write(body); err != nil {
		w.Cancel(ctx)
		return asRegistryError(fmt.Errorf("store manifest: %w", err))
	}
	if err := s.commitAt(ctx, w, path, blobPath(d)); err != nil {
		w.Cancel(ctx)
		return asRegistryError(fmt.Errorf("store manifest: %w", err))
	}
	return nil
}

// resolve turns a reference into a manifest digest.
func (s *Service) resolve(ctx context.Context, repo, reference string) (digest.Digest, error) {
	if err := checkName(repo); err != nil {
		return "", err
	}
	if IsDigestRef(reference) {
		return ParseDigest(reference)
	}
	if !ValidTag(reference) {
		// No manifest can be stored under an invalid tag: it is unknown, not malformed.
		return "", newError(CodeManifestUnknown, "tag %q is not in repository %s (and is not a valid tag)", reference, repo)
	}
	d, err := s.meta.Tag(ctx, repo, reference)
	if errors.Is(err, ErrNotFound) {
		return "", newError(CodeManifestUnknown, "tag %s is not in repository %s", reference, repo)
	}
	return d, asRegistryError(err)
}

// StatManifest describes the manifest at reference.
func (s *Service) StatManifest(ctx context.Context, repo, reference string) (ManifestRecord, error) {
	d, err := s.resolve(ctx, repo, reference)
	if err != nil {
		return ManifestRecord{}, err
	}
	rec, err := s.meta.Manifest(ctx, repo, d)
	if errors.Is(err, ErrNotFound) {
		return rec, newError(CodeManifestUnknown, "manifest %s is not in repository %s", reference, repo)
	}
	return rec, asRegistryError(err)
}

// GetManifest returns the manifest at reference with its bytes.
func (s *Service) GetManifest(ctx context.Context, repo, reference string) (ManifestRecord, []byte, error) {
	rec, err := s.StatManifest(ctx, repo, reference)
	if err != nil {
		return rec, nil, err
	}
	r, err := s.driver.Reader(ctx, blobPath(rec.Digest), 0)
	if err != nil {
		return rec, nil, asRegistryError(fmt.Errorf("read manifest %s: %w", rec.Digest, err))
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, rec.Size+1)); err != nil {
		return rec, nil, asRegistryError(fmt.Errorf("read manifest %s: %w", rec.Digest, err))
	}
	if int64(buf.Len()) != rec.Size {
		return rec, nil, fmt.Errorf("manifest %s: stored bytes have the wrong size", rec.Digest)
	}
	// Manifests are small and read whole: never serve under a digest bytes that do not have
	// it (another manifest's file copied over this one would roll a tag back).
	if !rec.Digest.Algorithm().Available() || rec.Digest.Algorithm().FromBytes(buf.Bytes()) != rec.Digest {
		return rec, nil, fmt.Errorf("manifest %s: stored bytes do not match the digest (the blob store was altered)", rec.Digest)
	}
	return rec, buf.Bytes(), nil
}

// DeleteManifest deletes a manifest by digest (with its tags), or a tag alone. Deleting by
// digest is refused (DENIED, ErrReferenced) while an index of repo lists the manifest.
func (s *Service) DeleteManifest(ctx context.Context, repo, reference string) error {
	if err := checkName(repo); err != nil {
		return err
	}
	if !IsDigestRef(reference) {
		if !ValidTag(reference) {
			return newError(CodeManifestUnknown, "tag %q is not in repository %s (and is not a valid tag)", reference, repo)
		}
		ok, err := s.meta.DeleteTag(ctx, repo, reference)
		if err != nil {
			return asRegistryError(err)
		}
		if !ok {
			return newError(CodeManifestUnknown, "tag %s is not in repository %s", reference, repo)
		}
		return nil
	}
	d, err := ParseDigest(reference)
	if err != nil {
		return err
	}
	ok, err := s.meta.DeleteManifest(ctx, repo, d)
	if err != nil {
		return referencedError(err, "manifest", d, repo, "index")
	}
	if !ok {
		return newError(CodeManifestUnknown, "manifest %s is not in repository %s", d, repo)
	}
	return nil
}

// referencedError explains a delete refused because manifests of repo still need the
// content (what d), or passes any other error on.
func referencedError(err error, what string, d digest.Digest, repo, referrer string) error {
	var ref *ReferencedError
	if !errors.As(err, &ref) {
		return asRegistryError(err)
	}
	by := make([]string, len(ref.By))
	for i, m := range ref.By {
		by[i] = m.String()
	}
	return &Error{Code: CodeDenied, cause: ErrReferenced,
		Message: fmt.Sprintf("%s %s is still referenced by %s %s in repository %s: delete the %s first, so that no tagged image is left unpullable",
			what, d, referrer, by[0], repo, referrer),
		Detail: map[string]any{"referencedBy": by}}
}
