// Package blobstore is where bytes live: the narrow seam between registry logic and storage.
//
// A Driver stores opaque objects by path. It knows nothing of digests, manifests or
// encryption: the registry verifies digests above it, and the seal package wraps a Driver in
// another Driver that encrypts every object (blobs, manifests and uploads in progress), so the
// registry's handlers never change when sealing is turned on. Drivers: filesystem (default)
// and s3 (S3-compatible object storage); every driver passes the shared suite in
// blobstore/drivertest.
//
// The Driver contract is what every object store has: write an object whole, read it from an
// offset, stat, delete, list. What only some stores have is an optional capability, found by
// a type assertion (in the style of go-containerregistry's optional interfaces):
//
//   - Resumer: an uncommitted object survives Close and can be appended to later (an upload
//     spanning requests). A filesystem has it; S3 has not (multipart uploads cannot be
//     appended to across processes without bookkeeping, and parts must be at least 5 MiB).
//     Resumable gives any driver the capability by storing each stretch of an upload as a
//     chunk object and composing the chunks on Commit.
//   - Mover: an atomic rename. Without it, Move is a copy and a delete (as distribution says
//     of its own drivers), and a caller that can avoid the move should: see CommitterAt.
//   - Copier: a copy inside the store (S3 CopyObject), used by Copy and Move.
//   - CommitterAt (of a Writer): commit the object at another path than the one it was
//     opened at, so that an upload lands at its digest's path with no move at all.
//   - Sizer (of a reader): the object's total size, learnt from the one request that opened
//     the reader, so a ranged read needs no Stat beside it.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
	// Commit. Close without Commit discards them, unless the driver is a Resumer.
	Writer(ctx context.Context, path string) (Writer, error)
	// Reader returns the committed object's bytes from offset to the end, in one request
	// to the store. The reader may implement Sizer.
	Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error)
	// Stat describes a committed object.
	Stat(ctx context.Context, path string) (Info, error)
	// Delete removes the object (committed or not) at path; no error if absent.
	Delete(ctx context.Context, path string) error
	// Walk calls fn for every committed object whose path starts with prefix.
	Walk(ctx context.Context, prefix string, fn func(Info) error) error
}

// Resumer is a Driver whose uncommitted objects survive Close, for uploads that span
// requests (and processes: the state is in the store, not in memory).
type Resumer interface {
	Driver
	// ResumeWriter reopens an uncommitted object written by Writer and closed, positioned
	// at its end (Size reports what was written so far). ErrNotFound if there is none.
	ResumeWriter(ctx context.Context, path string) (Writer, error)
}

// Mover is a Driver that moves objects cheaply.
type Mover interface {
	Driver
	// Move makes the committed object at src visible at dst (replacing dst; readers see the
	// old object or the new one whole, never a mix) and removes src. After Move returns,
	// the object at dst survives a crash. ErrNotFound if src has no committed object.
	Move(ctx context.Context, src, dst string) error
}

// Copier is a Driver that copies objects inside the store, without the bytes passing
// through the caller.
type Copier interface {
	Driver
	// Copy makes a copy of the committed object at src visible at dst (replacing dst).
	// ErrNotFound if src has no committed object.
	Copy(ctx context.Context, src, dst string) error
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
	// Close releases the writer. A Resumer's writer keeps the uncommitted bytes for
	// ResumeWriter, and does so even when the context the writer was opened with is done
	// (a client that disconnected keeps what it sent); any other writer discards them.
	Close() error
}

// CommitterAt is a Writer that can commit its object at another path than the one it was
// opened at: the upload path is then never a committed object, and nothing has to move.
type CommitterAt interface {
	// CommitAt is Commit, with the object made visible at path instead. The uncommitted
	// bytes at the writer's own path are gone afterwards.
	CommitAt(ctx context.Context, path string) error
}

// Sizer is a reader that knows the total size of the object it reads (not of what is left
// from its offset).
type Sizer interface {
	ObjectSize() int64
}

// Move moves the committed object at src to dst: d's own Move if it is a Mover, otherwise
// a Copy and a Delete. A copy is not atomic with respect to src: a crash between the two
// leaves both, and dst is complete.
func Move(ctx context.Context, d Driver, src, dst string) error {
	if m, ok := d.(Mover); ok {
		return m.Move(ctx, src, dst)
	}
	if src == dst {
		_, err := d.Stat(ctx, src)
		return err
	}
	if err := Copy(ctx, d, src, dst); err != nil {
		return err
	}
	if err := d.Delete(ctx, src); err != nil {
		return fmt.Errorf("blobstore: move %s to %s: remove the source after copying: %w", src, dst, err)
	}
	return nil
}

// Copy copies the committed object at src to dst: inside the store if d is a Copier,
// otherwise through a Reader and a Writer.
func Copy(ctx context.Context, d Driver, src, dst string) error {
	if c, ok := d.(Copier); ok {
		return c.Copy(ctx, src, dst)
	}
	return streamCopy(ctx, d, src, dst)
}

func streamCopy(ctx context.Context, d Driver, src, dst string) error {
	r, err := d.Reader(ctx, src, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := d.Writer(ctx, dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return fmt.Errorf("blobstore: copy %s to %s: %w", src, dst, err)
	}
	if err := w.Commit(ctx); err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return fmt.Errorf("blobstore: copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// Composer is a Driver that concatenates committed objects into a new one inside the store
// (S3: a multipart upload of server-side part copies).
type Composer interface {
	Driver
	// Compose makes the concatenation of srcs (committed objects, in order, with their
	// sizes) visible at dst. ErrNotComposable if the store cannot compose these objects;
	// the caller then copies the bytes itself.
	Compose(ctx context.Context, dst string, srcs []Info) error
}

// ErrNotComposable is returned by Compose for objects the store cannot concatenate.
var ErrNotComposable = errors.New("blobstore: these objects cannot be composed in the store")

// CheckPath validates an object path as every driver accepts it: slash-separated,
// relative, with no empty, "." or ".." parts, no NUL and no backslash.
func CheckPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("blobstore: invalid object path %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, 0) || strings.ContainsRune(part, '\\') {
			return fmt.Errorf("blobstore: invalid object path %q", p)
		}
	}
	return nil
}
