package seal

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// ErrKeyUnavailable is wrapped by KeySource errors when the key-encryption key cannot be
// used (access revoked, key disabled or deleted, vault unreachable). It matches
// blobstore.ErrAccessDenied, so the registry tells the client that access to the content is
// refused and why, not that it is missing.
var ErrKeyUnavailable error = keyUnavailable{}

type keyUnavailable struct{}

func (keyUnavailable) Error() string { return "the registry's encryption key is not accessible" }

// Is makes errors.Is(err, blobstore.ErrAccessDenied) true for a key that is unavailable.
func (keyUnavailable) Is(target error) bool { return target == blobstore.ErrAccessDenied }

// KeySource hands out registry root keys. Implementations (the keyring) refuse while the
// key-encryption key is not accessible, so a revoked key stops reads and writes.
type KeySource interface {
	// CurrentKey returns the generation and root key that new objects are sealed under.
	CurrentKey(ctx context.Context) (gen uint32, key []byte, err error)
	// Key returns the root key of generation gen.
	Key(ctx context.Context, gen uint32) ([]byte, error)
}

// Option configures a sealing driver.
type Option func(*Driver)

// WithSegmentSize sets the plaintext size of the segments new objects are written with
// (default DefaultSegmentSize).
func WithSegmentSize(n int) Option { return func(d *Driver) { d.segmentSize = n } }

// WithRand sets the source of object ids and nonces (default crypto/rand).
func WithRand(r io.Reader) Option { return func(d *Driver) { d.rand = r } }

// Driver is a blobstore.Driver that seals every object written through it before handing
// it to an inner driver, and opens it on the way back. No plaintext byte reaches the inner
// driver: not committed objects, not uploads in progress, not their resumable tails.
type Driver struct {
	inner       blobstore.Driver
	keys        KeySource
	segmentSize int
	rand        io.Reader
	batches     sync.Pool // *[]byte batch buffers for segments of segmentSize
}

// NewDriver wraps inner so that everything stored in it is sealed with keys from keys.
func NewDriver(inner blobstore.Driver, keys KeySource, opts ...Option) blobstore.Driver {
	d := &Driver{inner: inner, keys: keys, segmentSize: DefaultSegmentSize, rand: rand.Reader}
	for _, o := range opts {
		o(d)
	}
	if d.segmentSize <= 0 || d.segmentSize > MaxSegmentSize {
		d.segmentSize = DefaultSegmentSize
	}
	return d
}

// Inner is the driver that holds the sealed bytes.
func (d *Driver) Inner() blobstore.Driver { return d.inner }

func checkPath(path string) error {
	if strings.HasSuffix(path, TailSuffix) {
		return fmt.Errorf("seal: object paths ending in %q are reserved", TailSuffix)
	}
	return nil
}

// Stat reports the object's plaintext size (from its header and stored size).
func (d *Driver) Stat(ctx context.Context, path string) (blobstore.Info, error) {
	if err := checkPath(path); err != nil {
		return blobstore.Info{}, err
	}
	info, err := d.inner.Stat(ctx, path)
	if err != nil {
		return blobstore.Info{}, err
	}
	return d.plainInfo(ctx, info)
}

func (d *Driver) plainInfo(ctx context.Context, info blobstore.Info) (blobstore.Info, error) {
	r, err := d.inner.Reader(ctx, info.Path, 0)
	if err != nil {
		return blobstore.Info{}, err
	}
	defer r.Close()
	hb := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		return blobstore.Info{}, fmt.Errorf("seal %s: %w: %v", info.Path, ErrFormat, err)
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("seal %s: %w", info.Path, err)
	}
	size, err := h.PlainSize(info.Size)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("seal %s: %w", info.Path, err)
	}
	info.Size = size
	return info, nil
}

// Move moves the sealed object; its contents do not depend on its path.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := checkPath(src); err != nil {
		return err
	}
	if err := checkPath(dst); err != nil {
		return err
	}
	return d.inner.Move(ctx, src, dst)
}

// Delete removes the object and any resume state beside it.
func (d *Driver) Delete(ctx context.Context, path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := d.inner.Delete(ctx, path); err != nil {
		return err
	}
	return d.inner.Delete(ctx, path+TailSuffix)
}

// Walk lists committed objects with their plaintext sizes, hiding resume state.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	return d.inner.Walk(ctx, prefix, func(info blobstore.Info) error {
		if strings.HasSuffix(info.Path, TailSuffix) {
			return nil
		}
		pi, err := d.plainInfo(ctx, info)
		if err != nil {
			return err
		}
		return fn(pi)
	})
}
