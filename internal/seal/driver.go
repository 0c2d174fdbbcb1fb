package seal

import (
	"context"
	"crypto/rand"
	"errors"
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

// RefuseVersion1 makes the driver refuse to read objects of format version 1, which are
// bound to no name (so one could be put in another's place), once a store holds none: see
// Upgrade.
func RefuseVersion1() Option { return func(d *Driver) { d.refuseV1 = true } }

// Counter is told how many plaintext bytes were sealed or opened (metrics). It is called
// once per batch of segments, from the driver's pipeline goroutines, so it must be cheap
// and safe for concurrent use (a Prometheus counter's Add is).
type Counter func(n int)

// WithCounters reports the plaintext bytes sealed (written) and opened (read and
// authenticated). Either may be nil.
func WithCounters(sealed, opened Counter) Option {
	return func(d *Driver) { d.sealedBytes, d.openedBytes = sealed, opened }
}

// Driver is a blobstore.Driver that seals every object written through it before handing
// it to an inner driver, and opens it on the way back. No plaintext byte reaches the inner
// driver: not committed objects, not uploads in progress, not their resumable tails.
type Driver struct {
	inner       blobstore.Resumer
	raw         blobstore.Driver // inner before Resumable: for whole objects (resume state)
	keys        KeySource
	segmentSize int
	rand        io.Reader
	refuseV1    bool
	sealedBytes Counter   // plaintext bytes sealed, if set
	openedBytes Counter   // plaintext bytes opened, if set
	batches     sync.Pool // *[]byte batch buffers for segments of segmentSize
	opened      openedCache
}

// NewDriver wraps inner so that everything stored in it is sealed with keys from keys. An
// inner driver that cannot append to an object across requests (S3) gets uploads stored as
// chunk objects (blobstore.Resumable): the chunks hold sealed segments, like everything else.
func NewDriver(inner blobstore.Driver, keys KeySource, opts ...Option) *Driver {
	d := &Driver{inner: blobstore.Resumable(inner), raw: inner, keys: keys, segmentSize: DefaultSegmentSize, rand: rand.Reader}
	for _, o := range opts {
		o(d)
	}
	if d.segmentSize <= 0 || d.segmentSize > MaxSegmentSize {
		d.segmentSize = DefaultSegmentSize
	}
	return d
}

// Inner is the driver that holds the sealed bytes.
func (d *Driver) Inner() blobstore.Resumer { return d.inner }

var (
	_ blobstore.Resumer     = (*Driver)(nil)
	_ blobstore.Mover       = (*Driver)(nil)
	_ blobstore.CommitterAt = atWriter{}
)

func checkPath(path string) error {
	for _, suffix := range []string{TailSuffix, upgradeSuffix} {
		if strings.HasSuffix(path, suffix) {
			return fmt.Errorf("seal: object paths ending in %q are reserved", suffix)
		}
	}
	return nil
}

// reserved tells whether an inner path is the driver's own (resume state, an upgrade's
// copy), never shown as an object.
func reserved(path string) bool {
	return strings.HasSuffix(path, TailSuffix) || strings.HasSuffix(path, upgradeSuffix)
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

// Move moves the sealed object. An object bound to dst already (its writer's Bind named
// dst), or of version 1 (bound to no name), is moved as it is (a rename, or a copy and a
// delete where the inner driver cannot rename); one bound to src is re-sealed for dst, a
// copy, and src removed. One that authenticates as neither is refused.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := checkPath(src); err != nil {
		return err
	}
	if err := checkPath(dst); err != nil {
		return err
	}
	d.opened.drop(src, dst)
	bound, err := d.boundTo(ctx, src, dst, src)
	if err != nil {
		return fmt.Errorf("seal: move %s to %s: %w", src, dst, err)
	}
	if bound == src && src != dst {
		return d.reseal(ctx, src, dst)
	}
	return blobstore.Move(ctx, d.inner, src, dst)
}

// boundTo tells which of names the committed object at path is bound to: the first its
// final segment authenticates under, or "" for an object of version 1, which binds none.
// ErrAuth if it is bound to none of them.
func (d *Driver) boundTo(ctx context.Context, path string, names ...string) (string, error) {
	info, err := d.inner.Stat(ctx, path)
	if err != nil {
		return "", err
	}
	r, err := d.inner.Reader(ctx, path, 0)
	if err != nil {
		return "", err
	}
	hb := make([]byte, HeaderSize)
	_, err = io.ReadFull(r, hb)
	r.Close()
	if err != nil {
		return "", fmt.Errorf("seal %s: %w: %v", path, ErrFormat, err)
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", path, err)
	}
	if !h.Bound() {
		return "", nil
	}
	root, err := d.keys.Key(ctx, h.Generation)
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", path, err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		c.name = []byte(name)
		if err = d.checkFinal(ctx, path, h, c, info.Size); err == nil {
			return name, nil
		}
	}
	return "", err
}

// reseal copies the object at src, bound to src, into a new object at dst bound to dst,
// then removes src.
func (d *Driver) reseal(ctx context.Context, src, dst string) error {
	r, err := d.reader(ctx, src, src, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := d.writer(ctx, dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Cancel(ctx)
		return fmt.Errorf("seal: move %s to %s: %w", src, dst, err)
	}
	if err := w.Commit(ctx); err != nil {
		w.Cancel(ctx)
		return fmt.Errorf("seal: move %s to %s: %w", src, dst, err)
	}
	return d.inner.Delete(ctx, src)
}

// Delete removes the object and any resume state beside it.
func (d *Driver) Delete(ctx context.Context, path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	d.opened.drop(path)
	if err := d.inner.Delete(ctx, path); err != nil {
		return err
	}
	return d.raw.Delete(ctx, path+TailSuffix)
}

// Walk lists committed objects with their plaintext sizes, hiding resume state. An object
// deleted between the inner listing and the read of its header (another replica's garbage
// collector removing it) is left out, as a listing taken a moment later would.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	return d.inner.Walk(ctx, prefix, func(info blobstore.Info) error {
		if reserved(info.Path) {
			return nil
		}
		pi, err := d.plainInfo(ctx, info)
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(pi)
	})
}
