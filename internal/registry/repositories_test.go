package registry

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRepositoriesMatchesRepositoryInfo: the batched listing gives, for every repository
// and across pages, exactly the figures the per-repository summary gives (shared blobs,
// several tags on one manifest, a blob-only repository).
func TestRepositoriesMatchesRepositoryInfo(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, time.Hour)
	shared := []byte("shared layer")
	for i := range 5 {
		repo := fmt.Sprintf("team/app-%d", i)
		cfg := []byte(fmt.Sprintf(`{"n":%d}`, i))
		cd := f.blob(t, repo, cfg)
		f.blob(t, repo, shared)
		own := []byte(fmt.Sprintf("layer of %d", i))
		f.blob(t, repo, own)
		m := imageManifest(cd, len(cfg), shared, own)
		for j := range i + 1 {
			if _, err := f.svc.PutManifest(ctx, repo, fmt.Sprintf("v%d", j), MediaTypeOCIManifest, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.blob(t, "blobs/only", []byte("a lone blob of some bytes"))
	names, _, err := f.svc.Catalog(ctx, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]RepositoryInfo{}
	for _, n := range names {
		info, err := f.svc.Repository(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		want[n] = info
	}
	if len(want) != 6 {
		t.Fatalf("fixture has %d repositories, want 6: %v", len(want), names)
	}
	if w := want["team/app-4"]; w.TagCount != 5 || w.ManifestCount != 1 || w.BlobCount != 3 || w.Size == 0 {
		t.Fatalf("fixture summary unexpected: %+v", w)
	}
	for _, page := range []int{-1, 1, 2, 3, 7, 100} {
		var got []RepositoryInfo
		last := ""
		for {
			infos, more, err := f.svc.Repositories(ctx, last, page)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, infos...)
			if !more {
				break
			}
			last = infos[len(infos)-1].Name
		}
		if len(got) != len(names) {
			t.Fatalf("page %d: %d repositories, want %d", page, len(got), len(names))
		}
		for i, info := range got {
			if info.Name != names[i] {
				t.Fatalf("page %d: order %d = %s, want %s", page, i, info.Name, names[i])
			}
			w := want[info.Name]
			if !info.Created.Equal(w.Created) || info.ManifestCount != w.ManifestCount || info.TagCount != w.TagCount ||
				info.BlobCount != w.BlobCount || info.Size != w.Size {
				t.Fatalf("page %d: %s = %+v, RepositoryInfo = %+v", page, info.Name, info, w)
			}
		}
	}
}
