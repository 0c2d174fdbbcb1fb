package imagecrypt

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Layers move through a pipeline of stages, so that one layer uses more than one core:
// a reader goroutine (file or network reads and the source digest), the caller's goroutine
// (ocicrypt's AES-CTR and HMAC), and a chain of sink goroutines (the new blob's digest and
// the file write of the same buffer while it is still in the core's cache; for a
// compressed layer, the decompression for the diff_id). Stages hand over the same
// chunkSize buffers, never a copy: a buffer goes round from a free pool through every
// stage and back. 128 KiB, 4 per stage (an encryption's pool is 9 buffers, 1.1 MiB): small
// enough that every buffer in flight can stay in the caches the two cores share (a stage
// finds the buffer the stage before wrote on the other core without a trip to memory).
// With 512 KiB x 6 (6.5 MiB) the same work took more CPU per byte (BenchmarkLayer256MiB,
// interleaved A/B on the loaded 2-core VM: encrypt 3.2 against 3.7 ns/B median, ocicrypt's
// own 1.3-1.8); the extra write(2) calls cost a few milliseconds per 256 MiB.
const (
	chunkSize     = 128 << 10
	chunksInStage = 4
)

// chunk is one buffer handed between stages.
type chunk struct {
	buf []byte
	n   int
}

func newPool(n int) chan []byte {
	free := make(chan []byte, n)
	for range n {
		free <- make([]byte, chunkSize)
	}
	return free
}

// asyncReader reads r ahead in its own goroutine, into buffers of its pool.
type asyncReader struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	err  error // set before full is closed
	cur  chunk
	off  int
	once sync.Once
}

// readAhead starts reading r (everything r does, such as hashing, runs in the goroutine).
// Close must be called.
func readAhead(r io.Reader) *asyncReader {
	return readAheadInto(r, newPool(chunksInStage+1))
}

func readAheadInto(r io.Reader, free chan []byte) *asyncReader {
	a := &asyncReader{full: make(chan chunk, cap(free)), free: free, stop: make(chan struct{}), done: make(chan struct{})}
	go a.run(r)
	return a
}

func (a *asyncReader) run(r io.Reader) {
	defer close(a.done)
	defer close(a.full)
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		case <-a.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			a.full <- chunk{buf, n} // full has room for every buffer of the pool
		} else {
			a.free <- buf
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			a.err = io.EOF
			return
		case err != nil:
			a.err = err
			return
		}
	}
}

// next hands over the next chunk read (the caller owns it); ok is false at the end, when
// a.err says why.
func (a *asyncReader) next() (chunk, bool) {
	c, ok := <-a.full
	return c, ok
}

func (a *asyncReader) Read(p []byte) (int, error) {
	for a.off == a.cur.n {
		if a.cur.buf != nil {
			a.free <- a.cur.buf
			a.cur = chunk{}
		}
		c, ok := <-a.full
		if !ok {
			return 0, a.err
		}
		a.cur, a.off = c, 0
	}
	n := copy(p, a.cur.buf[a.off:a.cur.n])
	a.off += n
	return n, nil
}

// Close stops the goroutine and waits for it (so the source may be closed after).
func (a *asyncReader) Close() error {
	a.once.Do(func() { close(a.stop) })
	// Drain what was read ahead, so the goroutine is not blocked on a full channel.
	for range a.full {
	}
	<-a.done
	return nil
}

// sinkChain runs a chain of functions on every chunk, each in its own goroutine, in
// order; a chunk that went through the last goes back to the pool. The first error of a
// function stops the others' work on later chunks (they still hand the buffers on).
type sinkChain struct {
	head   chan chunk
	free   chan []byte
	done   chan struct{}
	failed atomic.Bool
	mu     sync.Mutex
	err    error
}

// newSinks starts the chain of fns over a pool of its own.
func newSinks(fns ...func([]byte) error) *sinkChain {
	return newSinksOver(newPool(chunksInStage+1), fns...)
}

// newSinksOver starts the chain of fns; chunks go back to free at its end.
func newSinksOver(free chan []byte, fns ...func([]byte) error) *sinkChain {
	s := &sinkChain{free: free, done: make(chan struct{})}
	in := make(chan chunk, cap(free))
	s.head = in
	var wg sync.WaitGroup
	for i, fn := range fns {
		var out chan chunk
		if i < len(fns)-1 {
			out = make(chan chunk, cap(free))
		}
		wg.Add(1)
		go func(in, out chan chunk) {
			defer wg.Done()
			if out != nil {
				defer close(out)
			}
			for c := range in {
				if !s.failed.Load() {
					if err := fn(c.buf[:c.n]); err != nil {
						s.fail(err)
					}
				}
				if out != nil {
					out <- c
				} else {
					s.free <- c.buf
				}
			}
		}(in, out)
		in = out
	}
	go func() { wg.Wait(); close(s.done) }()
	return s
}

func (s *sinkChain) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.failed.Store(true)
}

// send hands a chunk (of the chain's pool) to the chain.
func (s *sinkChain) send(c chunk) { s.head <- c }

// ReadFrom reads r into the chain's buffers directly (no copy), until EOF or an error of
// r; an error of a sink stops it early.
func (s *sinkChain) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if s.failed.Load() {
			return total, s.firstErr()
		}
		buf := <-s.free
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			total += int64(n)
			s.head <- chunk{buf, n}
		} else {
			s.free <- buf
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

func (s *sinkChain) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close waits for every chunk sent and returns the first error of a sink.
func (s *sinkChain) Close() error {
	close(s.head)
	<-s.done
	return s.firstErr()
}

// errNotInPlace: the cipher asked for more input than the output it was asked for (a
// cipher that does not transform a stream byte for byte).
var errNotInPlace = errors.New("internal error: the layer cipher did not transform its input in place")

// inPlace is the cipher's input when it transforms each chunk into the same buffer
// (ocicrypt's AES-CTR encryption reads its input into the caller's buffer and XORs it
// there): Read of the buffer being transformed hands it over without a copy.
type inPlace struct {
	cur []byte
	// end: no more input; err is io.EOF or the reader's error.
	end bool
	err error
}

func (s *inPlace) Read(p []byte) (int, error) {
	if len(s.cur) == 0 {
		if s.end {
			return 0, s.err
		}
		return 0, errNotInPlace
	}
	n := min(len(p), len(s.cur))
	if n > 0 && &p[0] != &s.cur[0] {
		copy(p[:n], s.cur) // not the same buffer: still correct, one copy
	}
	s.cur = s.cur[n:]
	return n, nil
}

// transformInPlace pipes the chunks of in through the cipher enc (which reads src) into
// out: each chunk is transformed in its own buffer and handed on. At the end it reads enc
// once more so that it sees the end of its input (ocicrypt finishes its HMAC there).
func transformInPlace(in *asyncReader, src *inPlace, enc io.Reader, out *sinkChain) (int64, error) {
	var total int64
	for {
		if out.failed.Load() {
			return total, out.firstErr()
		}
		c, ok := in.next()
		if !ok {
			break
		}
		src.cur = c.buf[:c.n]
		n, err := io.ReadFull(enc, c.buf[:c.n])
		if err == nil && len(src.cur) != 0 {
			err = errNotInPlace
		}
		if err != nil {
			in.free <- c.buf
			return total, err
		}
		total += int64(n)
		out.send(chunk{c.buf, n})
	}
	src.end, src.err = true, in.err
	var one [1]byte
	n, err := enc.Read(one[:])
	switch {
	case n != 0:
		return total, errNotInPlace
	case err == io.EOF:
		return total, nil
	case err == nil:
		return total, errNotInPlace
	}
	return total, err
}
