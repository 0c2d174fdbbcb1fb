// Package blobstore is where bytes live: the narrow seam between registry logic and storage.
//
// A Driver stores opaque objects by path. It knows nothing of digests, manifests or
// encryption: the registry verifies digests above it, and the seal package wraps a Driver in
// another Driver that encrypts every object (blobs, manifests and uploads in progress), so the
// registry's handlers never change when sealing is turned on. Drivers: filesystem (default)
// and, later, S3-compatible object storage; every driver passes the shared suite in
// blobstore/drivertest.
package blobstore

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when no object exists at a path.
var ErrNotFound = errors.New("blobstore: object not found")

// ErrAccessDenied is matched (errors.Is) by errors of a driver that holds the content but
// may not hand it out now, for example a sealing driver whose key has been revoked. The
// content is not lost; the error's message says why access is refused.
var ErrAccessDenied = errors.New("blobstore: access to stored content is refused")

// Info describes a stored object.
type Info struct {
	Path    string
	Size    int64 // logical size: the bytes a Reader returns
	ModTime time.Time
}

// Driver stores objects by slash-separated path.
type Driver interface {
	// Writer starts a new object at path. The bytes are invisible to Reader and Stat until
	// Commit; Close without Commit keeps them for ResumeWriter (an upload spanning requests).
	Writer(ctx context.Context, path string) (Writer, error)
	// ResumeWriter reopens an uncommitted object written by Writer and closed, positioned at
	// its end (Size reports what was written so far). ErrNotFound if there is none.
	ResumeWriter(ctx context.Context, path string) (Writer, error)
	// Reader returns the committed object's bytes from offset to the end.
	Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error)
	// Stat describes a committed object.
	Stat(ctx context.Context, path string) (Info, error)
	// Move atomically makes the committed object at src visible at dst (replacing dst) and
	// removes src. After Move returns, the object at dst survives a crash.
	Move(ctx context.Context, src, dst string) error
	// Delete removes the object (committed or not) at path; no error if absent.
	Delete(ctx context.Context, path string) error
	// Walk calls fn for every committed object whose path starts with prefix.
	Walk(ctx context.Context, prefix string, fn func(Info) error) error
}

// Writer writes one object.
type Writer interface {
	io.Writer
	// Size is the number of bytes written so far (including before a resume).
	Size() int64
	// Commit flushes the object to durable storage and makes it visible at its path. After
	// Commit returns, the object survives a crash.
	Commit(ctx context.Context) error
	// Cancel discards the object.
	Cancel(ctx context.Context) error
	// Close releases the writer, keeping uncommitted bytes for ResumeWriter.
	Close() error
}
