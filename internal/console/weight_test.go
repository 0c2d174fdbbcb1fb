package console_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var assetRef = regexp.MustCompile(`(?:src|href)="(/console/static/[^"]+)"`)

// pageWeight is the bytes a browser transfers for path: the page and every script and
// stylesheet it loads (bodies as sent; the console's files are not compressed).
func pageWeight(t testing.TB, e *env, c *http.Client, path string) (page, total int) {
	t.Helper()
	fetch := func(p string) []byte {
		resp, err := c.Get(e.Inst.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", p, resp.StatusCode)
		}
		return b
	}
	html := fetch(path)
	total = len(html)
	for _, m := range assetRef.FindAllSubmatch(html, -1) {
		total += len(fetch(string(m[1])))
	}
	return len(html), total
}

// TestOverviewPageWeight: the overview, with its scripts and styles, is under 150 KB.
func TestOverviewPageWeight(t *testing.T) {
	e := start(t)
	c, _ := e.session(t, "admin", e.Inst.AdminPassword)
	page, total := pageWeight(t, e, c, "/console/")
	t.Logf("overview: page %d bytes, with scripts and styles %d bytes", page, total)
	if total >= 150<<10 {
		t.Fatalf("overview weighs %d bytes, over 150 KB", total)
	}
	if page == total {
		t.Fatal("no script or stylesheet was counted")
	}
}

// BenchmarkOverview1000Repositories serves the overview (round trip over loopback TLS,
// an upper bound of the server time) with 1,000 repositories in the registry.
func BenchmarkOverview1000Repositories(b *testing.B) {
	e := start(b) // one repository, team/app, plus 999 below: 1,000
	img, err := random.Image(512, 1)
	if err != nil {
		b.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	opts := e.remoteOpts("admin", e.Inst.AdminPassword)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	sem := make(chan struct{}, 8)
	for i := range 999 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ref, _ := name.ParseReference(fmt.Sprintf("%s/bench/repo-%04d:v1", e.host, i))
			if err := remote.Write(ref, img, opts...); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	c, _ := e.session(b, "admin", e.Inst.AdminPassword)
	page, total := pageWeight(b, e, c, "/console/")
	b.ReportMetric(float64(total), "bytes-with-assets")
	b.ReportMetric(float64(page), "page-bytes")
	serve := func(b *testing.B, c *http.Client, path string, hdr http.Header) {
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodGet, e.Inst.URL+path, nil)
			req.Header = hdr.Clone()
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("%s = %d", path, resp.StatusCode)
			}
		}
	}
	// The overview page, and for comparison the one management call that dominates it
	// (the repository listing the overview sums), made directly as the CLI would.
	b.Run("overview", func(b *testing.B) { serve(b, c, "/console/", http.Header{}) })
	b.Run("listRepositoriesAPI", func(b *testing.B) {
		serve(b, e.Inst.Client, "/coffer/v1/registry/repositories?n=1000", http.Header{"Authorization": {"Bearer " + e.Token}})
	})
}
