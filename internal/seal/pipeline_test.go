package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/seal"
)

// The writer seals and the reader opens 16 segments at a time in a worker goroutine; with
// 100-byte segments a batch is 1600 bytes, so these sizes cross batch boundaries every way.
const pipeSeg = 100

func pipeDriver(t *testing.T) (*seal.Driver, blobstore.Driver, string, *keys) {
	inner, dir := newFS(t)
	k := newKeys()
	return seal.NewDriver(inner, k, seal.WithSegmentSize(pipeSeg)), inner, dir, k
}

func readAt(t *testing.T, d blobstore.Driver, path string, at int64) ([]byte, error) {
	t.Helper()
	r, err := d.Reader(context.Background(), path, at)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestPipelineRoundTrip writes objects of sizes around batch boundaries in chunks of
// various sizes and reads them back whole and from offsets around the boundaries.
func TestPipelineRoundTrip(t *testing.T) {
	ctx := context.Background()
	d, _, _, _ := pipeDriver(t)
	batch := 16 * pipeSeg
	sizes := []int{0, 1, pipeSeg, batch - 1, batch, batch + 1, 2 * batch, 3*batch + 50, 10*batch + 7}
	chunks := []int{1, 99, 100, 1600, 1601, 1 << 20}
	for _, size := range sizes {
		for _, chunk := range chunks {
			t.Run(fmt.Sprintf("size%d/chunk%d", size, chunk), func(t *testing.T) {
				data := make([]byte, size)
				rand.Read(data)
				path := fmt.Sprintf("o%d-%d", size, chunk)
				w, err := d.Writer(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				for off := 0; off < size; off += chunk {
					n, err := w.Write(data[off:min(off+chunk, size)])
					if err != nil || n != min(chunk, size-off) {
						t.Fatalf("write at %d: %d, %v", off, n, err)
					}
					if w.Size() != int64(off+n) {
						t.Fatalf("Size %d after %d bytes", w.Size(), off+n)
					}
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if info, err := d.Stat(ctx, path); err != nil || info.Size != int64(size) {
					t.Fatalf("Stat: %+v, %v", info, err)
				}
				offsets := []int{0}
				if chunk == 1 { // every offset once per size is enough
					offsets = []int{0, 1, pipeSeg - 1, batch - 1, batch, batch + 1, 2*batch + 3, size - 1, size}
				}
				for _, at := range offsets {
					if at < 0 || at > size {
						continue
					}
					got, err := readAt(t, d, path, int64(at))
					if err != nil || !bytes.Equal(got, data[at:]) {
						t.Fatalf("read at %d: %d bytes (want %d), %v", at, len(got), size-at, err)
					}
				}
			})
		}
	}
}

// TestPipelineResume closes and resumes an upload at points inside, at and across batch
// boundaries: every full segment is stored before Close returns, the partial one goes to
// the tail.
func TestPipelineResume(t *testing.T) {
	ctx := context.Background()
	d, _, _, _ := pipeDriver(t)
	data := make([]byte, 9000)
	rand.Read(data)
	cuts := []int{1599, 1600, 1601, 1700, 5000, 5000, 8000}
	w, err := d.Writer(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for i, cut := range cuts {
		if i > 0 {
			if w, err = d.ResumeWriter(ctx, "u"); err != nil {
				t.Fatalf("resume at %d: %v", off, err)
			}
			if w.Size() != int64(off) {
				t.Fatalf("resumed Size %d, want %d", w.Size(), off)
			}
		}
		w.Write(data[off:cut])
		off = cut
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w, err = d.ResumeWriter(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[off:])
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := readAt(t, d, "u", 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
}

// TestPipelineTampering damages segments in later batches and cuts the object at a batch
// boundary: reads fail with ErrAuth and never hand out the damaged segment's batch.
func TestPipelineTampering(t *testing.T) {
	ctx := context.Background()
	d, _, dir, _ := pipeDriver(t)
	data := make([]byte, 32*pipeSeg) // 32 full segments (two batches) and an empty final one
	rand.Read(data)
	w, _ := d.Writer(ctx, "a")
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "data", "a")
	orig, _ := os.ReadFile(file)
	slot := pipeSeg + seal.Overhead
	cases := map[string][]byte{
		"bit flip in batch 2":         func() []byte { b := bytes.Clone(orig); b[seal.HeaderSize+20*slot+40] ^= 1; return b }(),
		"cut at the batch boundary":   orig[:seal.HeaderSize+16*slot],
		"final segment removed":       orig[:seal.HeaderSize+32*slot],
		"one byte past the boundary":  orig[:seal.HeaderSize+16*slot+1],
		"trailing garbage":            append(bytes.Clone(orig), 1, 2, 3),
		"segment from batch 1 copied": append(bytes.Clone(orig[:seal.HeaderSize+20*slot]), orig[seal.HeaderSize+3*slot:]...),
	}
	for name, stored := range cases {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(file, stored, 0o600)
			got, err := readAt(t, d, "a", 0)
			if !errors.Is(err, seal.ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
			if !bytes.Equal(got, data[:len(got)]) || len(got)%(16*pipeSeg) != 0 {
				t.Fatalf("read %d bytes before failing; want whole intact batches only", len(got))
			}
		})
	}
}

// failingDriver's writers fail once they have taken limit bytes.
type failingDriver struct {
	blobstore.Driver
	limit int64
}

func (f failingDriver) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	w, err := f.Driver.Writer(ctx, path)
	return &failingWriter{Writer: w, left: f.limit}, err
}

type failingWriter struct {
	blobstore.Writer
	left int64
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errDiskFull
	}
	w.left -= int64(len(p))
	return w.Writer.Write(p)
}

// TestPipelineInnerFailure: a storage failure in the worker surfaces on a later Write or on
// Commit, and the object is not committed.
func TestPipelineInnerFailure(t *testing.T) {
	ctx := context.Background()
	inner, _ := newFS(t)
	d := seal.NewDriver(failingDriver{inner, 5000}, newKeys(), seal.WithSegmentSize(pipeSeg))
	w, err := d.Writer(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 700)
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	cerr := w.Commit(ctx)
	if !errors.Is(werr, errDiskFull) && !errors.Is(cerr, errDiskFull) {
		t.Fatalf("Write: %v, Commit: %v; want the inner writer's error", werr, cerr)
	}
	if !errors.Is(cerr, errDiskFull) {
		t.Fatalf("Commit after a failed write: %v", cerr)
	}
	w.Cancel(ctx)
	if _, err := d.Stat(ctx, "x"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after a failed upload: %v", err)
	}

	// The same with Close: it reports the failure and leaves no resume state.
	w, _ = d.Writer(ctx, "y")
	for range 20 {
		w.Write(chunk)
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close after a failed write: %v", err)
	}
	if _, err := d.ResumeWriter(ctx, "y"); err == nil {
		t.Fatal("resumed an upload whose stored bytes are incomplete")
	}
}

// TestPipelineNoLeak: readers closed mid-stream, cancelled writers and revoked reads stop
// their workers.
func TestPipelineNoLeak(t *testing.T) {
	ctx := context.Background()
	d, _, _, k := pipeDriver(t)
	data := make([]byte, 100*pipeSeg)
	rand.Read(data)
	w, _ := d.Writer(ctx, "big")
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for i := range 20 {
		r, err := d.Reader(ctx, "big", int64(i*137))
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(r, make([]byte, 1700+i*50)) // into the second batch: the stages run
		r.Close()
		if n, err := r.Read(make([]byte, 10)); n != 0 || err == nil {
			t.Fatalf("Read after Close: %d, %v", n, err)
		}

		w, _ := d.Writer(ctx, fmt.Sprint("c", i))
		w.Write(data)
		w.Cancel(ctx)
	}
	r, _ := d.Reader(ctx, "big", 0)
	io.ReadFull(r, make([]byte, 10))
	revoked := errors.New("revoked")
	k.revoke(revoked)
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, revoked) {
		t.Fatalf("read under way after revocation: %v", err)
	}
	r.Close()
	k.revoke(nil)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after closing everything, %d before", n, before)
	}
}
