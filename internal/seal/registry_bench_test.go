package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/blobstore/filesystem"
	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/seal"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func newRegistry(b *testing.B, dir string, wrap func(blobstore.Driver) blobstore.Driver) *registry.Service {
	ctx := context.Background()
	fs, err := filesystem.New(filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	db := storetest.SQLiteAt(b, filepath.Join(dir, "metadata.db"))
	meta, err := registry.NewSQLMetadata(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	return registry.New(wrap(fs), meta, registry.Options{})
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkRegistryPushPullSealedVsPlain pushes (digest-verified monolithic upload) and
// pulls a 256 MiB blob through the registry service, once over the plain filesystem driver
// and once over the sealing driver on the same kind of storage, alternating, and reports
// the median sealed/plain throughput ratios (goal: at least 0.9). Run with -benchtime=1x.
func BenchmarkRegistryPushPullSealedVsPlain(b *testing.B) {
	const size = 256 << 20
	ctx := context.Background()
	plain := newRegistry(b, b.TempDir(), func(d blobstore.Driver) blobstore.Driver { return d })
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	keys := &keysFixed{root: k}
	sealed := newRegistry(b, b.TempDir(), func(d blobstore.Driver) blobstore.Driver { return seal.NewDriver(d, keys) })
	var push, pull []float64
	for i := 0; i < b.N; i++ {
		for round := range 3 {
			blob := make([]byte, size)
			rand.Read(blob[:1<<20])
			copy(blob[size-8:], fmt.Sprint(i, round))
			d := digest.FromBytes(blob)
			timed := func(svc *registry.Service) (time.Duration, time.Duration) {
				start := time.Now()
				if _, err := svc.PutBlob(ctx, "bench/app", d, bytes.NewReader(blob)); err != nil {
					b.Fatal(err)
				}
				pushed := time.Since(start)
				start = time.Now()
				r, _, err := svc.OpenBlob(ctx, "bench/app", d, 0)
				if err != nil {
					b.Fatal(err)
				}
				v := d.Verifier()
				if _, err := io.Copy(v, r); err != nil || !v.Verified() {
					b.Fatalf("pull: %v (verified %v)", err, v.Verified())
				}
				r.Close()
				return pushed, time.Since(start)
			}
			pp, pl := timed(plain)
			sp, sl := timed(sealed)
			b.Logf("round %d: push plain %v sealed %v; pull plain %v sealed %v", round, pp, sp, pl, sl)
			push = append(push, pp.Seconds()/sp.Seconds())
			pull = append(pull, pl.Seconds()/sl.Seconds())
		}
	}
	b.ReportMetric(medianOf(push), "push-ratio")
	b.ReportMetric(medianOf(pull), "pull-ratio")
	b.Logf("registry service, 256 MiB blob, sealed/plain throughput, median of %d: push %.3f, pull %.3f", len(push), medianOf(push), medianOf(pull))
}

type keysFixed struct{ root []byte }

func (k *keysFixed) CurrentKey(ctx context.Context) (uint32, []byte, error) { return 1, k.root, nil }
func (k *keysFixed) Key(ctx context.Context, gen uint32) ([]byte, error)    { return k.root, nil }
