package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/drivertest"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/seal"
)

// keys is a KeySource for tests: fixed root keys, and an error to simulate revocation.
type keys struct {
	mu      sync.Mutex
	current uint32
	roots   map[uint32][]byte
	err     error
}

func newKeys() *keys {
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	return &keys{current: 1, roots: map[uint32][]byte{1: k}}
}

func (k *keys) CurrentKey(ctx context.Context) (uint32, []byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return 0, nil, k.err
	}
	return k.current, k.roots[k.current], nil
}

func (k *keys) Key(ctx context.Context, gen uint32) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, k.err
	}
	r, ok := k.roots[gen]
	if !ok {
		return nil, fmt.Errorf("no root key of generation %d", gen)
	}
	return r, nil
}

func (k *keys) revoke(err error) { k.mu.Lock(); k.err = err; k.mu.Unlock() }

func newFS(t *testing.T) (*filesystem.Driver, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func TestDriverContract(t *testing.T) {
	for _, seg := range []int{seal.DefaultSegmentSize, 1000} {
		t.Run(fmt.Sprintf("segment%d", seg), func(t *testing.T) {
			drivertest.Run(t, func(t *testing.T) blobstore.Driver {
				inner, _ := newFS(t)
				return seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(seg))
			})
		})
	}
}

// TestDriverContractPlainInner: the sealing driver over a driver with no optional
// capability (no append across requests, no rename, no commit elsewhere), as over S3.
func TestDriverContractPlainInner(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) blobstore.Driver {
		inner, _ := newFS(t)
		return seal.NewDriver(drivertest.Plain(inner), newKeys(), seal.WithSegmentSize(1000))
	})
}

// ctxDriver refuses to create or commit objects under a context that is done, as a network
// store does (a request to S3 under a cancelled context never leaves).
type ctxDriver struct{ *filesystem.Driver }

type ctxWriter struct {
	blobstore.Writer
	ctx context.Context
}

func (d ctxDriver) Writer(ctx context.Context, path string) (blobstore.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, err := d.Driver.Writer(ctx, path)
	return ctxWriter{w, ctx}, err
}

func (w ctxWriter) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.Writer.Commit(ctx)
}

// TestTailSurvivesDisconnect: an upload whose request context ends (the client went away)
// mid-segment keeps its partial last segment: Close writes the tail object under a context
// the disconnect does not cancel, and the upload resumes from the last byte received.
func TestTailSurvivesDisconnect(t *testing.T) {
	inner, _ := newFS(t)
	for _, tc := range []struct {
		name  string
		inner blobstore.Driver
	}{{"resumable", ctxDriver{inner}}, {"plain", drivertest.Plain(ctxDriver{inner})}} {
		t.Run(tc.name, func(t *testing.T) {
			d := seal.NewDriver(tc.inner, newKeys(), seal.WithSegmentSize(1000))
			data := make([]byte, 25_500)
			rand.Read(data)
			ctx, cancel := context.WithCancel(context.Background())
			w, err := d.Writer(ctx, "uploads/"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data[:20_500]); err != nil {
				t.Fatal(err)
			}
			cancel() // the client disconnects; the handler closes the upload
			if err := w.Close(); err != nil {
				t.Fatalf("Close after the request's context ended: %v", err)
			}
			bg := context.Background()
			w, err = d.ResumeWriter(bg, "uploads/"+tc.name)
			if err != nil {
				t.Fatalf("resume after the disconnect: %v", err)
			}
			if w.Size() != 20_500 {
				t.Fatalf("resumed at %d, want 20500 (every byte received)", w.Size())
			}
			w.Write(data[20_500:])
			if err := w.Commit(bg); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, d, "uploads/"+tc.name, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("resumed object differs: %v", err)
			}
		})
	}
}

// grepTree fails the test if any file under dir contains marker.
func grepTree(t *testing.T, dir string, marker []byte) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, marker) {
			t.Errorf("plaintext marker found in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoPlaintextReachesInner writes a marker through committed objects, uploads closed
// mid-segment (resume state), and objects moved into place, then greps every stored file.
func TestNoPlaintextReachesInner(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	d := seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(4096))
	marker := []byte("COFFER-PLAINTEXT-MARKER-7f3a")
	data := bytes.Repeat(marker, 1000)

	put := func(path string, b []byte) {
		w, err := d.Writer(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	put("committed/a", data)
	put("committed/small", marker)
	put("uploads/moved", data)
	if err := d.Move(ctx, "uploads/moved", "blobs/moved"); err != nil {
		t.Fatal(err)
	}
	// An upload left open: one full segment plus a partial one, in the tail object.
	w, err := d.Writer(ctx, "uploads/open")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:4096+100])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// An upload holding less than one segment.
	w, _ = d.Writer(ctx, "uploads/tiny")
	w.Write(marker)
	w.Close()

	if n := grepTree(t, dir, marker); n < 5 {
		t.Fatalf("only %d files stored; the test looked at too little", n)
	}
	// The sealed objects still read back.
	r, err := d.Reader(ctx, "blobs/moved", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("moved object does not read back")
	}
}

func TestResumeAcrossManyCloses(t *testing.T) {
	ctx := context.Background()
	inner, _ := newFS(t)
	d := seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(1000))
	data := make([]byte, 12_345)
	rand.Read(data)
	w, err := d.Writer(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	// Chunk sizes that end mid-segment, exactly on a boundary, and write nothing at all.
	chunks := []int{10, 990, 0, 1000, 1, 2999, 0, 7345}
	off := 0
	for i, n := range chunks {
		if i > 0 {
			if w, err = d.ResumeWriter(ctx, "u"); err != nil {
				t.Fatalf("resume %d: %v", i, err)
			}
			if w.Size() != int64(off) {
				t.Fatalf("resume %d: Size %d, want %d", i, w.Size(), off)
			}
		}
		w.Write(data[off : off+n])
		off += n
		if i < len(chunks)-1 {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int64{0, 999, 1000, 5000, 12_344, 12_345} {
		r, err := d.Reader(ctx, "u", at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[at:]) {
			t.Fatalf("read at %d: %d bytes, %v", at, len(got), err)
		}
	}
	// No resume state is left behind, and it never shows in Walk.
	var paths []string
	inner.Walk(ctx, "", func(i blobstore.Info) error { paths = append(paths, i.Path); return nil })
	if fmt.Sprint(paths) != "[u]" {
		t.Fatalf("inner objects after commit: %v", paths)
	}
}

func TestResumeStateTampered(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	d := seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(1000))
	w, _ := d.Writer(ctx, "u")
	w.Write(make([]byte, 1500))
	w.Close()
	tail := filepath.Join(dir, "data", "u"+seal.TailSuffix)
	b, err := os.ReadFile(tail)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 1
	os.WriteFile(tail, b, 0o600)
	if _, err := d.ResumeWriter(ctx, "u"); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("resume with a tampered tail: %v, want ErrAuth", err)
	}
	os.Remove(tail)
	if _, err := d.ResumeWriter(ctx, "u"); err == nil || !strings.Contains(err.Error(), "restart the upload") {
		t.Fatalf("resume without its tail: %v", err)
	}
}

func TestReservedPaths(t *testing.T) {
	inner, _ := newFS(t)
	d := seal.NewDriver(inner, newKeys())
	if _, err := d.Writer(context.Background(), "x"+seal.TailSuffix); err == nil {
		t.Fatal("a reserved path was accepted")
	}
}

// TestStoredTampering changes stored bytes under the driver: reads fail, they never return
// altered plaintext.
func TestStoredTampering(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	k := newKeys()
	d := seal.NewDriver(inner, k, seal.WithSegmentSize(1000))
	data := make([]byte, 5500)
	rand.Read(data)
	for _, p := range []string{"a", "b"} {
		w, _ := d.Writer(ctx, p)
		w.Write(data)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	file := func(p string) string { return filepath.Join(dir, "data", p) }
	orig, _ := os.ReadFile(file("a"))
	other, _ := os.ReadFile(file("b"))
	slot := 1000 + seal.Overhead
	seg := func(b []byte, i int) []byte { s := seal.HeaderSize + i*slot; return b[s:min(s+slot, len(b))] }
	cases := map[string][]byte{
		"bit flip":  func() []byte { b := bytes.Clone(orig); b[seal.HeaderSize+2*slot+50] ^= 4; return b }(),
		"truncated": orig[:seal.HeaderSize+5*slot],
		"reordered": bytes.Join([][]byte{orig[:seal.HeaderSize], seg(orig, 0), seg(orig, 2), seg(orig, 1), orig[seal.HeaderSize+3*slot:]}, nil),
		"spliced":   bytes.Join([][]byte{orig[:seal.HeaderSize+slot], seg(other, 1), orig[seal.HeaderSize+2*slot:]}, nil),
	}
	for name, stored := range cases {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(file("a"), stored, 0o600)
			for _, at := range []int64{0, 1500} {
				r, err := d.Reader(ctx, "a", at)
				if err != nil {
					continue // refused up front: fine
				}
				_, err = io.ReadAll(r)
				r.Close()
				if !errors.Is(err, seal.ErrAuth) {
					t.Fatalf("read at %d: err = %v, want ErrAuth", at, err)
				}
			}
		})
	}
	// A Range read only touches its own segments: damage in segment 1 does not stop a read
	// of segment 4 onwards.
	b := bytes.Clone(orig)
	b[seal.HeaderSize+slot+60] ^= 1
	os.WriteFile(file("a"), b, 0o600)
	r, err := d.Reader(ctx, "a", 4000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[4000:]) {
		t.Fatalf("range read past damage: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	ctx := context.Background()
	inner, _ := newFS(t)
	d := seal.NewDriver(inner, newKeys())
	w, _ := d.Writer(ctx, "x")
	w.Write([]byte("secret"))
	w.Commit(ctx)
	other := seal.NewDriver(inner, newKeys()) // same generation number, another root key
	// The reader authenticates its first segments when it opens: it fails there, or at
	// the latest on the read, and never returns a byte.
	r, err := other.Reader(ctx, "x", 0)
	if err == nil {
		got, rerr := io.ReadAll(r)
		r.Close()
		if len(got) > 0 {
			t.Fatalf("read under the wrong key returned %d bytes", len(got))
		}
		err = rerr
	}
	if !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("read under the wrong key: %v, want ErrAuth", err)
	}
}

// TestKeySourceRefusal: when the key source refuses (revoked KEK), reads, writes, commits and
// resumes fail with its error, and work again once it answers.
func TestKeySourceRefusal(t *testing.T) {
	ctx := context.Background()
	inner, _ := newFS(t)
	k := newKeys()
	d := seal.NewDriver(inner, k)
	w, _ := d.Writer(ctx, "old")
	w.Write([]byte("before"))
	w.Commit(ctx)
	open, _ := d.Writer(ctx, "open")
	open.Write([]byte("pending"))

	revoked := errors.New("key vault denied unwrapKey")
	k.revoke(revoked)
	if _, err := d.Reader(ctx, "old", 0); !errors.Is(err, revoked) {
		t.Errorf("Reader: %v", err)
	}
	if _, err := d.Writer(ctx, "new"); !errors.Is(err, revoked) {
		t.Errorf("Writer: %v", err)
	}
	if _, err := open.Write([]byte("more")); !errors.Is(err, revoked) {
		t.Errorf("Write: %v", err)
	}
	if err := open.Commit(ctx); !errors.Is(err, revoked) {
		t.Errorf("Commit: %v", err)
	}
	open.Close()

	// A read under way stops too (within a few segments).
	k.revoke(nil)
	big, _ := d.Writer(ctx, "big")
	big.Write(make([]byte, 40*seal.DefaultSegmentSize))
	if err := big.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rb, err := d.Reader(ctx, "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rb, make([]byte, seal.DefaultSegmentSize)); err != nil {
		t.Fatal(err)
	}
	k.revoke(revoked)
	if _, err := io.Copy(io.Discard, rb); !errors.Is(err, revoked) {
		t.Errorf("read under way after revocation: %v", err)
	}
	rb.Close()

	k.revoke(nil)
	r, err := d.Reader(ctx, "old", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "before" {
		t.Fatalf("after restore: %q", got)
	}
}

// TestSubstitutedObject puts one sealed object in another's place (same size, same root
// key, as a write to the blob store can): reads of the path fail to open, at offset 0 and
// at an offset, and never return the other object's bytes.
func TestSubstitutedObject(t *testing.T) {
	ctx := context.Background()
	inner, dir := newFS(t)
	d := seal.NewDriver(inner, newKeys(), seal.WithSegmentSize(1000))
	content := map[string][]byte{}
	for _, p := range []string{"blobs/a", "blobs/b"} {
		content[p] = make([]byte, 5500)
		rand.Read(content[p])
		w, _ := d.Writer(ctx, p)
		w.Write(content[p])
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	file := func(p string) string { return filepath.Join(dir, "data", filepath.FromSlash(p)) }
	a, _ := os.ReadFile(file("blobs/a"))
	b, _ := os.ReadFile(file("blobs/b"))
	os.WriteFile(file("blobs/a"), b, 0o600)
	os.WriteFile(file("blobs/b"), a, 0o600)
	for _, p := range []string{"blobs/a", "blobs/b"} {
		for _, at := range []int64{0, 1500, 5000} {
			r, err := d.Reader(ctx, p, at)
			if err == nil {
				got, rerr := io.ReadAll(r)
				r.Close()
				t.Fatalf("%s at %d: opened a substituted object (%d bytes, read err %v)", p, at, len(got), rerr)
			}
			if !errors.Is(err, seal.ErrAuth) {
				t.Fatalf("%s at %d: err = %v, want ErrAuth", p, at, err)
			}
		}
	}
	// Put back, they read again.
	os.WriteFile(file("blobs/a"), a, 0o600)
	r, err := d.Reader(ctx, "blobs/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, content["blobs/a"]) {
		t.Fatalf("restored object: %v", err)
	}
}

// countingInner counts the inner driver's reads and stats.
type countingInner struct {
	*filesystem.Driver
	mu            sync.Mutex
	readers, stat int
}

func (c *countingInner) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.readers++
	c.mu.Unlock()
	return c.Driver.Reader(ctx, path, offset)
}

func (c *countingInner) Stat(ctx context.Context, path string) (blobstore.Info, error) {
	c.mu.Lock()
	c.stat++
	c.mu.Unlock()
	return c.Driver.Stat(ctx, path)
}

func (c *countingInner) take() (readers, stats int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	readers, stats, c.readers, c.stat = c.readers, c.stat, 0, 0
	return readers, stats
}

// TestRangeReadIsOneRequest: the first read of an object fetches its header and final
// segment besides the range; a later range read of it is one inner read and no stat. An
// object replaced at the path (by another replica: another driver on the same store) is
// read as the new object, never as a mix.
func TestRangeReadIsOneRequest(t *testing.T) {
	fsd, _ := newFS(t)
	inner := &countingInner{Driver: fsd}
	k := newKeys()
	d := seal.NewDriver(inner, k)
	other := seal.NewDriver(fsd, k)
	data := make([]byte, 3<<20)
	rand.Read(data)
	put(t, d, "blobs/a", data, "")
	inner.take()
	if got, err := readAll(t, d, "blobs/a", 2<<20+5); err != nil || !bytes.Equal(got, data[2<<20+5:]) {
		t.Fatalf("first range read: %v", err)
	}
	if r, s := inner.take(); r+s > 3 {
		t.Fatalf("the first range read made %d reads and %d stats, want at most 3 requests", r, s)
	}
	for _, off := range []int64{1<<20 + 100_000, 0, 3<<20 - 1} {
		r, err := d.Reader(context.Background(), "blobs/a", off)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("range read at %d: %v", off, err)
		}
		if r, s := inner.take(); r != 1 || s != 0 {
			t.Fatalf("a range read at %d of an object read before made %d reads and %d stats, want 1 read", off, r, s)
		}
	}
	// Another replica replaces the object with one of the same size.
	data2 := make([]byte, len(data))
	rand.Read(data2)
	put(t, other, "blobs/a", data2, "")
	if got, err := readAll(t, d, "blobs/a", 1<<20); err != nil || !bytes.Equal(got, data2[1<<20:]) {
		t.Fatalf("range read after the object was replaced elsewhere: %v (old bytes: %v)", err, bytes.Equal(got, data[1<<20:]))
	}
	// And truncates it.
	w, _ := fsd.Writer(context.Background(), "blobs/a")
	r, _ := fsd.Reader(context.Background(), "blobs/a", 0)
	io.CopyN(w, r, 2<<20)
	r.Close()
	w.Commit(context.Background())
	if _, err := readAll(t, d, "blobs/a", 1<<20); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("range read of a truncated object: %v, want ErrAuth", err)
	}
}

// TestWalkSkipsObjectsDeletedMeanwhile: an object another replica deletes between the
// inner listing and the read of its header is left out of Walk, not an error that stops
// the walk (the registry's collector walks blobs/ while another replica's sweeps them).
func TestWalkSkipsObjectsDeletedMeanwhile(t *testing.T) {
	ctx := context.Background()
	fsd, _ := newFS(t)
	k := newKeys()
	a, b := seal.NewDriver(fsd, k), seal.NewDriver(pagedInner{fsd}, k)
	for _, p := range []string{"blobs/a", "blobs/b", "blobs/c"} {
		put(t, a, p, []byte("content of "+p), "")
	}
	var seen []string
	err := b.Walk(ctx, "blobs/", func(i blobstore.Info) error {
		if len(seen) == 0 {
			// The inner driver has listed the directory; replica A deletes b now.
			if err := a.Delete(ctx, "blobs/b"); err != nil {
				t.Fatal(err)
			}
		}
		seen = append(seen, i.Path)
		return nil
	})
	if err != nil {
		t.Fatalf("walk while another replica deletes: %v", err)
	}
	if strings.Join(seen, ",") != "blobs/a,blobs/c" {
		t.Fatalf("walked %v, want blobs/a and blobs/c", seen)
	}
}

// pagedInner lists a whole page before handing out its entries, as S3's ListObjectsV2
// does: an entry may name an object deleted since.
type pagedInner struct{ *filesystem.Driver }

func (p pagedInner) Walk(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	var page []blobstore.Info
	if err := p.Driver.Walk(ctx, prefix, func(i blobstore.Info) error { page = append(page, i); return nil }); err != nil {
		return err
	}
	for _, i := range page {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}
