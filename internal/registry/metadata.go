package registry

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned (wrapped) by Metadata when a row does not exist.
var ErrNotFound = errors.New("not found")

// BlobInfo describes a blob as a repository sees it.
type BlobInfo struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Touched is when the blob was last linked to a repository (upload, mount, check).
	Touched time.Time `json:"touched"`
}

// ManifestRecord is a stored manifest's metadata (its bytes live in the blob store).
type ManifestRecord struct {
	Repo         string
	Digest       digest.Digest
	MediaType    string
	Size         int64
	ArtifactType string
	Subject      digest.Digest // "" if none
	Created      time.Time
}

// Reference is something a manifest needs present in its repository.
type Reference struct {
	Digest digest.Digest
	// Manifest: a child manifest of an index (else a blob: config or layer).
	Manifest bool
	// Size is the size the manifest's descriptor declares; the stored content must have it.
	Size int64
	// Field names the descriptor in the manifest ("config", "layers[2]", "manifests[0]").
	Field string
}

// MissingError lists the references a manifest needs that the repository lacks.
type MissingError struct{ Missing []Reference }

func (e *MissingError) Error() string { return "manifest references unknown content" }

// ReferencedError is a delete refused because manifests of the repository still need the
// content (an index lists the manifest, a manifest references the blob).
type ReferencedError struct {
	// By are (some of) the referring manifests, sorted.
	By []digest.Digest
}

func (e *ReferencedError) Error() string {
	return "content is referenced by manifests of its repository"
}

// SizeMismatch is a reference whose declared size is not the stored content's.
type SizeMismatch struct {
	Reference
	Stored int64
}

// MismatchError lists the references whose declared size differs from the stored content.
type MismatchError struct{ Mismatched []SizeMismatch }

func (e *MismatchError) Error() string {
	return "manifest declares sizes that differ from the stored content"
}

// Upload is an upload session.
type Upload struct {
	ID     string
	Repo   string
	Offset int64 // bytes received
	// No hash state is stored: it would hold plaintext (see runningHashes).
	Created time.Time
	Updated time.Time
}

// TagInfo is one tag.
type TagInfo struct {
	Name    string        `json:"name"`
	Digest  digest.Digest `json:"digest"`
	Updated time.Time     `json:"updated"`
}

// RepositoryInfo summarises a repository.
type RepositoryInfo struct {
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
	ManifestCount int       `json:"manifestCount"`
	TagCount      int       `json:"tagCount"`
	BlobCount     int       `json:"blobCount"`
	// Size is the sum of the sizes of the blobs linked to the repository.
	Size int64 `json:"size"`
}

// Metadata is the registry's metadata store: repositories, blob links, manifests, tags,
// referrers and upload sessions. The SQL implementation (SQLite now, PostgreSQL later)
// keeps each method one transaction, so a crash leaves every method's change whole or
// absent.
type Metadata interface {
	// RepoBlob returns the blob linked to repo (ErrNotFound if not linked).
	RepoBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error)
	// ReposWithBlob lists the repositories d is linked to.
	ReposWithBlob(ctx context.Context, d digest.Digest) ([]string, error)
	// LinkBlob records the blob (creating it if new) and links it to repo (creating the
	// repository if new), refreshing both touch times.
	LinkBlob(ctx context.Context, repo string, b BlobInfo, now time.Time) error
	// CompleteUpload links the blob an upload produced to repo (as LinkBlob) and deletes
	// the upload session, in one transaction.
	CompleteUpload(ctx context.Context, uploadID, repo string, b BlobInfo, now time.Time) error
	// UnlinkBlob removes the link of d from repo; false if there was none. It fails with
	// *ReferencedError, removing nothing, while a manifest of repo references d.
	UnlinkBlob(ctx context.Context, repo string, d digest.Digest) (bool, error)

	// PutManifest records a manifest whose bytes are durable in the blob store, its
	// references and its tags (if any), in one transaction. It fails with *MissingError if
	// a reference is absent from the repository, and with *MismatchError if one is present
	// with another size than its descriptor declares.
	PutManifest(ctx context.Context, m ManifestRecord, refs []Reference, tags []string, now time.Time) error
	Manifest(ctx context.Context, repo string, d digest.Digest) (ManifestRecord, error)
	Tag(ctx context.Context, repo, tag string) (digest.Digest, error)
	// DeleteManifest removes the manifest, its references and every tag pointing to it. It
	// fails with *ReferencedError, removing nothing, while an index of repo lists it.
	DeleteManifest(ctx context.Context, repo string, d digest.Digest) (bool, error)
	DeleteTag(ctx context.Context, repo, tag string) (bool, error)
	// Tags lists tag names after last in lexical order, at most n (n < 0: all).
	Tags(ctx context.Context, repo, last string, n int) ([]string, error)
	TagDetails(ctx context.Context, repo string) ([]TagInfo, error)
	Repositories(ctx context.Context, last string, n int) ([]string, error)
	RepositoryInfo(ctx context.Context, repo string) (RepositoryInfo, error)
	// RepositoryInfos summarises the repositories after last in lexical order, at most n
	// (n < 0: all), in one query: the same figures RepositoryInfo gives one by one.
	RepositoryInfos(ctx context.Context, last string, n int) ([]RepositoryInfo, error)
	RepositoryExists(ctx context.Context, repo string) (bool, error)
	// DeleteRepository removes the repository with its manifests, tags, links and upload
	// sessions, returning the sessions' ids (their bytes are the caller's to delete).
	DeleteRepository(ctx context.Context, repo string) (uploads []string, found bool, err error)
	// Referrers lists the manifests of repo whose subject is d (artifactType "" = any).
	Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]ManifestRecord, error)

	CreateUpload(ctx context.Context, u Upload) error
	Upload(ctx context.Context, id string) (Upload, error)
	UpdateUpload(ctx context.Context, u Upload) error
	DeleteUpload(ctx context.Context, id string) error
	// UploadsBefore lists sessions last updated before t.
	UploadsBefore(ctx context.Context, t time.Time) ([]Upload, error)

	// GarbageBlobs lists blobs no manifest needs, with no link touched at or after cutoff,
	// themselves last touched before cutoff.
	GarbageBlobs(ctx context.Context, cutoff time.Time) ([]BlobInfo, error)
	// DeleteBlobIfGarbage removes d's row and links if it is still garbage (checked in the
	// same transaction), reporting whether it did.
	DeleteBlobIfGarbage(ctx context.Context, d digest.Digest, cutoff time.Time) (bool, error)
	// StaleLinks counts (or with del, removes) links touched before cutoff that no manifest
	// of their repository needs.
	StaleLinks(ctx context.Context, cutoff time.Time, del bool) (int, error)
	// BlobKnown reports whether d has a row.
	BlobKnown(ctx context.Context, d digest.Digest) (bool, error)
}
