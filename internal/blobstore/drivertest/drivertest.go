// Package drivertest is the shared test suite of blobstore.Driver: every driver (the
// filesystem driver, the sealing wrapper, an object-store driver) proves the contract by
// passing Run.
package drivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
)

// Run runs the whole contract against drivers made by newDriver (a fresh, empty driver per
// call). The optional capabilities are tested where the driver has them, and where it has
// not, the fallbacks callers use instead are run against it: resumable uploads through
// blobstore.Resumable (chunk objects), moves through blobstore.Move (a copy and a delete).
func Run(t *testing.T, newDriver func(t *testing.T) blobstore.Driver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d blobstore.Driver)
	}{
		{"WriteCommitRead", testWriteCommitRead},
		{"EmptyObject", testEmptyObject},
		{"InvisibleUntilCommit", testInvisibleUntilCommit},
		{"CloseWithoutCommit", testCloseWithoutCommit},
		{"ResumeAfterClose", testResumeAfterClose},
		{"ResumeEmptyStart", testResumeEmptyStart},
		{"ResumeKeepsBytesAfterContextEnds", testResumeAfterContextEnds},
		{"ResumeMissing", testResumeMissing},
		{"NewWriterDiscardsUncommitted", testNewWriterDiscards},
		{"Cancel", testCancel},
		{"CommitAt", testCommitAt},
		{"ResumeCommitAt", testResumeCommitAt},
		{"ReaderAtOffset", testReaderAtOffset},
		{"ReaderKnowsSize", testReaderKnowsSize},
		{"LargeObject", testLargeObject},
		{"LargeResumedObject", testLargeResumedObject},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
		{"Copy", testCopy},
		{"Move", testMove},
		{"MoveReplaces", testMoveReplaces},
		{"MoveMissing", testMoveMissing},
		{"MoveKeepsOpenReaders", testMoveKeepsOpenReaders},
		{"Delete", testDelete},
		{"DeleteUncommitted", testDeleteUncommitted},
		{"Walk", testWalk},
		{"WalkSkipsUncommitted", testWalkSkipsUncommitted},
		{"InvalidPaths", testInvalidPaths},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentWriteMoveDelete", testConcurrentWriteMoveDelete},
	}
	logged := false
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t)
			if !logged {
				logged = true
				t.Logf("driver %T: %s", d, Capabilities(d))
			}
			tc.fn(t, d)
		})
	}
}

// Capabilities describes which optional capabilities d has.
func Capabilities(d blobstore.Driver) string {
	has := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no (fallback)"
	}
	_, r := d.(blobstore.Resumer)
	_, m := d.(blobstore.Mover)
	_, c := d.(blobstore.Copier)
	_, k := d.(blobstore.Composer)
	return fmt.Sprintf("resume %s, move %s, copy %s, compose %s", has(r), has(m), has(c), has(k))
}

// Plain hides every optional capability of d (and of its writers and readers), leaving the
// bare Driver contract: running Run on it proves the callers' fallbacks against a driver
// that is otherwise known good. Its writers discard uncommitted bytes on Close.
func Plain(d blobstore.Driver) blobstore.Driver { return plain{d} }

type plain struct{ d blobstore.Driver }

type plainWriter struct{ w blobstore.Writer }

func (w plainWriter) Write(p []byte) (int, error)      { return w.w.Write(p) }
func (w plainWriter) Size() int64                      { return w.w.Size() }
func (w plainWriter) Commit(ctx context.Context) error { return w.w.Commit(ctx) }
func (w plainWriter) Cancel(ctx context.Context) error { return w.w.Cancel(ctx) }
func (w plainWriter) Close() error                     { return w.w.Cancel(context.Background()) }
func (p plain) Stat(ctx context.Context, path string) (blobstore.Info, error) {
	return p.d.Stat(ctx, path)
}
func (p plain) Delete(ctx context.Context, path string) error { return p.d.Delete(ctx, path) }
func (p plain) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	return p.d.Walk(ctx, prefix, fn)
}
func (p plain) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	w, err := p.d.Writer(ctx, path)
	if err != nil {
		return nil, err
	}
	return plainWriter{w}, nil
}
func (p plain) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	r, err := p.d.Reader(ctx, path, offset)
	if err != nil {
		return nil, err
	}
	return struct{ io.ReadCloser }{r}, nil
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, d blobstore.Driver, path string, data []byte) {
	t.Helper()
	ctx := context.Background()
	w, err := d.Writer(ctx, path)
	if err != nil {
		t.Fatalf("Writer(%s): %v", path, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write(%s): %v", path, err)
	}
	if w.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", w.Size(), len(data))
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit(%s): %v", path, err)
	}
	w.Close() // after Commit: harmless
}

func read(t *testing.T, d blobstore.Driver, path string, offset int64) []byte {
	t.Helper()
	r, err := d.Reader(context.Background(), path, offset)
	if err != nil {
		t.Fatalf("Reader(%s, %d): %v", path, offset, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func testWriteCommitRead(t *testing.T, d blobstore.Driver) {
	data := random(t, 100_000)
	put(t, d, "a/b/c", data)
	if got := read(t, d, "a/b/c", 0); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
	}
	info, err := d.Stat(context.Background(), "a/b/c")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || info.Path != "a/b/c" {
		t.Fatalf("Stat = %+v, want path a/b/c size %d", info, len(data))
	}
}

func testEmptyObject(t *testing.T, d blobstore.Driver) {
	put(t, d, "empty", nil)
	if got := read(t, d, "empty", 0); len(got) != 0 {
		t.Fatalf("empty object read %d bytes", len(got))
	}
	info, err := d.Stat(context.Background(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat = %+v, %v; want size 0", info, err)
	}
}

func testInvisibleUntilCommit(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	w, err := d.Writer(ctx, "x/pending")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half"))
	_, err = d.Stat(ctx, "x/pending")
	wantNotFound(t, "Stat before Commit", err)
	_, err = d.Reader(ctx, "x/pending", 0)
	wantNotFound(t, "Reader before Commit", err)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Stat(ctx, "x/pending")
	wantNotFound(t, "Stat after Close", err)
}

func testResumeAfterClose(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	ctx := context.Background()
	data := random(t, 3*70_001)
	w, err := d.Writer(ctx, "uploads/u1")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:70_001])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		w, err = d.ResumeWriter(ctx, "uploads/u1")
		if err != nil {
			t.Fatalf("ResumeWriter #%d: %v", i, err)
		}
		if w.Size() != int64(i*70_001) {
			t.Fatalf("resumed Size = %d, want %d", w.Size(), i*70_001)
		}
		w.Write(data[i*70_001 : (i+1)*70_001])
		if i < 2 {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if w.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", w.Size(), len(data))
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "uploads/u1", 0); !bytes.Equal(got, data) {
		t.Fatal("resumed object differs from the bytes written")
	}
	_, err = d.ResumeWriter(ctx, "uploads/u1")
	wantNotFound(t, "ResumeWriter after Commit", err)
}

func testResumeMissing(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	_, err := d.ResumeWriter(context.Background(), "nothing/here")
	wantNotFound(t, "ResumeWriter of nothing", err)
}

func testNewWriterDiscards(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	ctx := context.Background()
	w, _ := d.Writer(ctx, "p")
	w.Write([]byte("old bytes"))
	w.Close()
	w, err := d.Writer(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 0 {
		t.Fatalf("new Writer Size = %d, want 0", w.Size())
	}
	w.Write([]byte("new"))
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "p", 0); string(got) != "new" {
		t.Fatalf("read %q, want %q", got, "new")
	}
}

func testCancel(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	ctx := context.Background()
	w, _ := d.Writer(ctx, "c/1")
	w.Write([]byte("discard me"))
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := d.ResumeWriter(ctx, "c/1")
	wantNotFound(t, "ResumeWriter after Cancel", err)
	_, err = d.Stat(ctx, "c/1")
	wantNotFound(t, "Stat after Cancel", err)
}

func testReaderAtOffset(t *testing.T, d blobstore.Driver) {
	data := random(t, 200_003)
	put(t, d, "o", data)
	for _, off := range []int64{0, 1, 65535, 65536, 65537, 100_000, 200_002, 200_003} {
		if got := read(t, d, "o", off); !bytes.Equal(got, data[off:]) {
			t.Fatalf("Reader at %d: %d bytes, want %d matching", off, len(got), len(data)-int(off))
		}
	}
	// A reader may be abandoned early.
	r, err := d.Reader(context.Background(), "o", 10)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, data[10:15]) {
		t.Fatalf("partial read = %x, %v", buf, err)
	}
	r.Close()
	if _, err := d.Reader(context.Background(), "o", 200_004); err == nil {
		t.Fatal("Reader beyond the end: want an error")
	}
}

func testLargeObject(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	chunk := random(t, 1<<20)
	w, err := d.Writer(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := read(t, d, "large", 7<<20+3)
	if !bytes.Equal(got, chunk[3:]) {
		t.Fatal("read at offset of a large object differs")
	}
}

func testNotFound(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	_, err := d.Stat(ctx, "missing")
	wantNotFound(t, "Stat", err)
	_, err = d.Reader(ctx, "missing/x", 0)
	wantNotFound(t, "Reader", err)
	put(t, d, "dir/obj", []byte("x"))
	_, err = d.Stat(ctx, "dir")
	wantNotFound(t, "Stat of a path prefix", err)
	if err := d.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete of nothing: %v", err)
	}
}

func testOverwrite(t *testing.T, d blobstore.Driver) {
	put(t, d, "ow", []byte("first"))
	put(t, d, "ow", []byte("second, longer"))
	if got := read(t, d, "ow", 0); string(got) != "second, longer" {
		t.Fatalf("read %q after overwrite", got)
	}
}

func testMove(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	data := random(t, 5000)
	put(t, d, "uploads/m", data)
	if err := blobstore.Move(ctx, d, "uploads/m", "blobs/sha256/ab/abcd"); err != nil {
		t.Fatal(err)
	}
	_, err := d.Stat(ctx, "uploads/m")
	wantNotFound(t, "Stat of Move source", err)
	if got := read(t, d, "blobs/sha256/ab/abcd", 0); !bytes.Equal(got, data) {
		t.Fatal("moved object differs")
	}
}

func testMoveReplaces(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	put(t, d, "dst", []byte("old"))
	put(t, d, "src", []byte("new content"))
	if err := blobstore.Move(ctx, d, "src", "dst"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "dst", 0); string(got) != "new content" {
		t.Fatalf("dst = %q after Move", got)
	}
}

func testMoveMissing(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	err := blobstore.Move(ctx, d, "nope", "dst")
	wantNotFound(t, "Move of nothing", err)
	// An uncommitted object cannot be moved.
	w, _ := d.Writer(ctx, "pending")
	w.Write([]byte("x"))
	w.Close()
	wantNotFound(t, "Move of an uncommitted object", blobstore.Move(ctx, d, "pending", "dst"))
	_, err = d.Stat(ctx, "dst")
	wantNotFound(t, "Stat of Move destination", err)
}

// testMoveKeepsOpenReaders: a reader opened on dst before it is replaced keeps reading the
// old object whole (Move is atomic: readers see the old or the new object, never a mix).
func testMoveKeepsOpenReaders(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	old := bytes.Repeat([]byte("o"), 300_000)
	put(t, d, "k", old)
	r, err := d.Reader(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	put(t, d, "k2", bytes.Repeat([]byte("n"), 300_000))
	if err := blobstore.Move(ctx, d, "k2", "k"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest...); !bytes.Equal(got, old) {
		t.Fatal("a reader opened before Move saw a mix of old and new bytes")
	}
	if got := read(t, d, "k", 0); got[0] != 'n' {
		t.Fatal("a reader opened after Move sees the old object")
	}
}

func testDelete(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	put(t, d, "del/a", []byte("a"))
	put(t, d, "del/b", []byte("b"))
	if err := d.Delete(ctx, "del/a"); err != nil {
		t.Fatal(err)
	}
	_, err := d.Stat(ctx, "del/a")
	wantNotFound(t, "Stat after Delete", err)
	if got := read(t, d, "del/b", 0); string(got) != "b" {
		t.Fatal("Delete removed a sibling")
	}
	if err := d.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func testDeleteUncommitted(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	ctx := context.Background()
	w, _ := d.Writer(ctx, "up/1")
	w.Write([]byte("partial"))
	w.Close()
	if err := d.Delete(ctx, "up/1"); err != nil {
		t.Fatal(err)
	}
	_, err := d.ResumeWriter(ctx, "up/1")
	wantNotFound(t, "ResumeWriter after Delete", err)
}

func testWalk(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	paths := []string{"blobs/sha256/aa/aa1", "blobs/sha256/ab/ab1", "blobs/sha512/cc/cc1", "blobsx/y", "other/z"}
	for i, p := range paths {
		put(t, d, p, bytes.Repeat([]byte{'x'}, i+1))
	}
	walk := func(prefix string) []string {
		var got []string
		err := d.Walk(ctx, prefix, func(info blobstore.Info) error {
			got = append(got, fmt.Sprintf("%s:%d", info.Path, info.Size))
			return nil
		})
		if err != nil {
			t.Fatalf("Walk(%q): %v", prefix, err)
		}
		sort.Strings(got)
		return got
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"blobs/", []string{"blobs/sha256/aa/aa1:1", "blobs/sha256/ab/ab1:2", "blobs/sha512/cc/cc1:3"}},
		{"blobs", []string{"blobs/sha256/aa/aa1:1", "blobs/sha256/ab/ab1:2", "blobs/sha512/cc/cc1:3", "blobsx/y:4"}},
		{"blobs/sha256/a", []string{"blobs/sha256/aa/aa1:1", "blobs/sha256/ab/ab1:2"}},
		{"blobs/sha256/ab/", []string{"blobs/sha256/ab/ab1:2"}},
		{"", []string{"blobs/sha256/aa/aa1:1", "blobs/sha256/ab/ab1:2", "blobs/sha512/cc/cc1:3", "blobsx/y:4", "other/z:5"}},
		{"none/", nil},
	}
	for _, c := range cases {
		if got := walk(c.prefix); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Walk(%q) = %v, want %v", c.prefix, got, c.want)
		}
	}
	stop := errors.New("stop")
	if err := d.Walk(ctx, "", func(blobstore.Info) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Walk did not return fn's error: %v", err)
	}
}

func testWalkSkipsUncommitted(t *testing.T, base blobstore.Driver) {
	d := blobstore.Resumable(base)
	ctx := context.Background()
	put(t, d, "w/committed", []byte("c"))
	w, _ := d.Writer(ctx, "w/pending")
	w.Write([]byte("p"))
	w.Close()
	var got []string
	d.Walk(ctx, "w/", func(info blobstore.Info) error { got = append(got, info.Path); return nil })
	if fmt.Sprint(got) != "[w/committed]" {
		t.Fatalf("Walk = %v, want only the committed object", got)
	}
}

func testInvalidPaths(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	for _, p := range []string{"", "/abs", "a/../b", "../escape", "a//b", "a/./b", "trailing/"} {
		if _, err := d.Writer(ctx, p); err == nil {
			t.Errorf("Writer(%q) accepted an invalid path", p)
		}
		if _, err := d.Reader(ctx, p, 0); err == nil {
			t.Errorf("Reader(%q) accepted an invalid path", p)
		}
	}
}

func testConcurrentWriters(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("cc/%02d/obj", i)
			w, err := d.Writer(ctx, path)
			if err != nil {
				errs <- err
				return
			}
			w.Write(bytes.Repeat([]byte{byte(i)}, 10_000+i))
			if err := w.Commit(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range 16 {
		got := read(t, d, fmt.Sprintf("cc/%02d/obj", i), 0)
		if len(got) != 10_000+i || got[0] != byte(i) {
			t.Fatalf("object %d wrong after concurrent writes", i)
		}
	}
}

// testConcurrentWriteMoveDelete: writers, moves and deletes in the same directories at
// once all succeed (a driver that prunes empty directories must not break a neighbour).
func testConcurrentWriteMoveDelete(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				up := fmt.Sprintf("up/%d-%d", g, i)
				dst := fmt.Sprintf("blobs/%02d/%d-%d", i%3, g, i)
				w, err := d.Writer(ctx, up)
				if err != nil {
					errs <- fmt.Errorf("Writer: %w", err)
					return
				}
				w.Write([]byte(dst))
				if err := w.Commit(ctx); err != nil {
					errs <- fmt.Errorf("Commit: %w", err)
					return
				}
				if err := blobstore.Move(ctx, d, up, dst); err != nil {
					errs <- fmt.Errorf("Move: %w", err)
					return
				}
				if got := read(t, d, dst, 0); string(got) != dst {
					errs <- fmt.Errorf("read %s = %q", dst, got)
					return
				}
				if err := d.Delete(ctx, dst); err != nil {
					errs <- fmt.Errorf("Delete: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// testCloseWithoutCommit: a writer closed without Commit leaves nothing visible; a driver
// that is not a Resumer keeps nothing of it either (a later Writer starts empty).
func testCloseWithoutCommit(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	w, err := d.Writer(ctx, "cwc/obj")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(random(t, 1000))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Stat(ctx, "cwc/obj")
	wantNotFound(t, "Stat after Close without Commit", err)
	var seen []string
	d.Walk(ctx, "", func(info blobstore.Info) error { seen = append(seen, info.Path); return nil })
	if len(seen) != 0 {
		t.Fatalf("Walk after Close without Commit shows %v", seen)
	}
}

// testResumeEmptyStart: an upload whose first writer wrote nothing is still resumable.
func testResumeEmptyStart(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	r := blobstore.Resumable(d)
	w, err := r.Writer(ctx, "uploads/empty")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = r.ResumeWriter(ctx, "uploads/empty")
	if err != nil {
		t.Fatalf("ResumeWriter of an upload with no bytes yet: %v", err)
	}
	w.Write([]byte("late"))
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, r, "uploads/empty", 0); string(got) != "late" {
		t.Fatalf("read %q", got)
	}
}

// testResumeAfterContextEnds: the bytes of a writer whose context has ended (the request
// of a client that went away) are kept by Close for ResumeWriter.
func testResumeAfterContextEnds(t *testing.T, d blobstore.Driver) {
	r := blobstore.Resumable(d)
	data := random(t, 150_000)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := r.Writer(ctx, "uploads/gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:100_000]); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := w.Close(); err != nil {
		t.Fatalf("Close after the writer's context ended: %v", err)
	}
	bg := context.Background()
	w, err = r.ResumeWriter(bg, "uploads/gone")
	if err != nil {
		t.Fatalf("ResumeWriter after a cancelled writer: %v", err)
	}
	if w.Size() != 100_000 {
		t.Fatalf("resumed Size = %d, want 100000", w.Size())
	}
	w.Write(data[100_000:])
	if err := w.Commit(bg); err != nil {
		t.Fatal(err)
	}
	if got := read(t, r, "uploads/gone", 0); !bytes.Equal(got, data) {
		t.Fatal("object resumed after a cancelled writer differs")
	}
}

// testCommitAt: a writer that can commit elsewhere puts the object at the other path only.
func testCommitAt(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	w, err := d.Writer(ctx, "uploads/ca")
	if err != nil {
		t.Fatal(err)
	}
	ca, ok := w.(blobstore.CommitterAt)
	if !ok {
		w.Cancel(ctx)
		t.Skipf("%T writers cannot commit at another path (callers Commit and Move)", w)
	}
	data := random(t, 70_000)
	w.Write(data)
	if err := ca.CommitAt(ctx, "blobs/ca"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "blobs/ca", 0); !bytes.Equal(got, data) {
		t.Fatal("object committed at another path differs")
	}
	_, err = d.Stat(ctx, "uploads/ca")
	wantNotFound(t, "Stat of the path the writer was opened at", err)
}

// testResumeCommitAt: a resumed upload of several chunks commits at another path whole,
// and its upload state is gone.
func testResumeCommitAt(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	r := blobstore.Resumable(d)
	data := random(t, 3*50_000)
	w, err := r.Writer(ctx, "uploads/rca")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:50_000])
	w.Close()
	w, _ = r.ResumeWriter(ctx, "uploads/rca")
	w.Write(data[50_000:100_000])
	w.Close()
	w, err = r.ResumeWriter(ctx, "uploads/rca")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[100_000:])
	ca, ok := w.(blobstore.CommitterAt)
	if !ok {
		w.Cancel(ctx)
		t.Skipf("%T writers cannot commit at another path", w)
	}
	if err := ca.CommitAt(ctx, "blobs/rca"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, r, "blobs/rca", 0); !bytes.Equal(got, data) {
		t.Fatal("resumed object committed at another path differs")
	}
	_, err = r.ResumeWriter(ctx, "uploads/rca")
	wantNotFound(t, "ResumeWriter after CommitAt", err)
	var seen []string
	d.Walk(ctx, "", func(info blobstore.Info) error { seen = append(seen, info.Path); return nil })
	if fmt.Sprint(seen) != "[blobs/rca]" {
		t.Fatalf("after CommitAt the store holds %v, want only blobs/rca", seen)
	}
}

// testReaderKnowsSize: a reader that reports its object's size reports the whole size,
// from any offset.
func testReaderKnowsSize(t *testing.T, d blobstore.Driver) {
	put(t, d, "sz", random(t, 12_345))
	for _, off := range []int64{0, 100, 12_345} {
		r, err := d.Reader(context.Background(), "sz", off)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := r.(blobstore.Sizer)
		if !ok {
			r.Close()
			t.Skipf("%T readers do not know their object's size", r)
		}
		if s.ObjectSize() != 12_345 {
			t.Errorf("ObjectSize at offset %d = %d, want 12345", off, s.ObjectSize())
		}
		r.Close()
	}
}

// testLargeResumedObject: an upload of several chunks of several MiB (S3 parts must be at
// least 5 MiB) composes to the exact bytes.
func testLargeResumedObject(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	r := blobstore.Resumable(d)
	sizes := []int{6 << 20, 5<<20 + 7, 1<<20 + 3, 11}
	var data []byte
	for i, n := range sizes {
		var w blobstore.Writer
		var err error
		if i == 0 {
			w, err = r.Writer(ctx, "uploads/big")
		} else {
			w, err = r.ResumeWriter(ctx, "uploads/big")
		}
		if err != nil {
			t.Fatal(err)
		}
		chunk := random(t, n)
		data = append(data, chunk...)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if i < len(sizes)-1 {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(t, r, "uploads/big", 0); !bytes.Equal(got, data) {
		t.Fatalf("composed object of %d bytes differs from the %d written", len(got), len(data))
	}
	if got := read(t, r, "uploads/big", int64(6<<20+1)); !bytes.Equal(got, data[6<<20+1:]) {
		t.Fatal("composed object read at an offset differs")
	}
}

// testCopy: blobstore.Copy leaves the source and makes an equal object at dst.
func testCopy(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	data := random(t, 33_333)
	put(t, d, "cp/src", data)
	put(t, d, "cp/dst", []byte("old"))
	if err := blobstore.Copy(ctx, d, "cp/src", "cp/dst"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"cp/src", "cp/dst"} {
		if got := read(t, d, p, 0); !bytes.Equal(got, data) {
			t.Fatalf("%s differs after Copy", p)
		}
	}
	wantNotFound(t, "Copy of nothing", blobstore.Copy(ctx, d, "cp/none", "cp/x"))
}
