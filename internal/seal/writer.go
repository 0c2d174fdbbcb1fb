package seal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Writer starts a new sealed object at path, bound to path unless the writer's Bind names
// the path it will be moved to.
func (d *Driver) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	w, err := d.writer(ctx, path)
	if err != nil {
		return nil, err
	}
	return w.public(), nil
}

// public is w as callers get it: with CommitAt when the inner writer has it.
func (w *writer) public() blobstore.Writer {
	if _, ok := w.inner.(blobstore.CommitterAt); ok {
		return atWriter{w}
	}
	return w
}

// atWriter is a writer whose inner writer can commit at another path.
type atWriter struct{ *writer }

// CommitAt commits the object at path, bound to path, with no move: the inner writer's
// CommitAt puts the sealed bytes there. The resume state at the writer's own path goes.
func (w atWriter) CommitAt(ctx context.Context, path string) error {
	if err := w.Bind(path); err != nil {
		return err
	}
	return w.commit(ctx, path)
}

// writer starts a new sealed object at path (which may be a reserved name).
func (d *Driver) writer(ctx context.Context, path string) (*writer, error) {
	gen, root, err := d.keys.CurrentKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	h := Header{Version: version2, Generation: gen, SegmentSize: uint32(d.segmentSize)}
	if _, err := io.ReadFull(d.rand, h.ObjectID[:]); err != nil {
		return nil, fmt.Errorf("seal %s: object id: %w", path, err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	c.name = []byte(path)
	iw, err := d.inner.Writer(ctx, path)
	if err != nil {
		return nil, err
	}
	// A stale tail from an earlier object at this path must not be resumed into this one.
	if err := d.raw.Delete(ctx, path+TailSuffix); err != nil {
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
	// An upload begun in version 1 is finished in version 1 (its segments are sealed under
	// that header); the upgrade pass binds it once it is committed in place.
	c.name = []byte(path)
	if want := h.SegmentOffset(int64(index)); iw.Size() != want {
		iw.Close()
		return nil, fmt.Errorf("seal %s: unfinished upload is inconsistent (%d bytes stored, tail expects %d); restart the upload", path, iw.Size(), want)
	}
	w := d.newWriter(ctx, path, iw, h, c, index, tail)
	w.resumed = true
	return w.public(), nil
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
	// resumed: opened by ResumeWriter, so a tail object (resume state) exists beside the
	// object until the commit removes it. A writer from Writer removed any stale tail
	// when it started and never writes one (Close ends it), so its commit has none to remove.
	resumed bool

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

// Binder is implemented by the writers of the sealing driver. An object is bound to a name
// in its final segment, and opens only when read under that name; by default the name is
// the path it is written at. A caller that writes an object at one path and moves it to
// another after Commit (the registry writes uploads/<id> and moves it to its digest's
// path) names the final path with Bind before Commit, so the move is a rename; without
// Bind, the driver's Move re-seals the object for its new path (a copy).
type Binder interface {
	// Bind names the path the object will be read under. It must come before Commit.
	Bind(name string) error
}

// Bind binds the object to name instead of the path it is written at. The caller's Move
// to name is then a rename; the object no longer reads at the path it was written at.
func (w *writer) Bind(name string) error {
	if w.done {
		return fmt.Errorf("seal %s: bind after close", w.path)
	}
	if err := checkPath(name); err != nil {
		return err
	}
	// The final segment is sealed only by Commit, after this (on the caller's goroutine,
	// or by the sealer, which receives the final batch after this returns).
	w.c.name = []byte(name)
	return nil
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
	if w.d.sealedBytes != nil {
		w.d.sealedBytes((b.segs-1)*w.seg + b.lastLen)
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

func (w *writer) Commit(ctx context.Context) error { return w.commit(ctx, w.path) }

// commit seals the final segment and commits the object at dst (the writer's own path, or
// another through the inner writer's CommitAt).
func (w *writer) commit(ctx context.Context, dst string) error {
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
	w.d.opened.drop(dst)
	if dst == w.path {
		if err := w.inner.Commit(ctx); err != nil {
			return err
		}
	} else if err := w.inner.(blobstore.CommitterAt).CommitAt(ctx, dst); err != nil {
		return err
	}
	w.done = true
	if !w.resumed {
		return nil
	}
	if err := w.d.raw.Delete(ctx, w.path+TailSuffix); err != nil {
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
	return errors.Join(err, w.d.raw.Delete(ctx, w.path+TailSuffix))
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

// writeTail seals the partial last segment into the tail object. It runs under the writer's
// context without its cancellation: Close runs when a request ends, often because its client
// went away, and the bytes that arrived must stay resumable (the inner writer's Close keeps
// its own bytes the same way).
func (w *writer) writeTail(tail []byte) error {
	ctx := context.WithoutCancel(w.ctx)
	nonce := w.nonces[:NonceSize]
	if _, err := io.ReadFull(w.d.rand, nonce); err != nil {
		return fmt.Errorf("seal %s: nonce: %w", w.path, err)
	}
	rec := make([]byte, 0, HeaderSize+8+Overhead+len(tail))
	rec = append(rec, w.c.header...)
	rec = binary.BigEndian.AppendUint64(rec, w.index)
	rec = w.c.sealSegment(rec, w.index, kindTail, nonce, tail)
	tw, err := w.d.raw.Writer(ctx, w.path+TailSuffix)
	if err != nil {
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	if _, err := tw.Write(rec); err != nil {
		tw.Cancel(ctx)
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	if err := tw.Commit(ctx); err != nil {
		return fmt.Errorf("seal %s: save resume state: %w", w.path, err)
	}
	return nil
}
