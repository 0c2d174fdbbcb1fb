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
// call).
func Run(t *testing.T, newDriver func(t *testing.T) blobstore.Driver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d blobstore.Driver)
	}{
		{"WriteCommitRead", testWriteCommitRead},
		{"EmptyObject", testEmptyObject},
		{"InvisibleUntilCommit", testInvisibleUntilCommit},
		{"ResumeAfterClose", testResumeAfterClose},
		{"ResumeMissing", testResumeMissing},
		{"NewWriterDiscardsUncommitted", testNewWriterDiscards},
		{"Cancel", testCancel},
		{"ReaderAtOffset", testReaderAtOffset},
		{"LargeObject", testLargeObject},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
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
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newDriver(t)) })
	}
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

func testResumeAfterClose(t *testing.T, d blobstore.Driver) {
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

func testResumeMissing(t *testing.T, d blobstore.Driver) {
	_, err := d.ResumeWriter(context.Background(), "nothing/here")
	wantNotFound(t, "ResumeWriter of nothing", err)
}

func testNewWriterDiscards(t *testing.T, d blobstore.Driver) {
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

func testCancel(t *testing.T, d blobstore.Driver) {
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
	if err := d.Move(ctx, "uploads/m", "blobs/sha256/ab/abcd"); err != nil {
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
	if err := d.Move(ctx, "src", "dst"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "dst", 0); string(got) != "new content" {
		t.Fatalf("dst = %q after Move", got)
	}
}

func testMoveMissing(t *testing.T, d blobstore.Driver) {
	ctx := context.Background()
	err := d.Move(ctx, "nope", "dst")
	wantNotFound(t, "Move of nothing", err)
	// An uncommitted object cannot be moved.
	w, _ := d.Writer(ctx, "pending")
	w.Write([]byte("x"))
	w.Close()
	wantNotFound(t, "Move of an uncommitted object", d.Move(ctx, "pending", "dst"))
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
	if err := d.Move(ctx, "k2", "k"); err != nil {
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

func testDeleteUncommitted(t *testing.T, d blobstore.Driver) {
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

func testWalkSkipsUncommitted(t *testing.T, d blobstore.Driver) {
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
				if err := d.Move(ctx, up, dst); err != nil {
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
