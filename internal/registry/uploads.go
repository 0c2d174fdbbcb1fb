package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
)

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartUpload opens an upload session in repo.
func (s *Service) StartUpload(ctx context.Context, repo string) (Upload, error) {
	if err := checkName(repo); err != nil {
		return Upload{}, err
	}
	now := s.now()
	u := Upload{ID: newID(), Repo: repo, Created: now, Updated: now}
	// The bytes' object is created by the first chunk (openUpload).
	if err := s.meta.CreateUpload(ctx, u); err != nil {
		return u, asRegistryError(err)
	}
	s.hashes.put(u.ID, 0, sha256.New())
	return u, nil
}

// session loads an upload of repo that has not expired.
func (s *Service) session(ctx context.Context, repo, id string) (Upload, error) {
	if err := checkName(repo); err != nil {
		return Upload{}, err
	}
	u, err := s.meta.Upload(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && u.Repo != repo) {
		return u, newError(CodeBlobUploadUnknown, "upload %s is unknown to repository %s", id, repo)
	}
	if err != nil {
		return u, asRegistryError(err)
	}
	if s.now().Sub(u.Updated) > s.opts.UploadExpiry {
		s.dropUpload(ctx, u.ID)
		return u, newError(CodeBlobUploadUnknown, "upload %s expired after %s without activity", id, s.opts.UploadExpiry)
	}
	return u, nil
}

func (s *Service) dropUpload(ctx context.Context, id string) {
	s.hashes.drop(id)
	if err := s.driver.Delete(ctx, uploadPath(id)); err != nil {
		s.opts.Log.Warn("delete upload bytes", "upload", id, "err", err)
	}
	if err := s.meta.DeleteUpload(ctx, id); err != nil {
		s.opts.Log.Warn("delete upload", "upload", id, "err", err)
	}
}

// UploadStatus returns the session (its Offset is the bytes received so far).
func (s *Service) UploadStatus(ctx context.Context, repo, id string) (Upload, error) {
	return s.session(ctx, repo, id)
}

// AppendUpload appends r's bytes to the session. start is the chunk's declared first
// byte (-1 when the client did not say); it must equal the bytes received so far. If the
// connection drops midway, the bytes that arrived are kept and the session's Offset says
// how far it got, so the client can resume from there.
func (s *Service) AppendUpload(ctx context.Context, repo, id string, start int64, r io.Reader) (Upload, error) {
	unlock := s.uploadLocks.lock(id)
	defer unlock()
	u, err := s.session(ctx, repo, id)
	if err != nil {
		return u, err
	}
	if err := checkStart(u, start); err != nil {
		return u, err
	}
	w, err := s.openUpload(ctx, u)
	if err != nil {
		return u, err
	}
	u, copyErr := s.appendTo(w, u, r)
	if cerr := w.Close(); cerr != nil && copyErr == nil {
		copyErr = cerr
	}
	// Record progress even when the body broke off (and the request's context with it),
	// so the client may resume.
	if err := s.meta.UpdateUpload(context.WithoutCancel(ctx), u); err != nil {
		return u, asRegistryError(err)
	}
	if copyErr != nil {
		return u, fmt.Errorf("upload %s interrupted after %d bytes: %w", u.ID, u.Offset, copyErr)
	}
	return u, nil
}

func checkStart(u Upload, start int64) error {
	if start >= 0 && start != u.Offset {
		return &Error{Code: CodeBlobUploadInvalid, cause: ErrRangeNotSatisfiable,
			Message: fmt.Sprintf("chunk starts at %d but the upload has %d bytes: resume from %d", start, u.Offset, u.Offset)}
	}
	return nil
}

// openUpload opens the upload's bytes for appending, creating the object on the first
// chunk. The stored bytes must be exactly the ones recorded: with none recorded the object
// is created afresh (a monolithic PUT, the usual small push, never looks for earlier bytes;
// any that a broken-off first chunk left were never acknowledged).
func (s *Service) openUpload(ctx context.Context, u Upload) (blobstore.Writer, error) {
	var w blobstore.Writer
	var err error
	if u.Offset == 0 {
		w, err = s.driver.Writer(ctx, uploadPath(u.ID))
	} else {
		w, err = s.driver.ResumeWriter(ctx, uploadPath(u.ID))
	}
	if errors.Is(err, blobstore.ErrNotFound) {
		s.dropUpload(ctx, u.ID)
		return nil, newError(CodeBlobUploadUnknown, "upload %s lost its data: start again", u.ID)
	}
	if err != nil {
		return nil, asRegistryError(fmt.Errorf("open upload: %w", err))
	}
	if w.Size() != u.Offset {
		// Bytes after the last acknowledged chunk cannot be trusted (e.g. after a crash).
		stored := w.Size()
		w.Close()
		s.dropUpload(ctx, u.ID)
		return nil, newError(CodeBlobUploadUnknown, "upload %s was interrupted inconsistently (%d stored, %d recorded): start again", u.ID, stored, u.Offset)
	}
	return w, nil
}

// appendTo copies r to the upload's writer, keeping the running hash in step.
func (s *Service) appendTo(w blobstore.Writer, u Upload, r io.Reader) (Upload, error) {
	h := s.hashes.take(u.ID, u.Offset) // nil: verified by reading back at the end
	n, err := copyHashing(w, h, r)
	u.Offset += n
	u.Updated = s.now()
	if h != nil {
		s.hashes.put(u.ID, u.Offset, h)
	}
	return u, err
}

// FinishUpload appends a last chunk (r may be nil), verifies the whole upload against d,
// makes the bytes durable under the digest and links the blob to repo.
func (s *Service) FinishUpload(ctx context.Context, repo, id string, start int64, r io.Reader, d digest.Digest) (BlobInfo, error) {
	unlock := s.uploadLocks.lock(id)
	defer unlock()
	u, err := s.session(ctx, repo, id)
	if err != nil {
		return BlobInfo{}, err
	}
	if r != nil {
		if err := checkStart(u, start); err != nil {
			return BlobInfo{}, err
		}
	}
	w, err := s.openUpload(ctx, u)
	if err != nil {
		return BlobInfo{}, err
	}
	// Until the bytes are committed, a failure keeps them for a retry: close the writer
	// and record how far the upload got.
	fail := func(err error) (BlobInfo, error) {
		w.Close()
		if r != nil {
			s.meta.UpdateUpload(context.WithoutCancel(ctx), u)
		}
		return BlobInfo{}, err
	}
	if r != nil {
		var copyErr error
		if u, copyErr = s.appendTo(w, u, r); copyErr != nil {
			return fail(fmt.Errorf("upload %s interrupted after %d bytes: %w", id, u.Offset, copyErr))
		}
	}
	var got digest.Digest
	if h := s.hashes.take(id, u.Offset); h != nil {
		if d.Algorithm() == digest.SHA256 {
			got = digest.NewDigest(digest.SHA256, h)
		}
		s.hashes.put(id, u.Offset, h) // kept until the upload ends, for a retried PUT
	}
	if got != "" && got != d {
		return fail(newError(CodeDigestInvalid, "uploaded content has digest %s, not %s", got, d))
	}
	if got != "" {
		// Verified already: commit straight at the digest's path.
		b := BlobInfo{Digest: d, Size: u.Offset}
		if committed, err := s.placeWriter(ctx, repo, w, uploadPath(id), b, id); err != nil {
			if committed {
				return BlobInfo{}, err
			}
			return fail(asRegistryError(fmt.Errorf("commit upload: %w", err)))
		}
		s.hashes.drop(id)
		return b, nil
	}
	if err := w.Commit(ctx); err != nil {
		return fail(asRegistryError(fmt.Errorf("commit upload: %w", err)))
	}
	// No running hash of this algorithm (sha512, or an upload resumed after a restart):
	// verify by reading the bytes back, then move them into place.
	if err := s.verifyStored(ctx, uploadPath(id), d); err != nil {
		s.dropUpload(ctx, id)
		return BlobInfo{}, err
	}
	s.hashes.drop(id)
	b := BlobInfo{Digest: d, Size: u.Offset}
	if err := s.place(ctx, repo, uploadPath(id), b, id); err != nil {
		return BlobInfo{}, err
	}
	return b, nil
}

func (s *Service) verifyStored(ctx context.Context, path string, d digest.Digest) error {
	rd, err := s.driver.Reader(ctx, path, 0)
	if err != nil {
		return asRegistryError(fmt.Errorf("verify upload: %w", err))
	}
	defer rd.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, rd); err != nil {
		return asRegistryError(fmt.Errorf("verify upload: %w", err))
	}
	if !v.Verified() {
		return newError(CodeDigestInvalid, "uploaded content does not match digest %s", d)
	}
	return nil
}

// place moves committed bytes at src to the blob's path and links the blob to repo
// (ending upload session uploadID, if not ""). If the blob is already stored, src is
// dropped instead.
func (s *Service) place(ctx context.Context, repo, src string, b BlobInfo, uploadID string) error {
	unlock, err := s.lockDigest(ctx, b.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	dst := blobPath(b.Digest)
	known, err := s.meta.BlobKnown(ctx, b.Digest)
	if err != nil {
		return asRegistryError(err)
	}
	record := func() error {
		if uploadID != "" {
			return asRegistryError(s.meta.CompleteUpload(ctx, uploadID, repo, b, s.now()))
		}
		return asRegistryError(s.meta.LinkBlob(ctx, repo, b, s.now()))
	}
	if known {
		if _, err := s.driver.Stat(ctx, dst); err == nil {
			s.driver.Delete(ctx, src)
			return record()
		}
	}
	if err := blobstore.Move(ctx, s.driver, src, dst); err != nil {
		return asRegistryError(fmt.Errorf("store blob %s: %w", b.Digest, err))
	}
	return record()
}

// placeWriter commits the verified bytes of w (opened at src) at the blob's path and links
// the blob to repo, like place; the commit happens under the digest's lock, so the garbage
// collector never removes what it has just put there. If the blob is stored already, w's
// bytes are discarded instead. committed tells whether an error came after the bytes were
// in place (the upload is over) or before (its bytes are kept for a retry where the
// driver allows).
func (s *Service) placeWriter(ctx context.Context, repo string, w blobstore.Writer, src string, b BlobInfo, uploadID string) (committed bool, err error) {
	unlock, err := s.lockDigest(ctx, b.Digest)
	if err != nil {
		return false, err
	}
	defer unlock()
	dst := blobPath(b.Digest)
	known, err := s.meta.BlobKnown(ctx, b.Digest)
	if err != nil {
		return false, asRegistryError(err)
	}
	stored := false
	if known {
		_, serr := s.driver.Stat(ctx, dst)
		stored = serr == nil
	}
	if stored {
		w.Cancel(ctx)
	} else if err := s.commitAt(ctx, w, src, dst); err != nil {
		return false, err
	}
	if uploadID != "" {
		return true, asRegistryError(s.meta.CompleteUpload(ctx, uploadID, repo, b, s.now()))
	}
	return true, asRegistryError(s.meta.LinkBlob(ctx, repo, b, s.now()))
}

// commitAt makes the verified bytes of w, opened at src, the object at dst: committed there
// directly when the driver's writers can (no move), otherwise committed at src and moved.
// The object is bound to dst (see bindTo). On failure nothing is visible at dst, and w is
// left to the caller (to Cancel, or to Close so that an upload may be retried).
func (s *Service) commitAt(ctx context.Context, w blobstore.Writer, src, dst string) error {
	if err := bindTo(w, dst); err != nil {
		return err
	}
	if ca, ok := w.(blobstore.CommitterAt); ok {
		return ca.CommitAt(ctx, dst)
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	if err := blobstore.Move(ctx, s.driver, src, dst); err != nil {
		s.driver.Delete(ctx, src)
		return err
	}
	return nil
}

// CancelUpload abandons the session.
func (s *Service) CancelUpload(ctx context.Context, repo, id string) error {
	unlock := s.uploadLocks.lock(id)
	defer unlock()
	if _, err := s.session(ctx, repo, id); err != nil {
		return err
	}
	s.dropUpload(ctx, id)
	return nil
}

// PutBlob stores a whole blob in one request (monolithic upload), verified against d.
func (s *Service) PutBlob(ctx context.Context, repo string, d digest.Digest, r io.Reader) (BlobInfo, error) {
	if err := checkName(repo); err != nil {
		return BlobInfo{}, err
	}
	path := uploadPath(newID())
	w, err := s.driver.Writer(ctx, path)
	if err != nil {
		return BlobInfo{}, asRegistryError(fmt.Errorf("store blob: %w", err))
	}
	v := d.Verifier()
	n, err := copyHashing(w, v, r)
	if err != nil {
		w.Cancel(ctx)
		return BlobInfo{}, fmt.Errorf("blob upload interrupted after %d bytes: %w", n, err)
	}
	if !v.Verified() {
		w.Cancel(ctx)
		return BlobInfo{}, newError(CodeDigestInvalid, "uploaded content does not match digest %s", d)
	}
	b := BlobInfo{Digest: d, Size: n}
	if committed, err := s.placeWriter(ctx, repo, w, path, b, ""); err != nil {
		if committed {
			return BlobInfo{}, err
		}
		w.Cancel(ctx)
		s.driver.Delete(ctx, path)
		return BlobInfo{}, asRegistryError(fmt.Errorf("commit blob: %w", err))
	}
	return b, nil
}

// ExpireUploads removes sessions idle for longer than the upload expiry.
func (s *Service) ExpireUploads(ctx context.Context) (int, error) {
	old, err := s.meta.UploadsBefore(ctx, s.now().Add(-s.opts.UploadExpiry))
	if err != nil {
		return 0, err
	}
	for _, u := range old {
		unlock := s.uploadLocks.lock(u.ID)
		s.dropUpload(ctx, u.ID)
		unlock()
	}
	return len(old), nil
}
