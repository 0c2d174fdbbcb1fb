package imagecrypt

import (
	"io"
	"sync"
)

// Layers move through a three-stage pipeline, so that one layer uses more than one core:
// a reader goroutine (file or network reads and the source digest), the caller's goroutine
// (ocicrypt's AES-CTR and HMAC) and a writer goroutine (the new blob's digest, the
// diff_id, the file writes). Stages hand over chunkSize buffers (small enough to stay in
// the core's cache between stages); a few are in flight.
const (
	chunkSize     = 256 << 10
	chunksInStage = 8
)

// chunk is one buffer handed between stages.
type chunk struct {
	buf []byte
	n   int
}

// asyncReader reads r ahead in its own goroutine.
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
	a := &asyncReader{full: make(chan chunk, chunksInStage), free: make(chan []byte, chunksInStage+1),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range chunksInStage + 1 {
		a.free <- make([]byte, chunkSize)
	}
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
			select {
			case a.full <- chunk{buf, n}:
			case <-a.stop:
				return
			}
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
	<-a.done
	return nil
}

// asyncWriter writes to w in its own goroutine.
type asyncWriter struct {
	full chan chunk
	free chan []byte
	done chan struct{}
	// failed is closed after err is set, at the writer's first error.
	failed chan struct{}
	err    error
}

// writeBehind starts writing to w (everything w does runs in the goroutine). Close must be
// called, and returns the first error of w.
func writeBehind(w io.Writer) *asyncWriter {
	a := &asyncWriter{full: make(chan chunk, chunksInStage), free: make(chan []byte, chunksInStage+1),
		done: make(chan struct{}), failed: make(chan struct{})}
	for range chunksInStage + 1 {
		a.free <- make([]byte, chunkSize)
	}
	go func() {
		defer close(a.done)
		for c := range a.full {
			if a.err == nil {
				if _, err := w.Write(c.buf[:c.n]); err != nil {
					a.err = err
					close(a.failed)
				}
			}
			a.free <- c.buf
		}
	}()
	return a
}

// ReadFrom reads r into the stage's buffers directly (no copy), until EOF or an error of
// r; an error of the writer stops it early.
func (a *asyncWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		buf := <-a.free
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			total += int64(n)
			a.full <- chunk{buf, n}
		} else {
			a.free <- buf
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
		select {
		case <-a.failed:
			return total, a.err
		default:
		}
	}
}

// Write copies p into the stage's buffers.
func (a *asyncWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		select {
		case <-a.failed:
			return n, a.err
		default:
		}
		buf := <-a.free
		c := copy(buf, p[n:])
		a.full <- chunk{buf, c}
		n += c
	}
	return n, nil
}

// Close waits for the writes and returns the writer's error.
func (a *asyncWriter) Close() error {
	close(a.full)
	<-a.done
	return a.err
}
