package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// TestListingsDefaultPageSize: without n, the catalog and a tags list answer at most
// registry.DefaultPageSize entries with a Link to the next page; n above
// registry.MaxPageSize is capped to it; following the Links lists everything once.
func TestListingsDefaultPageSize(t *testing.T) {
	total := registry.DefaultPageSize + 3
	const repo = "pages/app"
	var repos []string
	for i := range total {
		repos = append(repos, fmt.Sprintf("pages/r%04d", i))
	}
	c := newV2(t, newService(t), append([]string{repo}, repos...)...)
	cfg := []byte(`{"pages":true}`)
	cd := c.blob(repo, cfg)
	m := ociManifest(desc(ociConfig, cd, len(cfg)))
	q := ""
	for i := range total {
		q += fmt.Sprintf("&tag=t%04d", i)
	}
	if a := c.manifest(repo, digest.FromBytes(m).String()+"?"+q[1:], registry.MediaTypeOCIManifest, m); a.status != http.StatusCreated {
		t.Fatalf("push with %d tags: %s", total, a)
	}
	for _, r := range repos {
		c.blob(r, cfg)
	}
	type page struct {
		Repositories []string `json:"repositories"`
		Tags         []string `json:"tags"`
	}
	walk := func(what, first string, items func(page) []string) {
		t.Helper()
		path := first
		var all []string
		for pages := 0; path != ""; pages++ {
			if pages > total {
				t.Fatalf("%s: the Links do not end", what)
			}
			a := c.do("GET", path, nil)
			if a.status != http.StatusOK {
				t.Fatalf("GET %s: %s", path, a)
			}
			var p page
			json.Unmarshal(a.body, &p)
			got := items(p)
			if len(got) > registry.DefaultPageSize {
				t.Fatalf("GET %s: %d entries, more than the default page size %d", path, len(got), registry.DefaultPageSize)
			}
			if pages == 0 && len(got) != registry.DefaultPageSize {
				t.Fatalf("GET %s: first page of %d entries, want %d", path, len(got), registry.DefaultPageSize)
			}
			all = append(all, got...)
			path = ""
			if l := a.header.Get("Link"); l != "" {
				start, end := strings.Index(l, "<"), strings.Index(l, ">")
				if start < 0 || end < start || !strings.Contains(l, `rel="next"`) {
					t.Fatalf("GET %s: Link %q", first, l)
				}
				path = l[start+1 : end]
			}
		}
		if len(all) < total {
			t.Fatalf("%s: %d entries over all pages, want at least %d", what, len(all), total)
		}
		seen := map[string]bool{}
		for _, s := range all {
			if seen[s] {
				t.Fatalf("%s: %s listed twice", what, s)
			}
			seen[s] = true
		}
	}
	walk("tags", "/v2/"+repo+"/tags/list", func(p page) []string { return p.Tags })
	walk("catalog", "/v2/_catalog", func(p page) []string { return p.Repositories })

	// n above the maximum is capped (the answer is still a page, with a Link if more).
	a := c.do("GET", fmt.Sprintf("/v2/%s/tags/list?n=%d", repo, registry.MaxPageSize+1), nil)
	var p page
	json.Unmarshal(a.body, &p)
	if a.status != http.StatusOK || len(p.Tags) > registry.MaxPageSize {
		t.Fatalf("tags with n over the maximum: %d, %d tags", a.status, len(p.Tags))
	}
}
