package seal

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
)

type fixedKeys struct{ root []byte }

func (k fixedKeys) CurrentKey(ctx context.Context) (uint32, []byte, error) { return 1, k.root, nil }
func (k fixedKeys) Key(ctx context.Context, gen uint32) ([]byte, error)    { return k.root, nil }

func benchKeys(b *testing.B) fixedKeys {
	root := make([]byte, KeySize)
	rand.Read(root)
	return fixedKeys{root}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func timeWrite(b *testing.B, d blobstore.Driver, path string, chunk []byte, size int64) time.Duration {
	ctx := context.Background()
	start := time.Now()
	w, err := d.Writer(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	for left := size; left > 0; left -= int64(len(chunk)) {
		if _, err := w.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(context.Background()); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func timeRead(b *testing.B, d blobstore.Driver, path string, off, n int64) time.Duration {
	start := time.Now()
	r, err := d.Reader(context.Background(), path, off)
	if err != nil {
		b.Fatal(err)
	}
	got, err := io.Copy(io.Discard, io.LimitReader(r, n))
	r.Close()
	if err != nil || got != n {
		b.Fatalf("read %d of %d bytes: %v", got, n, err)
	}
	return time.Since(start)
}

// BenchmarkSealedVsPlain writes and reads a 256 MiB object through the filesystem driver,
// plain and sealed, alternating, and reports the median sealed/plain throughput ratios
// (1.0 = no cost; the goal is at least 0.9). Run with -benchtime=1x; each iteration does
// three rounds.
func BenchmarkSealedVsPlain(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	plain, err := filesystem.New(filepath.Join(dir, "plain"))
	if err != nil {
		b.Fatal(err)
	}
	sealedInner, err := filesystem.New(filepath.Join(dir, "sealed"))
	if err != nil {
		b.Fatal(err)
	}
	sealed := NewDriver(sealedInner, benchKeys(b))
	chunk := make([]byte, 1<<20) // what an HTTP handler's io.Copy hands over, roughly
	rand.Read(chunk)
	var wr, rr, pws, sws, prs, srs []float64
	mibs := func(d time.Duration) float64 { return size / float64(1<<20) / d.Seconds() }
	for i := 0; i < b.N; i++ {
		for round := range 3 {
			path := fmt.Sprintf("blobs/%d-%d", i, round)
			pw := timeWrite(b, plain, path, chunk, size)
			sw := timeWrite(b, sealed, path, chunk, size)
			pr := timeRead(b, plain, path, 0, size)
			sr := timeRead(b, sealed, path, 0, size)
			wr = append(wr, pw.Seconds()/sw.Seconds())
			rr = append(rr, pr.Seconds()/sr.Seconds())
			pws, sws, prs, srs = append(pws, mibs(pw)), append(sws, mibs(sw)), append(prs, mibs(pr)), append(srs, mibs(sr))
			plain.Delete(context.Background(), path)
			sealed.Delete(context.Background(), path)
		}
	}
	b.ReportMetric(median(wr), "write-ratio")
	b.ReportMetric(median(rr), "read-ratio")
	b.ReportMetric(median(pws), "plain-write-MiB/s")
	b.ReportMetric(median(sws), "sealed-write-MiB/s")
	b.ReportMetric(median(prs), "plain-read-MiB/s")
	b.ReportMetric(median(srs), "sealed-read-MiB/s")
	b.Logf("sealed/plain throughput, median of %d rounds of 256 MiB: write %.3f, read %.3f", len(wr), median(wr), median(rr))
	b.Logf("medians in MiB/s: write plain %.0f sealed %.0f; read plain %.0f sealed %.0f", median(pws), median(sws), median(prs), median(srs))
}

// sparseSealed stores a sealed object of size bytes at path under the filesystem driver
// rooted at root, but seals only the first and last `edge` segments: the middle is a hole
// in a sparse file. A reader that touches only the edges cannot tell; one that touches the
// middle fails authentication. This makes a 1 GiB sealed object in milliseconds.
func sparseSealed(b *testing.B, root string, path string, keys fixedKeys, size int64, edge int64) {
	h := Header{Generation: 1, SegmentSize: DefaultSegmentSize}
	rand.Read(h.ObjectID[:])
	c, err := newObjectCipher(keys.root, h)
	if err != nil {
		b.Fatal(err)
	}
	c.name = []byte(path) // format version 2: the final segment is bound to the path it is read at
	seg := int64(DefaultSegmentSize)
	n := size/seg + 1 // full segments, then a final one (possibly empty)
	lastLen := size - (n-1)*seg
	f, err := os.OpenFile(filepath.Join(root, "data", filepath.FromSlash(path)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(c.header, 0); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, seg)
	nonce := make([]byte, NonceSize)
	var out []byte
	for i := int64(0); i < n; i++ {
		if i >= edge && i < n-edge {
			continue
		}
		kind, l := byte(kindSegment), seg
		if i == n-1 {
			kind, l = kindFinal, lastLen
		}
		rand.Read(nonce)
		out = c.sealSegment(out[:0], uint64(i), kind, nonce, pt[:l])
		if _, err := f.WriteAt(out, h.SegmentOffset(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangeEndVsStart reads 1 MiB at the end of a sealed 1 GiB object and 1 MiB at
// its start, alternating, and reports the median end/start time ratio (goal: about 1: a
// Range read decrypts only the segments it touches).
func BenchmarkRangeEndVsStart(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	inner, err := filesystem.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeys(b)
	os.MkdirAll(filepath.Join(dir, "data", "blobs"), 0o700)
	sparseSealed(b, dir, "blobs/big", keys, size, 20)
	d := NewDriver(inner, keys)
	if info, err := d.Stat(context.Background(), "blobs/big"); err != nil || info.Size != size {
		b.Fatalf("Stat = %+v, %v", info, err)
	}
	timeRead(b, d, "blobs/big", 0, 1<<20) // warm both ends into the page cache
	timeRead(b, d, "blobs/big", size-1<<20, 1<<20)
	var ratios []float64
	for i := 0; i < b.N; i++ {
		for range 20 {
			start := timeRead(b, d, "blobs/big", 0, 1<<20)
			end := timeRead(b, d, "blobs/big", size-1<<20, 1<<20)
			ratios = append(ratios, end.Seconds()/start.Seconds())
		}
	}
	b.ReportMetric(median(ratios), "end/start")
	b.Logf("1 MiB Range read at the end of a 1 GiB sealed object vs at its start, median of %d: %.3f", len(ratios), median(ratios))
}

// BenchmarkSealSegments is the raw cost of sealing (no storage): bytes per second through
// the writer into a discarding store.
func BenchmarkSealSegments(b *testing.B) {
	c, err := newObjectCipher(make([]byte, KeySize), Header{SegmentSize: DefaultSegmentSize})
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, DefaultSegmentSize)
	nonce := make([]byte, NonceSize)
	out := make([]byte, 0, DefaultSegmentSize+Overhead)
	b.SetBytes(DefaultSegmentSize)
	for i := 0; b.Loop(); i++ {
		rand.Read(nonce)
		out = c.sealSegment(out[:0], uint64(i), kindSegment, nonce, pt)
	}
}
