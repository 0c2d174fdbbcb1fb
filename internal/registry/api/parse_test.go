package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/registry"
)

func TestParsePath(t *testing.T) {
	cases := map[string]route{
		"/v2/":                                   {kind: "base"},
		"/v2/_catalog":                           {kind: "catalog"},
		"/v2/a/b/manifests/v1":                   {kind: "manifest", name: "a/b", ref: "v1"},
		"/v2/a/blobs/sha256:x":                   {kind: "blob", name: "a", ref: "sha256:x"},
		"/v2/a/blobs/uploads/":                   {kind: "upload-start", name: "a"},
		"/v2/a/blobs/uploads":                    {kind: "upload-start", name: "a"},
		"/v2/a/blobs/uploads/id1":                {kind: "upload", name: "a", ref: "id1"},
		"/v2/blobs/blobs/uploads/id1":            {kind: "upload", name: "blobs", ref: "id1"},
		"/v2/x/manifests/manifests/tag":          {kind: "manifest", name: "x/manifests", ref: "tag"},
		"/v2/a/tags/list":                        {kind: "tags", name: "a"},
		"/v2/a/referrers/sha256:x":               {kind: "referrers", name: "a", ref: "sha256:x"},
		"/v2/a/b/_trust/tuf/root.json":           {kind: "trust", name: "a/b"},
		"/v2/deep/er/name/blobs/uploads/abc-123": {kind: "upload", name: "deep/er/name", ref: "abc-123"},
	}
	for p, want := range cases {
		got, ok := parsePath(p)
		if !ok || got != want {
			t.Errorf("parsePath(%q) = %+v %v, want %+v", p, got, ok, want)
		}
	}
	for _, p := range []string{"/v1/", "/v2/a", "/v2/a/unknown/x"} {
		if got, ok := parsePath(p); ok {
			t.Errorf("parsePath(%q) = %+v, want no route", p, got)
		}
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		h          string
		size       int64
		start, end int64
		partial    bool
		ok         bool
	}{
		{"", 10, 0, 10, false, true},
		{"bytes=0-0", 10, 0, 1, true, true},
		{"bytes=2-", 10, 2, 10, true, true},
		{"bytes=-3", 10, 7, 10, true, true},
		{"bytes=-30", 10, 0, 10, true, true},
		{"bytes=5-100", 10, 5, 10, true, true},
		{"bytes=10-", 10, 0, 0, false, false},
		{"bytes=5-4", 10, 0, 0, false, false},
		{"bytes=0-1,3-4", 10, 0, 0, false, false},
		{"items=0-1", 10, 0, 0, false, false},
		{"bytes=-0", 10, 0, 0, false, false},
		{"bytes=0-", 0, 0, 0, false, false},
		{"bytes=x-1", 10, 0, 0, false, false},
	}
	for _, c := range cases {
		s, e, p, ok := parseRange(c.h, c.size)
		if ok != c.ok || (ok && (s != c.start || e != c.end || p != c.partial)) {
			t.Errorf("parseRange(%q, %d) = %d %d %v %v", c.h, c.size, s, e, p, ok)
		}
	}
}

func TestChunkStart(t *testing.T) {
	cases := []struct {
		h    string
		cl   int64
		want int64
		err  bool
	}{
		{"", 5, -1, false},
		{"0-4", 5, 0, false},
		{"10-19", 10, 10, false},
		{"bytes 10-19/100", 10, 10, false},
		{"0-4", 6, 0, true},
		{"x-4", 5, 0, true},
		{"5-1", 5, 0, true},
	}
	for _, c := range cases {
		r, _ := http.NewRequest("PATCH", "/", strings.NewReader(""))
		r.ContentLength = c.cl
		if c.h != "" {
			r.Header.Set("Content-Range", c.h)
		}
		got, err := chunkStart(r)
		if (err != nil) != c.err || (err == nil && got != c.want) {
			t.Errorf("chunkStart(%q) = %d, %v", c.h, got, err)
		}
	}
}

// FuzzParseRange: any Range header against any size yields a range inside the blob.
func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-10", int64(100))
	f.Add("bytes=-5", int64(3))
	f.Add("bytes=9223372036854775807-", int64(10))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		s, e, _, ok := parseRange(h, size)
		if ok && (s < 0 || e > size || s > e) {
			t.Fatalf("parseRange(%q, %d) = [%d, %d)", h, size, s, e)
		}
	})
}

// FuzzParsePath: any path parses without panicking, and a route's parts rebuild it.
func FuzzParsePath(f *testing.F) {
	f.Add("/v2/a/b/manifests/v1")
	f.Add("/v2/a/blobs/uploads/")
	f.Add("/v2//blobs/uploads/x")
	f.Fuzz(func(t *testing.T, p string) {
		rt, ok := parsePath(p)
		if ok && rt.ref != "" && !strings.HasSuffix(p, rt.ref) {
			t.Fatalf("parsePath(%q) = %+v", p, rt)
		}
	})
}

func TestStatusOf(t *testing.T) {
	cases := map[registry.Code]int{
		registry.CodeBlobUnknown: 404, registry.CodeBlobUploadInvalid: 400, registry.CodeBlobUploadUnknown: 404,
		registry.CodeDigestInvalid: 400, registry.CodeManifestBlobUnknown: 400, registry.CodeManifestInvalid: 400,
		registry.CodeManifestUnknown: 404, registry.CodeNameInvalid: 400, registry.CodeNameUnknown: 404,
		registry.CodeSizeInvalid: 400, registry.CodeUnauthorized: 401, registry.CodeDenied: 403,
		registry.CodeUnsupported: 405, registry.CodeTooManyRequests: 429,
	}
	for code, want := range cases {
		if got := statusOf(&registry.Error{Code: code}); got != want {
			t.Errorf("%s → %d, want %d", code, got, want)
		}
	}
	if got := statusOf(registry.TooLarge(5, 4)); got != 413 {
		t.Errorf("too large → %d", got)
	}
	rec := httptest.NewRecorder()
	(&Handler{cfg: Config{}}).fail(rec, httptest.NewRequest("GET", "/v2/", nil), &registry.Error{Code: registry.CodeTooManyRequests, Message: "busy"})
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("TOOMANYREQUESTS answer: %d %v", rec.Code, rec.Header())
	}
}
