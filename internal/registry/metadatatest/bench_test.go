package metadatatest_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/pgtest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// BenchmarkPush is the metadata side of one image push (link a layer, record a manifest
// with its tag, read the tag back) on each engine, one client at a time and in parallel.
func BenchmarkPush(b *testing.B) {
	pg := pgtest.Start(b)
	for _, e := range []struct {
		name string
		open func(b *testing.B) *store.DB
	}{
		{"sqlite", func(b *testing.B) *store.DB { return storetest.SQLite(b) }},
		{"postgresql", func(b *testing.B) *store.DB { return pg.DB(b) }},
	} {
		for _, parallel := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/parallel=%v", e.name, parallel), func(b *testing.B) {
				m, err := registry.NewSQLMetadata(b.Context(), e.open(b))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { m.Close() })
				push := func(i int) {
					now := time.Now()
					l := registry.BlobInfo{Digest: digest.FromString(fmt.Sprint("l", parallel, i)), Size: 4096}
					if err := m.LinkBlob(b.Context(), "bench/app", l, now); err != nil {
						b.Fatal(err)
					}
					rec := registry.ManifestRecord{Repo: "bench/app", Digest: digest.FromString(fmt.Sprint("m", parallel, i)),
						MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 500}
					tag := fmt.Sprint("t", i)
					if err := m.PutManifest(b.Context(), rec, []registry.Reference{{Digest: l.Digest, Size: l.Size}}, []string{tag}, now); err != nil {
						b.Fatal(err)
					}
					if _, err := m.Tag(b.Context(), "bench/app", tag); err != nil {
						b.Fatal(err)
					}
				}
				if !parallel {
					for i := 0; b.Loop(); i++ {
						push(i)
					}
					return
				}
				var n atomic.Int64
				b.RunParallel(func(p *testing.PB) {
					for p.Next() {
						push(int(n.Add(1)))
					}
				})
			})
		}
	}
}
