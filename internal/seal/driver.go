package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

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

// batchSegments is how many segments the writer seals and writes to the inner driver at
// once, and a reader reads and opens at once (1 MiB with the default segment size).
const batchSegments = 16

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
		ctx: ctx, d: d, path: path, closer: src, h: h, slot: int(h.slot()),
		src: src, c: c, index: uint64(seg), skip: int(offset - seg*int64(h.SegmentSize)),
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

// The writer and the reader keep the caller's goroutine free for what it does with the
// plaintext (the registry hashes it). A writer's full batches go to two background stages,
// a sealer and a storer (which writes to the inner writer), so hashing, sealing and storage
// I/O of successive batches overlap; a reader that goes past its first batch starts a
// fetcher and an opener, which get the next batches ready while the caller consumes one.
// Both work in batch buffers of batchSegments stored segments from the driver's pool, and
// the channels between the stages are unbuffered, so a writer or a reader holds at most
// three buffers (3 MiB with the default segment size): the caller's, and one per stage.
// Objects that fit one batch (manifests, small uploads, small Range reads) never start a
// goroutine.

// batchLen is the size of a batch buffer for segments of slot stored bytes: batchSegments
// slots and one byte more, which lets a reader tell whether a batch's last segment is the
// object's final one.
func batchLen(slot int) int { return batchSegments*slot + 1 }

// getBatch returns a batch buffer for segments of slot stored bytes, from the pool if it is
// the driver's own segment size.
func (d *Driver) getBatch(slot int) []byte {
	if slot == d.segmentSize+Overhead {
		if b, ok := d.batches.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, batchLen(slot))
}

// putBatch returns a buffer from getBatch to the pool (others are left to the collector).
// The caller must hold no slice of it any more.
func (d *Driver) putBatch(b []byte) {
	if cap(b) == batchLen(d.segmentSize+Overhead) {
		b = b[:cap(b)]
		d.batches.Put(&b)
	}
}

// sealInPlace seals the plaintext at slot[NonceSize:NonceSize+n] where it lies: slot becomes
// nonce || ciphertext || tag (n+Overhead bytes; slot must have room for them).
func (c *objectCipher) sealInPlace(slot []byte, index uint64, kind byte, nonce []byte, n int) {
	copy(slot, nonce)
	pt := slot[NonceSize : NonceSize+n]
	c.aead.Seal(pt[:0], nonce, pt, c.setAAD(index, kind))
}

// wbatch is a run of segments for the writer's stages: their plaintexts lie in buf at
// i*slot+NonceSize, to be sealed in place.
type wbatch struct {
	buf     []byte
	first   uint64 // index of the first segment
	segs    int    // number of segments; all full but maybe the last
	lastLen int    // plaintext length of the last segment
	final   bool   // the last segment is the object's final segment
}

// writer seals segments as they fill. Full batches go to the sealer and then the storer,
// which writes them to the inner writer in order; the partial last segment stays with the caller
// until Commit (sealed as the final segment) or Close (sealed into the tail object, with a
// fresh random nonce, for ResumeWriter).
type writer struct {
	d     *Driver
	ctx   context.Context
	path  string
	inner blobstore.Writer
	h     Header
	c     *objectCipher // the sealer's while it runs; the caller's once it has stopped
	seg   int           // plaintext bytes per segment
	slot  int           // stored bytes per segment
	index uint64        // segments handed to the sealer (or sealed inline)
	cur   []byte        // the batch being filled; nil until the first byte
	n     int           // full segments in cur
	fill  int           // plaintext bytes of the partial segment n in cur
	done  bool

	work    chan *wbatch  // to the sealer; nil until the stages start and after they stop
	stopped chan struct{} // closed when the storer has finished
	nonces  []byte        // the sealer's (or the inline sealing's) nonce scratch
	abort   atomic.Bool   // Cancel: the stages drop what is queued
	mu      sync.Mutex
	err     error // sticky: the first sealing or storage failure
}

func (d *Driver) newWriter(ctx context.Context, path string, iw blobstore.Writer, h Header, c *objectCipher, index uint64, tail []byte) *writer {
	w := &writer{
		d: d, ctx: ctx, path: path, inner: iw, h: h, c: c, index: index,
		seg: int(h.SegmentSize), slot: int(h.slot()),
		nonces: make([]byte, batchSegments*NonceSize),
	}
	if len(tail) > 0 {
		w.cur = d.getBatch(w.slot)
		w.fill = copy(w.cur[NonceSize:NonceSize+w.seg], tail)
	}
	return w
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		// The inner object now ends in an unknown state; it cannot be continued.
		w.err = fmt.Errorf("seal %s: %w", w.path, err)
	}
}

func (w *writer) Size() int64 {
	return (int64(w.index)+int64(w.n))*int64(w.seg) + int64(w.fill)
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("seal %s: write after close", w.path)
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	if _, err := w.d.keys.Key(w.ctx, w.h.Generation); err != nil {
		return 0, fmt.Errorf("seal %s: %w", w.path, err)
	}
	written := 0
	for len(p) > 0 {
		if w.cur == nil {
			w.cur = w.d.getBatch(w.slot)
		}
		at := w.n*w.slot + NonceSize
		k := copy(w.cur[at+w.fill:at+w.seg], p)
		w.fill += k
		p = p[k:]
		written += k
		if w.fill == w.seg {
			w.n, w.fill = w.n+1, 0
			if w.n == batchSegments {
				if err := w.submit(false, false); err != nil {
					return written, err
				}
			}
		}
	}
	return written, nil
}

// submit hands the full segments of the current batch (and with final, the partial one as
// the object's final segment) to the sealer. With last, nothing more will follow: a batch
// that is the whole remaining object is sealed and written right here when no stage runs.
func (w *writer) submit(final, last bool) error {
	b := &wbatch{buf: w.cur, first: w.index, segs: w.n, lastLen: w.seg, final: final}
	if final {
		b.segs, b.lastLen = w.n+1, w.fill
		w.fill = 0
	}
	w.cur, w.n = nil, 0
	if b.segs == 0 {
		if b.buf != nil {
			w.d.putBatch(b.buf)
		}
		return w.failed()
	}
	if b.buf == nil { // an empty object: only its empty final segment
		b.buf = w.d.getBatch(w.slot)
	}
	w.index += uint64(b.segs)
	if last && w.work == nil {
		w.process(b)
		return w.failed()
	}
	if w.work == nil {
		// Two stages, so sealing one batch overlaps writing the one before. The channels
		// are unbuffered: the caller, the sealer and the storer hold a batch each.
		w.work = make(chan *wbatch)
		w.stopped = make(chan struct{})
		sealed := make(chan *wbatch)
		go w.sealer(w.work, sealed)
		go w.storer(sealed, w.stopped)
	}
	w.work <- b
	return w.failed()
}

func (w *writer) sealer(work <-chan *wbatch, sealed chan<- *wbatch) {
	defer close(sealed)
	for b := range work {
		if w.live() && w.seal(b) {
			sealed <- b
		} else {
			w.d.putBatch(b.buf)
		}
	}
}

func (w *writer) storer(sealed <-chan *wbatch, stopped chan<- struct{}) {
	defer close(stopped)
	for b := range sealed {
		if w.live() {
			w.store(b)
		}
		w.d.putBatch(b.buf)
	}
}

// live tells whether batches are still worth sealing and storing: no earlier one failed
// and the upload is not being cancelled.
func (w *writer) live() bool { return !w.abort.Load() && w.failed() == nil }

// process seals and stores a batch on the caller's goroutine (an object that fits one
// batch), then recycles the buffer.
func (w *writer) process(b *wbatch) {
	if w.live() && w.seal(b) {
		w.store(b)
	}
	w.d.putBatch(b.buf)
}

// seal seals the segments of a batch in place.
func (w *writer) seal(b *wbatch) bool {
	nonces := w.nonces[:b.segs*NonceSize]
	if _, err := io.ReadFull(w.d.rand, nonces); err != nil {
		w.fail(fmt.Errorf("nonce: %w", err))
		return false
	}
	for i := range b.segs {
		kind, n := byte(kindSegment), w.seg
		if i == b.segs-1 {
			n = b.lastLen
			if b.final {
				kind = kindFinal
			}
		}
		w.c.sealInPlace(b.buf[i*w.slot:], b.first+uint64(i), kind, nonces[i*NonceSize:(i+1)*NonceSize], n)
	}
	return true
}

// store writes a sealed batch to the inner writer.
func (w *writer) store(b *wbatch) {
	end := (b.segs-1)*w.slot + b.lastLen + Overhead
	if _, err := w.inner.Write(b.buf[:end]); err != nil {
		w.fail(err)
	}
}

// wait stops the stages once they have done everything queued, and returns the sticky
// error.
func (w *writer) wait() error {
	if w.work != nil {
		close(w.work)
		<-w.stopped
		w.work = nil
	}
	return w.failed()
}

func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("seal %s: commit after close", w.path)
	}
	if err := w.failed(); err != nil {
		return err
	}
	if _, err := w.d.keys.Key(ctx, w.h.Generation); err != nil {
		return fmt.Errorf("seal %s: %w", w.path, err)
	}
	w.submit(true, true)
	if err := w.wait(); err != nil {
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
	w.abort.Store(true)
	w.wait()
	if w.cur != nil {
		w.d.putBatch(w.cur)
		w.cur = nil
	}
	w.done = true
	err := w.inner.Cancel(ctx)
	return errors.Join(err, w.d.inner.Delete(ctx, w.path+TailSuffix))
}

// Close keeps the upload for ResumeWriter: the full segments are written, and the partial
// one is sealed into the tail object (committed first, so a crash never leaves an
// unfinished object without it).
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	var tail []byte
	if w.fill > 0 {
		at := w.n*w.slot + NonceSize
		tail = bytes.Clone(w.cur[at : at+w.fill])
	}
	w.submit(false, true)
	if err := w.wait(); err != nil {
		return errors.Join(err, w.inner.Close())
	}
	err := w.writeTail(tail)
	return errors.Join(err, w.inner.Close())
}

func (w *writer) writeTail(tail []byte) error {
	nonce := w.nonces[:NonceSize]
	if _, err := io.ReadFull(w.d.rand, nonce); err != nil {
		return fmt.Errorf("seal %s: nonce: %w", w.path, err)
	}
	rec := make([]byte, 0, HeaderSize+8+Overhead+len(tail))
	rec = append(rec, w.c.header...)
	rec = binary.BigEndian.AppendUint64(rec, w.index)
	rec = w.c.sealSegment(rec, w.index, kindTail, nonce, tail)
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

// rbatch is a run of opened segments: their plaintexts alias buf.
type rbatch struct {
	buf    []byte
	plains [][]byte
	final  bool  // the batch ends with the object's final segment
	err    error // after the plaintexts: why the read cannot go on
}

// reader opens segments in order from index on, a batch at a time.
type reader struct {
	ctx    context.Context
	d      *Driver
	path   string
	closer io.Closer
	h      Header
	slot   int

	// Filling batches: the caller's for the first batch, then the fetcher's (src, carry,
	// has) and the opener's (c, index, skip, fills) alone.
	src   io.Reader
	c     *objectCipher
	index uint64 // next segment to open
	skip  int    // plaintext bytes to drop from the first segment
	carry byte   // the byte read past the previous batch
	has   bool   // carry is valid
	fills int    // batches filled

	ready   chan *rbatch  // opener → caller; nil until the stages start
	quit    chan struct{} // Close → fetcher and opener
	stopped chan struct{} // each stage sends once when it has finished

	// The caller's.
	cur     *rbatch
	seg     int    // current segment in cur
	plain   []byte // the rest of the current segment's plaintext
	batches int    // batches taken
	err     error
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.advance()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// advance moves to the next segment's plaintext, taking the next batch when the current one
// is used up; at the end it sets r.err (io.EOF or why the read stopped).
func (r *reader) advance() {
	if r.cur != nil && r.seg+1 < len(r.cur.plains) {
		r.seg++
		r.plain = r.cur.plains[r.seg]
		return
	}
	if r.cur != nil {
		switch {
		case r.cur.err != nil:
			r.err = r.cur.err
		case r.cur.final:
			r.err = io.EOF
		}
		r.release()
		if r.err != nil {
			return
		}
	}
	// A long read asks the key source again before every batch after the first (every
	// 1 MiB by default), so a revoked key also stops reads already under way: here, before
	// the caller gets the batch's plaintext, and in open, before it is decrypted.
	if r.batches++; r.batches > 1 {
		if _, err := r.d.keys.Key(r.ctx, r.h.Generation); err != nil {
			r.err = fmt.Errorf("seal %s: %w", r.path, err)
			return
		}
	}
	var b *rbatch
	if r.batches == 1 {
		b = r.open(r.fetch())
	} else {
		if r.ready == nil {
			// A read past the first batch is a stream, not a small Range read: from now on
			// fetch and open the next batches ahead while the caller consumes one, in two
			// stages so that reading one overlaps opening the one before. The channels are
			// unbuffered: the caller, the opener and the fetcher hold a batch each.
			r.ready = make(chan *rbatch)
			r.quit = make(chan struct{})
			r.stopped = make(chan struct{}, 2)
			fetched := make(chan *rbatch)
			go r.fetcher(fetched)
			go r.opener(fetched)
		}
		b = <-r.ready
	}
	r.cur, r.seg = b, 0
	if len(b.plains) > 0 {
		r.plain = b.plains[0]
	} else if r.err = b.err; r.err == nil {
		r.err = io.EOF
	}
}

func (r *reader) release() {
	if r.cur != nil {
		r.d.putBatch(r.cur.buf)
		r.cur, r.plain = nil, nil
	}
}

// fetcher reads batches until the end of the object, a failure or Close.
func (r *reader) fetcher(fetched chan<- *rbatch) {
	defer func() { r.stopped <- struct{}{} }()
	defer close(fetched)
	for {
		b := r.fetch()
		last := b.err != nil || b.final // b is the opener's once sent
		select {
		case fetched <- b:
		case <-r.quit:
			r.d.putBatch(b.buf)
			return
		}
		if last {
			return
		}
	}
}

// opener opens the fetched batches and hands them to the caller.
func (r *reader) opener(fetched <-chan *rbatch) {
	defer func() { r.stopped <- struct{}{} }()
	for b := range fetched {
		b = r.open(b)
		last := b.err != nil || b.final // b is the caller's once sent
		select {
		case r.ready <- b:
		case <-r.quit:
			r.d.putBatch(b.buf)
			return
		}
		if last {
			return // the fetcher stops at Close, if not before
		}
	}
}

// fetch reads the next batch: up to batchSegments stored segments and one byte more, which
// tells whether the last of them is the final segment.
func (r *reader) fetch() *rbatch {
	b := &rbatch{buf: r.d.getBatch(r.slot)}
	have := 0
	if r.has {
		b.buf[0], have = r.carry, 1
	}
	n, err := io.ReadFull(r.src, b.buf[have:batchLen(r.slot)])
	n += have
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		b.final = true
	case err != nil:
		b.err = fmt.Errorf("seal %s: %w", r.path, err)
		return b
	default:
		n--
		r.carry, r.has = b.buf[n], true
	}
	b.buf = b.buf[:n]
	return b
}

// open authenticates and decrypts a fetched batch in place.
func (r *reader) open(b *rbatch) *rbatch {
	if b.err != nil {
		return b
	}
	fail := func(err error) *rbatch {
		b.err = fmt.Errorf("seal %s: %w", r.path, err)
		b.plains = nil
		return b
	}
	if r.fills++; r.fills > 1 {
		if _, err := r.d.keys.Key(r.ctx, r.h.Generation); err != nil {
			return fail(err)
		}
	}
	n := len(b.buf)
	segs := (n + r.slot - 1) / r.slot
	if b.final && segs == 0 {
		segs = 1 // an empty body: the missing final segment fails to open
	}
	b.plains = make([][]byte, 0, segs)
	for i := range segs {
		kind := byte(kindSegment)
		if b.final && i == segs-1 {
			kind = kindFinal
		}
		stored := b.buf[i*r.slot : min(n, (i+1)*r.slot)]
		var dst []byte
		if len(stored) >= NonceSize {
			dst = stored[NonceSize:NonceSize]
		}
		plain, err := r.c.openSegment(dst, r.index, kind, stored)
		if err != nil {
			return fail(err)
		}
		if r.skip > len(plain) {
			return fail(fmt.Errorf("%w: segment %d is shorter than expected", ErrAuth, r.index))
		}
		plain, r.skip = plain[r.skip:], 0
		r.index++
		b.plains = append(b.plains, plain)
	}
	return b
}

// Close stops the fetcher and the opener (after the batch each is on) and closes the inner
// reader.
func (r *reader) Close() error {
	if r.quit != nil {
		close(r.quit)
		<-r.stopped
		<-r.stopped
		r.quit = nil
	}
	r.release()
	if r.err == nil || r.err == io.EOF {
		r.err = fmt.Errorf("seal %s: read after close", r.path)
	}
	return r.closer.Close()
}
