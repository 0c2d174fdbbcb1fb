package seal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

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

// TailSuffix names the companion object that holds an unfinished upload's last partial
// segment between Close and ResumeWriter. Paths ending in it are reserved.
const TailSuffix = ".sealtail"

// batchSegments is how many sealed segments the writer gathers before one write to the
// inner driver (fewer, larger writes: 1 MiB with the default segment size).
const batchSegments = 16

// readAheadSegments is how many stored segments a reader asks the inner driver for at once.
const readAheadSegments = 4

// maxTailRecord bounds how much of a tail object is read.
const maxTailRecord = HeaderSize + 8 + Overhead + MaxSegmentSize

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

// Writer starts a new sealed object at path.
func (d *Driver) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	gen, root, err := d.keys.CurrentKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	h := Header{Generation: gen, SegmentSize: uint32(d.segmentSize)}
	if _, err := io.ReadFull(d.rand, h.ObjectID[:]); err != nil {
		return nil, fmt.Errorf("seal %s: object id: %w", path, err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	iw, err := d.inner.Writer(ctx, path)
	if err != nil {
		return nil, err
	}
	// A stale tail from an earlier object at this path must not be resumed into this one.
	if err := d.inner.Delete(ctx, path+TailSuffix); err != nil {
		iw.Cancel(ctx)
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	if _, err := iw.Write(c.header); err != nil {
		iw.Cancel(ctx)
		return nil, fmt.Errorf("seal %s: write header: %w", path, err)
	}
	return d.newWriter(ctx, path, iw, h, c, 0, nil), nil
}

func (d *Driver) newWriter(ctx context.Context, path string, iw blobstore.Writer, h Header, c *objectCipher, index uint64, tail []byte) *writer {
	buf := make([]byte, 0, h.SegmentSize)
	buf = append(buf, tail...)
	return &writer{
		d: d, ctx: ctx, path: path, inner: iw, h: h, c: c, index: index, buf: buf,
		// The batch buffer grows with the object: small objects (manifests) stay small.
		out:   make([]byte, 0, int(h.SegmentSize)+Overhead),
		nonce: make([]byte, NonceSize),
	}
}

// ResumeWriter reopens an unfinished sealed object: it restores the partial last segment
// from the tail object that Close left beside it.
func (d *Driver) ResumeWriter(ctx context.Context, path string) (blobstore.Writer, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	iw, err := d.inner.ResumeWriter(ctx, path)
	if err != nil {
		return nil, err
	}
	h, c, index, tail, err := d.readTail(ctx, path)
	if err != nil {
		iw.Close()
		return nil, err
	}
	if want := h.SegmentOffset(int64(index)); iw.Size() != want {
		iw.Close()
		return nil, fmt.Errorf("seal %s: unfinished upload is inconsistent (%d bytes stored, tail expects %d); restart the upload", path, iw.Size(), want)
	}
	return d.newWriter(ctx, path, iw, h, c, index, tail), nil
}

func (d *Driver) readTail(ctx context.Context, path string) (Header, *objectCipher, uint64, []byte, error) {
	fail := func(err error) (Header, *objectCipher, uint64, []byte, error) {
		return Header{}, nil, 0, nil, err
	}
	r, err := d.inner.Reader(ctx, path+TailSuffix, 0)
	if errors.Is(err, blobstore.ErrNotFound) {
		return fail(fmt.Errorf("seal %s: the unfinished upload's resume state is missing; restart the upload", path))
	}
	if err != nil {
		return fail(fmt.Errorf("seal %s: read resume state: %w", path, err))
	}
	rec, err := io.ReadAll(io.LimitReader(r, maxTailRecord+1))
	r.Close()
	if err != nil {
		return fail(fmt.Errorf("seal %s: read resume state: %w", path, err))
	}
	h, index, tail, c, err := d.openTail(ctx, rec)
	if err != nil {
		return fail(fmt.Errorf("seal %s: resume state: %w", path, err))
	}
	return h, c, index, tail, nil
}

// openTail decodes a tail record: header || uint64 segments written || nonce || sealed tail.
func (d *Driver) openTail(ctx context.Context, rec []byte) (Header, uint64, []byte, *objectCipher, error) {
	var zero Header
	if len(rec) > maxTailRecord || len(rec) < HeaderSize+8+Overhead {
		return zero, 0, nil, nil, fmt.Errorf("%w: tail record of %d bytes", ErrFormat, len(rec))
	}
	h, err := ParseHeader(rec)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	index := binary.BigEndian.Uint64(rec[HeaderSize:])
	root, err := d.keys.Key(ctx, h.Generation)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return zero, 0, nil, nil, err
	}
	tail, err := c.openSegment(nil, index, kindTail, rec[HeaderSize+8:])
	if err != nil {
		return zero, 0, nil, nil, err
	}
	if len(tail) >= int(h.SegmentSize) {
		return zero, 0, nil, nil, fmt.Errorf("%w: tail of %d bytes is not shorter than a segment", ErrFormat, len(tail))
	}
	return h, index, tail, c, nil
}

// Reader opens the committed object at path from plaintext offset on. Only the segments
// from the one holding offset onwards are read and decrypted.
func (d *Driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("seal %s: negative offset %d", path, offset)
	}
	var sealedSize int64 = -1
	if offset > 0 {
		info, err := d.inner.Stat(ctx, path)
		if err != nil {
			return nil, err
		}
		sealedSize = info.Size
	}
	src, err := d.inner.Reader(ctx, path, 0)
	if err != nil {
		return nil, err
	}
	hb := make([]byte, HeaderSize)
	if _, err := io.ReadFull(src, hb); err != nil {
		src.Close()
		return nil, fmt.Errorf("seal %s: %w: %v", path, ErrFormat, err)
	}
	h, err := ParseHeader(hb)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	root, err := d.keys.Key(ctx, h.Generation)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		src.Close()
		return nil, err
	}
	seg := offset / int64(h.SegmentSize)
	if offset > 0 {
		size, err := h.PlainSize(sealedSize)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("seal %s: %w", path, err)
		}
		if offset > size {
			src.Close()
			return nil, fmt.Errorf("seal %s: offset %d is beyond the object's end (%d bytes)", path, offset, size)
		}
		if offset == size {
			src.Close()
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		if seg > 0 {
			src.Close()
			if src, err = d.inner.Reader(ctx, path, h.SegmentOffset(seg)); err != nil {
				return nil, err
			}
		}
	}
	return &reader{
		ctx: ctx, keys: d.keys,
		path: path, closer: src, src: bufio.NewReaderSize(src, readAheadSegments*int(h.slot())), c: c, h: h,
		index: uint64(seg), skip: int(offset - seg*int64(h.SegmentSize)),
		buf: make([]byte, h.slot()),
	}, nil
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

// writer seals segments as they fill. Full segments go to the inner writer at once; the
// partial last segment stays in memory until Commit (sealed as the final segment) or Close
// (sealed into the tail object, with a fresh random nonce, for ResumeWriter).
type writer struct {
	d     *Driver
	ctx   context.Context
	path  string
	inner blobstore.Writer
	h     Header
	c     *objectCipher
	index uint64 // segments written to inner
	buf   []byte // pending plaintext, < SegmentSize bytes between calls
	out   []byte // sealed segments not yet handed to inner
	spare []byte // the buffer of the batch being written in the background
	// pending receives the result of the background write in flight, if any.
	pending chan error
	nonce   []byte
	done    bool
	err     error
}

func (w *writer) Size() int64 { return int64(w.index)*int64(w.h.SegmentSize) + int64(len(w.buf)) }

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("seal %s: write after close", w.path)
	}
	if w.err != nil {
		return 0, w.err
	}
	if _, err := w.d.keys.Key(w.ctx, w.h.Generation); err != nil {
		return 0, fmt.Errorf("seal %s: %w", w.path, err)
	}
	seg := int(w.h.SegmentSize)
	written := 0
	for len(p) > 0 {
		if len(w.buf) == 0 && len(p) >= seg {
			if err := w.emit(p[:seg], kindSegment); err != nil {
				return written, err
			}
			p = p[seg:]
			written += seg
			continue
		}
		n := copy(w.buf[len(w.buf):seg], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
		written += n
		if len(w.buf) == seg {
			if err := w.emit(w.buf, kindSegment); err != nil {
				return written - len(w.buf), err
			}
			w.buf = w.buf[:0]
		}
	}
	return written, nil
}

// emit seals one segment into the output batch. A full batch is handed to the inner
// writer in the background while the next one is sealed (encryption overlaps storage I/O).
func (w *writer) emit(plain []byte, kind byte) error {
	if _, err := io.ReadFull(w.d.rand, w.nonce); err != nil {
		w.err = fmt.Errorf("seal %s: nonce: %w", w.path, err)
		return w.err
	}
	if len(w.out)+len(plain)+Overhead > batchSegments*int(w.h.slot()) {
		if err := w.flushAsync(); err != nil {
			return err
		}
	}
	w.out = w.c.sealSegment(w.out, w.index, kind, w.nonce, plain)
	w.index++
	return nil
}

// wait waits for the background write, if one is in flight, and returns the sticky error.
func (w *writer) wait() error {
	if w.pending != nil {
		if err := <-w.pending; err != nil && w.err == nil {
			// The inner object now ends in an unknown state; it cannot be continued.
			w.err = fmt.Errorf("seal %s: %w", w.path, err)
		}
		w.pending = nil
	}
	return w.err
}

// flushAsync starts writing the current batch in the background; the previous batch's
// buffer becomes the next batch's.
func (w *writer) flushAsync() error {
	if err := w.wait(); err != nil {
		return err
	}
	if len(w.out) == 0 {
		return nil
	}
	batch := w.out
	done := make(chan error, 1)
	w.pending = done
	go func() {
		_, err := w.inner.Write(batch)
		done <- err
	}()
	if w.spare == nil {
		w.spare = make([]byte, 0, batchSegments*int(w.h.slot()))
	}
	w.out, w.spare = w.spare[:0], batch
	return nil
}

// flush writes everything sealed so far and waits for it.
func (w *writer) flush() error {
	if err := w.wait(); err != nil {
		return err
	}
	if len(w.out) == 0 {
		return nil
	}
	if _, err := w.inner.Write(w.out); err != nil {
		w.err = fmt.Errorf("seal %s: %w", w.path, err)
		return w.err
	}
	w.out = w.out[:0]
	return nil
}

func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("seal %s: commit after close", w.path)
	}
	if w.err != nil {
		return w.err
	}
	if _, err := w.d.keys.Key(ctx, w.h.Generation); err != nil {
		return fmt.Errorf("seal %s: %w", w.path, err)
	}
	if err := w.emit(w.buf, kindFinal); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.inner.Commit(ctx); err != nil {
		return err
	}
	w.done = true
	if err := w.d.inner.Delete(ctx, w.path+TailSuffix); err != nil {
		return fmt.Errorf("seal %s: remove resume state: %w", w.path, err)
	}
	return nil
}

func (w *writer) Cancel(ctx context.Context) error {
	w.wait()
	w.done = true
	err := w.inner.Cancel(ctx)
	return errors.Join(err, w.d.inner.Delete(ctx, w.path+TailSuffix))
}

// Close keeps the upload for ResumeWriter: the partial segment is sealed into the tail
// object (committed first, so a crash never leaves an unfinished object without it).
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.flush()
	if w.err != nil {
		return errors.Join(w.err, w.inner.Close())
	}
	err := w.writeTail()
	return errors.Join(err, w.inner.Close())
}

func (w *writer) writeTail() error {
	if _, err := io.ReadFull(w.d.rand, w.nonce); err != nil {
		return fmt.Errorf("seal %s: nonce: %w", w.path, err)
	}
	rec := make([]byte, 0, HeaderSize+8+Overhead+len(w.buf))
	rec = append(rec, w.c.header...)
	rec = binary.BigEndian.AppendUint64(rec, w.index)
	rec = w.c.sealSegment(rec, w.index, kindTail, w.nonce, w.buf)
	tw, err := w.d.inner.Writer(w.ctx, w.path+TailSuffix)
	if err != nil {
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	if _, err := tw.Write(rec); err != nil {
		tw.Cancel(w.ctx)
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	if err := tw.Commit(w.ctx); err != nil {
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	return nil
}

// recheckSegments is how often (in segments) a long read asks the key source again, so a
// revoked key also stops reads already under way (every 1 MiB by default).
const recheckSegments = 16

// reader decrypts segments in order from index on.
type reader struct {
	ctx    context.Context
	keys   KeySource
	read   int // segments decrypted so far
	path   string
	closer io.Closer
	src    *bufio.Reader
	c      *objectCipher
	h      Header
	index  uint64
	skip   int
	buf    []byte // one stored segment; decrypted in place
	plain  []byte // the current segment's plaintext (aliases buf)
	pos    int
	final  bool
	err    error
}

func (r *reader) Read(p []byte) (int, error) {
	for r.pos >= len(r.plain) {
		if r.err != nil {
			return 0, r.err
		}
		if r.final {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.plain[r.pos:])
	r.pos += n
	return n, nil
}

func (r *reader) next() error {
	if r.read++; r.read%recheckSegments == 0 {
		if _, err := r.keys.Key(r.ctx, r.h.Generation); err != nil {
			return fmt.Errorf("seal %s: %w", r.path, err)
		}
	}
	n, err := io.ReadFull(r.src, r.buf)
	final := false
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		final = true
	case err != nil:
		return fmt.Errorf("seal %s: %w", r.path, err)
	default:
		if _, perr := r.src.Peek(1); perr == io.EOF {
			final = true
		} else if perr != nil {
			return fmt.Errorf("seal %s: %w", r.path, perr)
		}
	}
	kind := byte(kindSegment)
	if final {
		kind = kindFinal
	}
	stored := r.buf[:n]
	var dst []byte
	if n >= NonceSize {
		dst = stored[NonceSize:NonceSize]
	}
	plain, err := r.c.openSegment(dst, r.index, kind, stored)
	if err != nil {
		return fmt.Errorf("seal %s: %w", r.path, err)
	}
	if r.skip > len(plain) {
		return fmt.Errorf("seal %s: %w: segment %d is shorter than expected", r.path, ErrAuth, r.index)
	}
	r.plain, r.pos, r.skip = plain, r.skip, 0
	r.index++
	r.final = final
	return nil
}

func (r *reader) Close() error { return r.closer.Close() }
