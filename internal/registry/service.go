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
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/store"
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
	// Metrics, if set, records garbage collections.
	Metrics *Metrics
	// Lock, if set, takes a named lock every replica on the metadata store shares
	// (store.DB.Lock): the per-digest lock between pushes and the garbage collector. Unset,
	// the lock is this process's, enough for one replica.
	Lock func(ctx context.Context, name string) (unlock func(), err error)
	// OnRepositoryDeleted, if set, is called after a repository is deleted (content trust
	// deletes the repository's trust data and keys). Its error is returned to the caller.
	OnRepositoryDeleted func(ctx context.Context, repo string) error
}

// Service is the registry.
type Service struct {
	driver blobstore.Resumer
	meta   Metadata
	opts   Options
	// digestLocks serialise, per digest, moving bytes into place with deleting them, so the
	// garbage collector never removes a file an upload has just put back (lockDigest:
	// these in-process mutexes, or Options.Lock, shared by replicas).
	digestLocks keyedMutex
	// uploadLocks serialise requests on one upload session.
	uploadLocks keyedMutex
	// hashes are the running digests of uploads in progress.
	hashes runningHashes
	// gcMu lets one collection run at a time.
	gcMu sync.Mutex
}

// New returns a registry storing bytes in driver and metadata in meta. A driver that cannot
// append across requests gets uploads as chunk objects (blobstore.Resumable); one whose
// writers commit at another path (blobstore.CommitterAt) has verified uploads committed
// straight at their digest's path, with no move.
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
	return &Service{driver: blobstore.Resumable(driver), meta: meta, opts: opts}
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
	if store.IsBusy(err) {
		return &Error{Code: CodeTooManyRequests, Message: "the registry is busy: retry shortly", cause: err}
	}
	return err
}
