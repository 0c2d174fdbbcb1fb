// Package registry is Coffer's OCI registry (Distribution API v1.1 with referrers) as a
// service that knows nothing of HTTP: blobs, upload sessions, manifests, tags, referrers,
// repositories and garbage collection. The HTTP API lives in registry/api.
//
// Bytes (blobs, manifests and uploads in progress) go only through the blobstore.Driver it
// is given, so a sealing Driver encrypts all of them without this package knowing.
// Metadata goes through the Metadata interface (SQL: SQLite now, PostgreSQL later).
//
// Durability: a blob or manifest is acknowledged only after its bytes are committed
// (flushed and renamed into place by the driver) and its metadata transaction has
// committed; metadata never points at bytes that are not durable, and bytes without
// metadata are invisible (and collected by the garbage collector).
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Options tune a Service.
type Options struct {
	// MaxManifestSize is the largest manifest accepted, in bytes.
	MaxManifestSize int64
	// UploadExpiry is how long an idle upload session lives.
	UploadExpiry time.Duration
	// GCGrace is how long unreferenced content is kept before the garbage collector may
	// remove it: a client that checked a blob exists has this long to push its manifest.
	GCGrace time.Duration
	// Now is the clock (tests move it).
	Now func() time.Time
	Log *slog.Logger
}

// Service is the registry.
type Service struct {
	driver blobstore.Driver
	meta   Metadata
	opts   Options
	// digestLocks serialise, per digest, moving bytes into place with deleting them, so the
	// garbage collector never removes a file an upload has just put back.
	digestLocks keyedMutex
	// uploadLocks serialise requests on one upload session.
	uploadLocks keyedMutex
	// hashes are the running digests of uploads in progress.
	hashes runningHashes
	// gcMu lets one collection run at a time.
	gcMu sync.Mutex
}

// New returns a registry storing bytes in driver and metadata in meta.
func New(driver blobstore.Driver, meta Metadata, opts Options) *Service {
	if opts.MaxManifestSize <= 0 {
		opts.MaxManifestSize = 4 << 20
	}
	if opts.UploadExpiry <= 0 {
		opts.UploadExpiry = 24 * time.Hour
	}
	if opts.GCGrace <= 0 {
		opts.GCGrace = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{driver: driver, meta: meta, opts: opts}
}

// Options returns the service's options.
func (s *Service) Options() Options { return s.opts }

func (s *Service) now() time.Time { return s.opts.Now() }

// checkName validates a repository name.
func checkName(repo string) error {
	if !ValidName(repo) {
		return newError(CodeNameInvalid, "invalid repository name %q: lowercase letters, digits and separators (. _ __ -) in path components, at most %d characters", repo, MaxNameLength)
	}
	return nil
}

// asRegistryError wraps an unexpected failure (storage, database) for the caller; busy databases
// become TOOMANYREQUESTS so clients retry.
func asRegistryError(err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	if isBusy(err) {
		return &Error{Code: CodeTooManyRequests, Message: "the registry is busy: retry shortly", cause: err}
	}
	return err
}

// --- blobs ---

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

// DeleteBlob removes blob d from repo (the bytes go when no repository needs them).
func (s *Service) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	if err := checkName(repo); err != nil {
		return err
	}
	ok, err := s.meta.UnlinkBlob(ctx, repo, d)
	if err != nil {
		return asRegistryError(err)
	}
	if !ok {
		return newError(CodeBlobUnknown, "blob %s is not in repository %s", d, repo)
	}
	return nil
}

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
	unlock := s.digestLocks.lock(string(b.Digest))
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

// --- uploads ---

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

// runningHashes keeps, in memory only, the SHA-256 of each upload's bytes so far. It is
// never written down: a hash state holds the last partial block of plaintext, and no
// plaintext may reach the disk outside the (sealing) blob driver. An upload resumed in
// another process (after a restart) has no running hash and is verified by reading its
// bytes back when it is closed.
type runningHashes struct {
	mu sync.Mutex
	m  map[string]runningHash
}

type runningHash struct {
	offset int64 // bytes hashed
	h      hash.Hash
}

func (r *runningHashes) put(id string, offset int64, h hash.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]runningHash{}
	}
	r.m[id] = runningHash{offset, h}
}

// take returns the running hash of id if it covers exactly offset bytes.
func (r *runningHashes) take(id string, offset int64) hash.Hash {
	r.mu.Lock()
	defer r.mu.Unlock()
	rh, ok := r.m[id]
	delete(r.m, id)
	if !ok || rh.offset != offset {
		return nil
	}
	return rh.h
}

func (r *runningHashes) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
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
// chunk. The stored bytes must be exactly the ones recorded.
func (s *Service) openUpload(ctx context.Context, u Upload) (blobstore.Writer, error) {
	w, err := s.driver.ResumeWriter(ctx, uploadPath(u.ID))
	if errors.Is(err, blobstore.ErrNotFound) && u.Offset == 0 {
		w, err = s.driver.Writer(ctx, uploadPath(u.ID))
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

// copyHashing copies r to w, feeding h (a hash or a digest verifier; may be nil) exactly
// the bytes w accepted.
func copyHashing(w io.Writer, h io.Writer, r io.Reader) (int64, error) {
	if r == nil {
		return 0, nil
	}
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			wn, werr := w.Write(buf[:n])
			if h != nil {
				h.Write(buf[:wn])
			}
			total += int64(wn)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
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
	if err := w.Commit(ctx); err != nil {
		return fail(asRegistryError(fmt.Errorf("commit upload: %w", err)))
	}
	if got == "" {
		// No running hash of this algorithm (sha512, or an upload resumed after a
		// restart): verify by reading the bytes back.
		if err := s.verifyStored(ctx, uploadPath(id), d); err != nil {
			s.dropUpload(ctx, id)
			return BlobInfo{}, err
		}
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
	unlock := s.digestLocks.lock(string(b.Digest))
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
	if err := s.driver.Move(ctx, src, dst); err != nil {
		return asRegistryError(fmt.Errorf("store blob %s: %w", b.Digest, err))
	}
	return record()
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
	if err := w.Commit(ctx); err != nil {
		w.Cancel(ctx)
		return BlobInfo{}, asRegistryError(fmt.Errorf("commit blob: %w", err))
	}
	b := BlobInfo{Digest: d, Size: n}
	if err := s.place(ctx, repo, path, b, ""); err != nil {
		s.driver.Delete(ctx, path)
		return BlobInfo{}, err
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

// --- manifests ---

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
	unlock := s.digestLocks.lock(string(d))
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
	if err := w.Commit(ctx); err != nil {
		w.Cancel(ctx)
		return asRegistryError(fmt.Errorf("store manifest: %w", err))
	}
	if err := s.driver.Move(ctx, path, blobPath(d)); err != nil {
		s.driver.Delete(ctx, path)
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
	return rec, buf.Bytes(), nil
}

// DeleteManifest deletes a manifest by digest (with its tags), or a tag alone.
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
		return asRegistryError(err)
	}
	if !ok {
		return newError(CodeManifestUnknown, "manifest %s is not in repository %s", d, repo)
	}
	return nil
}

// --- discovery ---

// Tags lists up to n tags after last (n < 0: all); more reports whether others follow.
func (s *Service) Tags(ctx context.Context, repo, last string, n int) (tags []string, more bool, err error) {
	if err := checkName(repo); err != nil {
		return nil, false, err
	}
	exists, err := s.meta.RepositoryExists(ctx, repo)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if !exists {
		return nil, false, newError(CodeNameUnknown, "repository %s is not known", repo)
	}
	q := n
	if n >= 0 {
		q = n + 1
	}
	tags, err = s.meta.Tags(ctx, repo, last, q)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if n >= 0 && len(tags) > n {
		return tags[:n], n > 0, nil
	}
	return tags, false, nil
}

// Catalog lists up to n repositories after last (n < 0: all).
func (s *Service) Catalog(ctx context.Context, last string, n int) ([]string, bool, error) {
	q := n
	if n >= 0 {
		q = n + 1
	}
	repos, err := s.meta.Repositories(ctx, last, q)
	if err != nil {
		return nil, false, asRegistryError(err)
	}
	if n >= 0 && len(repos) > n {
		return repos[:n], n > 0, nil
	}
	return repos, false, nil
}

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

// --- repositories (management) ---

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
	return nil
}

// keyedMutex is a set of mutexes by key, created on demand and dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
