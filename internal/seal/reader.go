package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Reader opens the committed object at path from plaintext offset on. Only the segments
// from the one holding offset onwards are read and decrypted, and the final one (which
// binds the object to its name).
//
// Before it returns, the reader has authenticated the first batch of segments it will
// return and, for an object of version 2, the final segment under path: an object that is
// damaged there, or is another object put at path, fails to open (ErrAuth), so that a
// server can answer with an error status rather than start a response it must cut. An
// object this driver has opened before is not fetched at its header and final segment
// again (a range read is one request to the inner driver): its stored size and first batch
// must match what was opened, so another object put at path is still caught at open, while
// damage to its final segment since then is caught when the read reaches it.
func (d *Driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	return d.reader(ctx, path, path, offset)
}

// reader opens the object stored at path, which must be bound to name. An object opened
// before (its header, stored size and binding to name verified, see opened) is read with
// one request to the inner driver, at the segment holding offset; one opened for the
// first time takes a request for the header, one at the offset's segment when that is not
// the first, and one for the final segment when it is not among those read.
func (d *Driver) reader(ctx context.Context, path, name string, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("seal %s: negative offset %d", path, offset)
	}
	if e, ok := d.opened.get(path, name); ok {
		r, err := d.readerKnown(ctx, path, e, offset)
		if err == nil || !errors.Is(err, errStale) {
			return r, err
		}
		d.opened.drop(path)
	}
	return d.readerFirst(ctx, path, name, offset)
}

// errStale: the object at a path is not the one opened there before.
var errStale = errors.New("the object changed since it was last opened")

// readerKnown opens an object verified before, with one inner request: errStale if what is
// stored now is not that object (another size, or segments that do not open under its
// header, which their associated data binds).
func (d *Driver) readerKnown(ctx context.Context, path string, e openedObject, offset int64) (io.ReadCloser, error) {
	h := e.h
	size, err := h.PlainSize(e.sealedSize)
	if err != nil || offset >= size {
		return nil, errStale // the end of the object: the first open's path handles it
	}
	root, err := d.keys.Key(ctx, h.Generation)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	c.name = []byte(e.name)
	seg := offset / int64(h.SegmentSize)
	src, err := d.inner.Reader(ctx, path, h.SegmentOffset(seg))
	if errors.Is(err, blobstore.ErrNotFound) {
		d.opened.drop(path)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if sz, ok := src.(blobstore.Sizer); !ok || sz.ObjectSize() != e.sealedSize {
		src.Close()
		return nil, errStale
	}
	r, err := d.open(ctx, path, src, h, c, offset)
	if errors.Is(err, ErrAuth) {
		return nil, errStale
	}
	return r, err
}

// open starts a reader of the object at path whose segments from offset's on src yields,
// and opens its first batch now, so that damage in it fails the open.
func (d *Driver) open(ctx context.Context, path string, src io.ReadCloser, h Header, c *objectCipher, offset int64) (*reader, error) {
	seg := offset / int64(h.SegmentSize)
	r := &reader{
		ctx: ctx, d: d, path: path, closer: src, h: h, slot: int(h.slot()),
		src: src, c: c, index: uint64(seg), skip: int(offset - seg*int64(h.SegmentSize)),
	}
	r.advance()
	if r.err != nil && r.err != io.EOF {
		err := r.err
		r.Close()
		return nil, err
	}
	return r, nil
}

// readerFirst opens an object not opened before (or changed since): it reads the header,
// authenticates the first batch and the final segment, and remembers the object as opened.
func (d *Driver) readerFirst(ctx context.Context, path, name string, offset int64) (io.ReadCloser, error) {
	src, err := d.inner.Reader(ctx, path, 0)
	if err != nil {
		return nil, err
	}
	var sealedSize int64 = -1
	if sz, ok := src.(blobstore.Sizer); ok {
		sealedSize = sz.ObjectSize()
	}
	storedSize := func() (int64, error) {
		if sealedSize < 0 {
			info, err := d.inner.Stat(ctx, path)
			if err != nil {
				return 0, err
			}
			sealedSize = info.Size
		}
		return sealedSize, nil
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
	if !h.Bound() && d.refuseV1 {
		src.Close()
		return nil, fmt.Errorf("seal %s: %w: format version 1 (bound to no name) is refused by this store; it has to be upgraded", path, ErrAuth)
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
	c.name = []byte(name)
	seg := offset / int64(h.SegmentSize)
	if offset > 0 {
		stored, err := storedSize()
		if err != nil {
			src.Close()
			return nil, err
		}
		size, err := h.PlainSize(stored)
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
	r, err := d.open(ctx, path, src, h, c, offset)
	if err != nil {
		return nil, err
	}
	if h.Bound() && !r.cur.final {
		// The final segment lies beyond the first batch: authenticate it under the name
		// before any byte is returned. Every segment is sealed under this header's data key,
		// so what is streamed afterwards is this object or fails.
		stored, err := storedSize()
		if err != nil {
			r.Close()
			return nil, err
		}
		if err := d.checkFinal(ctx, path, h, c, stored); err != nil {
			r.Close()
			return nil, err
		}
	}
	if h.Bound() {
		if stored, err := storedSize(); err == nil {
			d.opened.put(path, openedObject{name: name, h: h, sealedSize: stored})
		}
	}
	return r, nil
}

// checkFinal authenticates the final segment of the object stored at path (of sealedSize
// bytes, with header h) under c, which holds the name it must be bound to.
func (d *Driver) checkFinal(ctx context.Context, path string, h Header, c *objectCipher, sealedSize int64) error {
	if _, err := h.PlainSize(sealedSize); err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
	}
	n := (sealedSize - HeaderSize + h.slot() - 1) / h.slot()
	at := h.SegmentOffset(n - 1)
	fr, err := d.inner.Reader(ctx, path, at)
	if err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
	}
	defer fr.Close()
	stored, err := io.ReadAll(io.LimitReader(fr, h.slot()+1))
	if err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
	}
	if int64(len(stored)) != sealedSize-at {
		return fmt.Errorf("seal %s: %w: the object changed while it was opened", path, ErrAuth)
	}
	if _, err := c.openSegment(nil, uint64(n-1), kindFinal, stored); err != nil {
		return fmt.Errorf("seal %s: %w", path, err)
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
	opened := 0
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
		opened += len(plain)
	}
	if r.d.openedBytes != nil {
		r.d.openedBytes(opened)
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
