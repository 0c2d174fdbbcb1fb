// Package conformance is Coffer's own OCI distribution-spec conformance suite: the spec's
// four workflows (pull, push, content discovery, content management) and the referrers
// API, spoken in raw HTTP and checked code by code, header by header, body by body. It
// runs against any registry reachable by URL: a handler under httptest with a test token
// verifier, or a whole Coffer server with real tokens.
package conformance

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Target is the registry under test.
type Target struct {
	URL    string // base URL, no trailing slash
	Client *http.Client
	// Token returns a bearer token granting scopes ("repository:NAME:pull,push",
	// "registry:catalog:*").
	Token func(t *testing.T, scopes ...string) string
	// Prefix is prepended to every repository name so runs do not collide.
	Prefix string
}

type suite struct {
	t  *testing.T
	tg Target
}

// Run runs the whole suite.
func Run(t *testing.T, tg Target) {
	s := &suite{t: t, tg: tg}
	t.Run("Base", s.testBase)
	t.Run("Pull", s.testPull)
	t.Run("PushMonolithic", s.testPushMonolithic)
	t.Run("PushPostPut", s.testPushPostPut)
	t.Run("PushChunked", s.testPushChunked)
	t.Run("PushResume", s.testPushResume)
	t.Run("PushCancel", s.testPushCancel)
	t.Run("PushDigestMismatch", s.testPushDigestMismatch)
	t.Run("Sha512", s.testSha512)
	t.Run("Mount", s.testMount)
	t.Run("ManifestValidation", s.testManifestValidation)
	t.Run("ManifestTypes", s.testManifestTypes)
	t.Run("TagParams", s.testTagParams)
	t.Run("Discovery", s.testDiscovery)
	t.Run("Catalog", s.testCatalog)
	t.Run("ContentManagement", s.testContentManagement)
	t.Run("Referrers", s.testReferrers)
	t.Run("Names", s.testNames)
	t.Run("AuthChallenges", s.testAuthChallenges)
}

func (s *suite) repo(name string) string { return s.tg.Prefix + name }

// req is one request; the token (if any) is for scopes.
type req struct {
	method, path string
	body         []byte
	headers      map[string]string
	scopes       []string
	noAuth       bool
	bodyReader   io.Reader
	length       int64
}

func (s *suite) do(t *testing.T, r req) (*http.Response, []byte) {
	t.Helper()
	u := r.path
	if !strings.HasPrefix(u, "http") {
		u = s.tg.URL + r.path
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.bodyReader != nil {
		body = r.bodyReader
	}
	hr, err := http.NewRequest(r.method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.bodyReader != nil {
		hr.ContentLength = r.length
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	if !r.noAuth {
		hr.Header.Set("Authorization", "Bearer "+s.tg.Token(t, r.scopes...))
	}
	resp, err := s.tg.Client.Do(hr)
	if err != nil {
		if r.bodyReader != nil {
			return nil, nil
		}
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func pull(repo string) []string { return []string{"repository:" + repo + ":pull"} }
func push(repo string) []string { return []string{"repository:" + repo + ":pull,push"} }
func del(repo string) []string  { return []string{"repository:" + repo + ":pull,delete"} }

func expectStatus(t *testing.T, what string, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, want, body)
	}
}

func expectError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	expectStatus(t, what, resp, body, status)
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("%s: body %q is not an OCI error", what, body)
	}
	if e.Errors[0].Code != code {
		t.Fatalf("%s: error code %s, want %s (%s)", what, e.Errors[0].Code, code, e.Errors[0].Message)
	}
	if resp.Header.Get("Content-Type") != "application/json" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%s: error Content-Type %q", what, resp.Header.Get("Content-Type"))
	}
}

func expectHeader(t *testing.T, what string, resp *http.Response, name, want string) {
	t.Helper()
	if got := resp.Header.Get(name); got != want {
		t.Fatalf("%s: header %s = %q, want %q", what, name, got, want)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pushBlob uploads content monolithically.
func (s *suite) pushBlob(t *testing.T, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + d.String(), body: content,
		headers: map[string]string{"Content-Type": "application/octet-stream"}, scopes: push(repo)})
	expectStatus(t, "monolithic blob push", resp, body, http.StatusCreated)
	return d
}

type image struct {
	config, layer []byte
	manifest      []byte
	digest        digest.Digest
}

// newImage builds an OCI image manifest over fresh config and layer bytes.
func newImage(t *testing.T, extra map[string]any) image {
	im := image{config: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"n":"` + fmt.Sprint(randomBytes(t, 4)) + `"}`),
		layer: randomBytes(t, 3000)}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(im.config), "size": len(im.config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest.FromBytes(im.layer), "size": len(im.layer)}},
	}
	for k, v := range extra {
		m[k] = v
	}
	im.manifest, _ = json.Marshal(m)
	im.digest = digest.FromBytes(im.manifest)
	return im
}

func (s *suite) pushImage(t *testing.T, repo, ref string, im image) *http.Response {
	t.Helper()
	s.pushBlob(t, repo, im.config)
	s.pushBlob(t, repo, im.layer)
	resp, body := s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/" + ref, body: im.manifest,
		headers: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, scopes: push(repo)})
	expectStatus(t, "manifest push", resp, body, http.StatusCreated)
	expectHeader(t, "manifest push", resp, "Docker-Content-Digest", im.digest.String())
	expectHeader(t, "manifest push", resp, "Location", "/v2/"+repo+"/manifests/"+im.digest.String())
	return resp
}

func (s *suite) testBase(t *testing.T) {
	resp, body := s.do(t, req{method: "GET", path: "/v2/", scopes: nil})
	expectStatus(t, "GET /v2/ with a token", resp, body, http.StatusOK)
	resp, body = s.do(t, req{method: "GET", path: "/v2/", noAuth: true})
	expectError(t, "GET /v2/ without a token", resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, `Bearer realm="`) || !strings.Contains(ch, `/oauth2/token"`) || !strings.Contains(ch, `service="coffer-registry"`) {
		t.Fatalf("challenge %q lacks realm or service", ch)
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/", noAuth: true, headers: map[string]string{"Authorization": "Bearer not-a-token"}})
	expectError(t, "GET /v2/ with a bad token", resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
}

func (s *suite) testPull(t *testing.T) {
	repo := s.repo("pull/app")
	im := newImage(t, nil)
	s.pushImage(t, repo, "v1", im)

	for _, ref := range []string{"v1", im.digest.String()} {
		for _, m := range []string{"GET", "HEAD"} {
			resp, body := s.do(t, req{method: m, path: "/v2/" + repo + "/manifests/" + ref, scopes: pull(repo),
				headers: map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}})
			what := m + " manifest " + ref
			expectStatus(t, what, resp, body, http.StatusOK)
			expectHeader(t, what, resp, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
			expectHeader(t, what, resp, "Docker-Content-Digest", im.digest.String())
			expectHeader(t, what, resp, "Content-Length", strconv.Itoa(len(im.manifest)))
			expectHeader(t, what, resp, "ETag", `"`+im.digest.String()+`"`)
			if m == "GET" && !bytes.Equal(body, im.manifest) {
				t.Fatalf("%s: body differs from the pushed manifest", what)
			}
			if m == "HEAD" && len(body) != 0 {
				t.Fatalf("%s: HEAD has a body", what)
			}
		}
	}
	ld := digest.FromBytes(im.layer)
	for _, m := range []string{"GET", "HEAD"} {
		resp, body := s.do(t, req{method: m, path: "/v2/" + repo + "/blobs/" + ld.String(), scopes: pull(repo)})
		expectStatus(t, m+" blob", resp, body, http.StatusOK)
		expectHeader(t, m+" blob", resp, "Docker-Content-Digest", ld.String())
		expectHeader(t, m+" blob", resp, "Content-Length", strconv.Itoa(len(im.layer)))
		expectHeader(t, m+" blob", resp, "Content-Type", "application/octet-stream")
		expectHeader(t, m+" blob", resp, "ETag", `"`+ld.String()+`"`)
		if m == "GET" && !bytes.Equal(body, im.layer) {
			t.Fatal("GET blob: body differs")
		}
	}
	// Ranges.
	size := len(im.layer)
	ranges := []struct {
		hdr          string
		status       int
		start, end   int // inclusive
		contentRange string
	}{
		{"bytes=0-9", 206, 0, 9, fmt.Sprintf("bytes 0-9/%d", size)},
		{"bytes=100-", 206, 100, size - 1, fmt.Sprintf("bytes 100-%d/%d", size-1, size)},
		{"bytes=-50", 206, size - 50, size - 1, fmt.Sprintf("bytes %d-%d/%d", size-50, size-1, size)},
		{"bytes=2990-5000", 206, 2990, size - 1, fmt.Sprintf("bytes 2990-%d/%d", size-1, size)},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0, fmt.Sprintf("bytes */%d", size)},
		{"bytes=10-5", 416, 0, 0, fmt.Sprintf("bytes */%d", size)},
	}
	for _, rg := range ranges {
		resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + ld.String(), scopes: pull(repo),
			headers: map[string]string{"Range": rg.hdr}})
		expectStatus(t, "Range "+rg.hdr, resp, body, rg.status)
		expectHeader(t, "Range "+rg.hdr, resp, "Content-Range", rg.contentRange)
		if rg.status == 206 {
			if !bytes.Equal(body, im.layer[rg.start:rg.end+1]) {
				t.Fatalf("Range %s: wrong bytes", rg.hdr)
			}
			expectHeader(t, "Range "+rg.hdr, resp, "Content-Length", strconv.Itoa(rg.end-rg.start+1))
		}
	}
	// Unknown content.
	missing := digest.FromBytes(randomBytes(t, 10))
	resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + missing.String(), scopes: pull(repo)})
	expectError(t, "GET unknown blob", resp, body, 404, "BLOB_UNKNOWN")
	resp, _ = s.do(t, req{method: "HEAD", path: "/v2/" + repo + "/blobs/" + missing.String(), scopes: pull(repo)})
	if resp.StatusCode != 404 {
		t.Fatalf("HEAD unknown blob: %d", resp.StatusCode)
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/nope", scopes: pull(repo)})
	expectError(t, "GET unknown tag", resp, body, 404, "MANIFEST_UNKNOWN")
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/" + missing.String(), scopes: pull(repo)})
	expectError(t, "GET unknown manifest digest", resp, body, 404, "MANIFEST_UNKNOWN")
	for _, m := range []string{"GET", "HEAD"} {
		resp, body = s.do(t, req{method: m, path: "/v2/" + repo + "/manifests/.INVALID_MANIFEST_NAME", scopes: pull(repo)})
		if resp.StatusCode != 404 {
			t.Fatalf("%s a manifest under an invalid tag: %d, want 404", m, resp.StatusCode)
		}
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/sha256:xyz", scopes: pull(repo)})
	expectError(t, "GET blob with an invalid digest", resp, body, 400, "DIGEST_INVALID")
	// A blob of another repository is not visible here.
	other := s.repo("pull/other")
	s.pushBlob(t, other, []byte("other repo"))
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + digest.FromBytes([]byte("other repo")).String(), scopes: pull(repo)})
	expectError(t, "GET a blob of another repository", resp, body, 404, "BLOB_UNKNOWN")
}

func (s *suite) testPushMonolithic(t *testing.T) {
	repo := s.repo("push/mono")
	content := randomBytes(t, 10_000)
	d := digest.FromBytes(content)
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + d.String(), body: content, scopes: push(repo)})
	expectStatus(t, "POST ?digest", resp, body, 201)
	expectHeader(t, "POST ?digest", resp, "Location", "/v2/"+repo+"/blobs/"+d.String())
	expectHeader(t, "POST ?digest", resp, "Docker-Content-Digest", d.String())
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + d.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatalf("pull after monolithic push: %d", resp.StatusCode)
	}
	// An empty blob.
	empty := digest.FromBytes(nil)
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + empty.String(), body: []byte{}, scopes: push(repo)})
	expectStatus(t, "POST empty blob", resp, body, 201)
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + empty.String(), scopes: pull(repo)})
	expectStatus(t, "GET empty blob", resp, body, 200)
	expectHeader(t, "GET empty blob", resp, "Content-Length", "0")
}

// startUpload opens a session and returns its Location.
func (s *suite) startUpload(t *testing.T, repo string) string {
	t.Helper()
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/", scopes: push(repo)})
	expectStatus(t, "POST upload", resp, body, 202)
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatal("POST upload: no Location")
	}
	if resp.Header.Get("Docker-Upload-UUID") == "" {
		t.Fatal("POST upload: no Docker-Upload-UUID")
	}
	return loc
}

func withDigest(loc string, d digest.Digest) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + url.QueryEscape(d.String())
}

func (s *suite) testPushPostPut(t *testing.T) {
	repo := s.repo("push/postput")
	content := randomBytes(t, 50_000)
	d := digest.FromBytes(content)
	loc := s.startUpload(t, repo)
	resp, body := s.do(t, req{method: "PUT", path: withDigest(loc, d), body: content, scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/octet-stream"}})
	expectStatus(t, "PUT upload", resp, body, 201)
	expectHeader(t, "PUT upload", resp, "Location", "/v2/"+repo+"/blobs/"+d.String())
	expectHeader(t, "PUT upload", resp, "Docker-Content-Digest", d.String())
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + d.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatal("pull after POST+PUT differs")
	}
	// The session is gone.
	resp, body = s.do(t, req{method: "GET", path: loc, scopes: push(repo)})
	expectError(t, "GET finished upload", resp, body, 404, "BLOB_UPLOAD_UNKNOWN")
}

func (s *suite) testPushChunked(t *testing.T) {
	repo := s.repo("push/chunked")
	content := randomBytes(t, 30_000)
	d := digest.FromBytes(content)
	loc := s.startUpload(t, repo)
	chunks := [][2]int{{0, 10_000}, {10_000, 20_000}}
	for _, c := range chunks {
		resp, body := s.do(t, req{method: "PATCH", path: loc, body: content[c[0]:c[1]], scopes: push(repo),
			headers: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", c[0], c[1]-1)}})
		expectStatus(t, "PATCH chunk", resp, body, 202)
		expectHeader(t, "PATCH chunk", resp, "Range", fmt.Sprintf("0-%d", c[1]-1))
		if resp.Header.Get("Location") == "" {
			t.Fatal("PATCH: no Location")
		}
		loc = resp.Header.Get("Location")
	}
	// Status.
	resp, body := s.do(t, req{method: "GET", path: loc, scopes: push(repo)})
	expectStatus(t, "GET upload status", resp, body, 204)
	expectHeader(t, "GET upload status", resp, "Range", "0-19999")
	// An out-of-order chunk is refused with 416 and the current range.
	resp, body = s.do(t, req{method: "PATCH", path: loc, body: content[25_000:], scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("25000-%d", len(content)-1)}})
	expectStatus(t, "PATCH out of order", resp, body, 416)
	// Streamed chunk without Content-Range, then close with an empty PUT.
	resp, body = s.do(t, req{method: "PATCH", path: loc, body: content[20_000:], scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/octet-stream"}})
	expectStatus(t, "PATCH streamed", resp, body, 202)
	expectHeader(t, "PATCH streamed", resp, "Range", fmt.Sprintf("0-%d", len(content)-1))
	resp, body = s.do(t, req{method: "PUT", path: withDigest(resp.Header.Get("Location"), d), scopes: push(repo)})
	expectStatus(t, "PUT close", resp, body, 201)
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + d.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatal("pull after chunked push differs")
	}
	// A last chunk carried by the PUT.
	loc = s.startUpload(t, repo)
	c2 := randomBytes(t, 5000)
	resp, body = s.do(t, req{method: "PATCH", path: loc, body: c2[:1000], scopes: push(repo),
		headers: map[string]string{"Content-Range": "0-999"}})
	expectStatus(t, "PATCH first", resp, body, 202)
	resp, body = s.do(t, req{method: "PUT", path: withDigest(resp.Header.Get("Location"), digest.FromBytes(c2)), body: c2[1000:], scopes: push(repo),
		headers: map[string]string{"Content-Range": "1000-4999"}})
	expectStatus(t, "PUT with last chunk", resp, body, 201)
}

// failingReader yields n bytes, then fails: a connection that drops mid-request.
type failingReader struct {
	data []byte
	n    int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, fmt.Errorf("connection dropped")
	}
	k := min(len(p), f.n, len(f.data))
	copy(p, f.data[:k])
	f.data, f.n = f.data[k:], f.n-k
	return k, nil
}

func (s *suite) testPushResume(t *testing.T) {
	repo := s.repo("push/resume")
	content := randomBytes(t, 3<<20)
	d := digest.FromBytes(content)
	loc := s.startUpload(t, repo)
	// The first PATCH breaks off after 1 MiB (the client believes it sent all).
	s.do(t, req{method: "PATCH", path: loc, scopes: push(repo), bodyReader: &failingReader{data: content, n: 1 << 20}, length: int64(len(content)),
		headers: map[string]string{"Content-Type": "application/octet-stream"}})
	// Ask where the upload stands, then resume from there.
	var resp *http.Response
	var body []byte
	var offset int
	for range 250 { // the server may still be recording the broken request
		resp, body = s.do(t, req{method: "GET", path: loc, scopes: push(repo)})
		expectStatus(t, "GET status after a drop", resp, body, 204)
		rg := resp.Header.Get("Range")
		_, end, _ := strings.Cut(rg, "-")
		e, _ := strconv.Atoi(end)
		offset = e + 1
		if rg == "0-0" {
			offset = 0
		}
		if offset > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if offset > 1<<20 {
		t.Fatalf("the server claims %d bytes after 1 MiB was sent", offset)
	}
	resp, body = s.do(t, req{method: "PATCH", path: resp.Header.Get("Location"), body: content[offset:], scopes: push(repo),
		headers: map[string]string{"Content-Range": fmt.Sprintf("%d-%d", offset, len(content)-1)}})
	expectStatus(t, "PATCH resume", resp, body, 202)
	resp, body = s.do(t, req{method: "PUT", path: withDigest(resp.Header.Get("Location"), d), scopes: push(repo)})
	expectStatus(t, "PUT after resume", resp, body, 201)
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + d.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatal("pull after a resumed upload differs")
	}
}

func (s *suite) testPushCancel(t *testing.T) {
	repo := s.repo("push/cancel")
	loc := s.startUpload(t, repo)
	s.do(t, req{method: "PATCH", path: loc, body: []byte("some"), scopes: push(repo)})
	resp, body := s.do(t, req{method: "DELETE", path: loc, scopes: push(repo)})
	expectStatus(t, "DELETE upload", resp, body, 204)
	resp, body = s.do(t, req{method: "GET", path: loc, scopes: push(repo)})
	expectError(t, "GET cancelled upload", resp, body, 404, "BLOB_UPLOAD_UNKNOWN")
	resp, body = s.do(t, req{method: "PATCH", path: loc, body: []byte("more"), scopes: push(repo)})
	expectError(t, "PATCH cancelled upload", resp, body, 404, "BLOB_UPLOAD_UNKNOWN")
	resp, body = s.do(t, req{method: "DELETE", path: loc, scopes: push(repo)})
	expectError(t, "DELETE cancelled upload", resp, body, 404, "BLOB_UPLOAD_UNKNOWN")
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/uploads/0123456789abcdef", scopes: push(repo)})
	expectError(t, "GET unknown upload", resp, body, 404, "BLOB_UPLOAD_UNKNOWN")
}

func (s *suite) testPushDigestMismatch(t *testing.T) {
	repo := s.repo("push/mismatch")
	content := []byte("the real content")
	wrong := digest.FromBytes([]byte("something else"))
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + wrong.String(), body: content, scopes: push(repo)})
	expectError(t, "monolithic with a wrong digest", resp, body, 400, "DIGEST_INVALID")
	loc := s.startUpload(t, repo)
	resp, body = s.do(t, req{method: "PUT", path: withDigest(loc, wrong), body: content, scopes: push(repo)})
	expectError(t, "PUT with a wrong digest", resp, body, 400, "DIGEST_INVALID")
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + wrong.String(), scopes: pull(repo)})
	expectError(t, "GET the wrong digest", resp, body, 404, "BLOB_UNKNOWN")
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=md5:abc", body: content, scopes: push(repo)})
	expectError(t, "unsupported digest algorithm", resp, body, 400, "DIGEST_INVALID")
}

func (s *suite) testSha512(t *testing.T) {
	repo := s.repo("push/sha512")
	content := randomBytes(t, 20_000)
	d := digest.SHA512.FromBytes(content)
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + d.String(), body: content, scopes: push(repo)})
	expectStatus(t, "sha512 monolithic", resp, body, 201)
	// Chunked with a sha512 digest at the end.
	c2 := randomBytes(t, 9000)
	d2 := digest.SHA512.FromBytes(c2)
	loc := s.startUpload(t, repo)
	resp, body = s.do(t, req{method: "PATCH", path: loc, body: c2, scopes: push(repo)})
	expectStatus(t, "sha512 PATCH", resp, body, 202)
	resp, body = s.do(t, req{method: "PUT", path: withDigest(resp.Header.Get("Location"), d2), scopes: push(repo)})
	expectStatus(t, "sha512 PUT", resp, body, 201)
	for _, x := range []struct {
		d digest.Digest
		c []byte
	}{{d, content}, {d2, c2}} {
		resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + x.d.String(), scopes: pull(repo)})
		if resp.StatusCode != 200 || !bytes.Equal(body, x.c) {
			t.Fatalf("GET sha512 blob: %d", resp.StatusCode)
		}
		expectHeader(t, "GET sha512 blob", resp, "Docker-Content-Digest", x.d.String())
	}
	// A manifest addressed by its sha512 digest.
	cfg := []byte(`{"sha512":true}`)
	s.pushBlob(t, repo, cfg)
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(cfg), "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(content)}}})
	md := digest.SHA512.FromBytes(m)
	resp, body = s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/" + md.String(), body: m, scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expectStatus(t, "PUT manifest by sha512", resp, body, 201)
	expectHeader(t, "PUT manifest by sha512", resp, "Docker-Content-Digest", md.String())
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/" + md.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !bytes.Equal(body, m) {
		t.Fatalf("GET manifest by sha512: %d", resp.StatusCode)
	}
}

func (s *suite) testMount(t *testing.T) {
	src, dst, dst2 := s.repo("mount/src"), s.repo("mount/dst"), s.repo("mount/auto")
	content := randomBytes(t, 4000)
	d := s.pushBlob(t, src, content)
	scopes := append(push(dst), pull(src)...)
	resp, body := s.do(t, req{method: "POST", path: "/v2/" + dst + "/blobs/uploads/?mount=" + d.String() + "&from=" + src, scopes: scopes})
	expectStatus(t, "mount", resp, body, 201)
	expectHeader(t, "mount", resp, "Location", "/v2/"+dst+"/blobs/"+d.String())
	expectHeader(t, "mount", resp, "Docker-Content-Digest", d.String())
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + dst + "/blobs/" + d.String(), scopes: pull(dst)})
	if resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatal("GET mounted blob")
	}
	// With a token that names only the target, the registry mounts if the caller's roles
	// let it pull the source (201), else falls back to an upload session (202).
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + dst2 + "/blobs/uploads/?mount=" + d.String() + "&from=" + src, scopes: push(dst2)})
	switch resp.StatusCode {
	case 201:
		expectHeader(t, "mount by role", resp, "Docker-Content-Digest", d.String())
	case 202:
		if resp.Header.Get("Location") == "" {
			t.Fatal("mount fallback: no Location")
		}
	default:
		t.Fatalf("mount with a token for the target only: %d %s", resp.StatusCode, body)
	}
	s.do(t, req{method: "DELETE", path: "/v2/" + dst2 + "/blobs/" + d.String(), scopes: del(dst2)})
	// A blob the source lacks: fall back too.
	missing := digest.FromBytes(randomBytes(t, 8))
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + dst + "/blobs/uploads/?mount=" + missing.String() + "&from=" + src, scopes: scopes})
	expectStatus(t, "mount of an unknown blob", resp, body, 202)
	// Automatic mount (no from) from a repository the token may pull.
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + dst2 + "/blobs/uploads/?mount=" + d.String(), scopes: append(push(dst2), pull(src)...)})
	expectStatus(t, "automatic mount", resp, body, 201)
	resp, _ = s.do(t, req{method: "HEAD", path: "/v2/" + dst2 + "/blobs/" + d.String(), scopes: pull(dst2)})
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD automatically mounted blob: %d", resp.StatusCode)
	}
}

func (s *suite) testManifestValidation(t *testing.T) {
	repo := s.repo("manifests/validation")
	put := func(ref, ct string, m []byte) (*http.Response, []byte) {
		return s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/" + ref, body: m, scopes: push(repo),
			headers: map[string]string{"Content-Type": ct}})
	}
	const oci = "application/vnd.oci.image.manifest.v1+json"
	im := newImage(t, nil)
	resp, body := put("missing", oci, im.manifest)
	expectError(t, "manifest with unknown blobs", resp, body, 400, "MANIFEST_BLOB_UNKNOWN")
	resp, body = put("bad", oci, []byte("{not json"))
	expectError(t, "invalid JSON", resp, body, 400, "MANIFEST_INVALID")
	resp, body = put("bad", oci, []byte(`{"schemaVersion":1}`))
	expectError(t, "schema 1", resp, body, 400, "MANIFEST_INVALID")
	resp, body = put("bad", oci, []byte(`{"schemaVersion":2,"mediaType":"`+oci+`"}`))
	expectError(t, "no config", resp, body, 400, "MANIFEST_INVALID")
	resp, body = put(digest.FromBytes([]byte("x")).String(), oci, im.manifest)
	expectError(t, "digest reference mismatch", resp, body, 400, "DIGEST_INVALID")
	big := bytes.Repeat([]byte(" "), 4<<20+1)
	resp, body = put("big", oci, big)
	expectError(t, "manifest over 4 MiB", resp, body, 413, "MANIFEST_INVALID")
	resp, body = put("bad tag!", oci, im.manifest)
	if resp.StatusCode < 400 {
		t.Fatalf("an invalid tag was accepted: %d %s", resp.StatusCode, body)
	}
	// Non-distributable layers need not be present.
	s.pushBlob(t, repo, im.config)
	foreign := digest.FromBytes(randomBytes(t, 16))
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromBytes(im.config), "size": len(im.config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": foreign, "size": 16,
			"urls": []string{"https://example.com/layer"}}}})
	resp, body = put("foreign", oci, m)
	expectStatus(t, "non-distributable layer", resp, body, 201)
	// Content-Type contradicting the manifest's mediaType.
	resp, body = put("mismatch", "application/vnd.oci.image.index.v1+json", m)
	expectError(t, "Content-Type contradicting mediaType", resp, body, 400, "MANIFEST_INVALID")
	// No mediaType in the body (as skopeo writes): the Content-Type says it.
	var generic map[string]any
	json.Unmarshal(m, &generic)
	delete(generic, "mediaType")
	m2, _ := json.Marshal(generic)
	resp, body = put("nomediatype", oci, m2)
	expectStatus(t, "manifest without mediaType", resp, body, 201)
	resp, _ = s.do(t, req{method: "HEAD", path: "/v2/" + repo + "/manifests/nomediatype", scopes: pull(repo)})
	expectHeader(t, "manifest without mediaType", resp, "Content-Type", oci)
}

func (s *suite) testManifestTypes(t *testing.T) {
	repo := s.repo("manifests/types")
	// Docker schema 2.
	cfg, layer := []byte(`{"docker":true}`), randomBytes(t, 1000)
	s.pushBlob(t, repo, cfg)
	s.pushBlob(t, repo, layer)
	const dockerM = "application/vnd.docker.distribution.manifest.v2+json"
	dm, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": dockerM,
		"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest.FromBytes(cfg), "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest.FromBytes(layer), "size": len(layer)}}})
	resp, body := s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/docker", body: dm, scopes: push(repo), headers: map[string]string{"Content-Type": dockerM}})
	expectStatus(t, "Docker schema 2 push", resp, body, 201)
	resp, _ = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/docker", scopes: pull(repo)})
	expectHeader(t, "Docker schema 2 pull", resp, "Content-Type", dockerM)
	// Docker manifest list and OCI index over it.
	for _, mt := range []string{"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"} {
		childType := dockerM
		idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mt,
			"manifests": []any{map[string]any{"mediaType": childType, "digest": digest.FromBytes(dm), "size": len(dm),
				"platform": map[string]string{"architecture": "amd64", "os": "linux"}}}})
		resp, body = s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/list", body: idx, scopes: push(repo), headers: map[string]string{"Content-Type": mt}})
		expectStatus(t, mt+" push", resp, body, 201)
		resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/list", scopes: pull(repo)})
		expectHeader(t, mt+" pull", resp, "Content-Type", mt)
		if !bytes.Equal(body, idx) {
			t.Fatalf("%s: pulled bytes differ", mt)
		}
	}
	// An index whose child is unknown.
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest.FromBytes([]byte("nope")), "size": 4}}})
	resp, body = s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/badlist", body: idx, scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}})
	expectError(t, "index with an unknown child", resp, body, 400, "MANIFEST_BLOB_UNKNOWN")
}

// testTagParams: a push by digest may tag the manifest with ?tag= parameters
// (distribution-spec after 1.1), answered with OCI-Tag headers.
func (s *suite) testTagParams(t *testing.T) {
	repo := s.repo("manifests/tagparams")
	im := newImage(t, nil)
	s.pushBlob(t, repo, im.config)
	s.pushBlob(t, repo, im.layer)
	d := digest.SHA512.FromBytes(im.manifest)
	resp, body := s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/" + d.String() + "?tag=one&tag=two", body: im.manifest, scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expectStatus(t, "PUT by digest with tags", resp, body, 201)
	if got := resp.Header.Values("OCI-Tag"); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("OCI-Tag = %v", got)
	}
	for _, tag := range []string{"one", "two"} {
		resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/" + tag, scopes: pull(repo)})
		expectStatus(t, "GET tag set by parameter", resp, body, 200)
		expectHeader(t, "GET tag set by parameter", resp, "Docker-Content-Digest", d.String())
	}
	resp, body = s.do(t, req{method: "PUT", path: "/v2/" + repo + "/manifests/" + d.String() + "?tag=bad!", body: im.manifest, scopes: push(repo),
		headers: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expectError(t, "PUT with an invalid tag parameter", resp, body, 400, "MANIFEST_INVALID")
}

func (s *suite) testDiscovery(t *testing.T) {
	repo := s.repo("discovery/tags")
	im := newImage(t, nil)
	tags := []string{"b", "a", "c", "latest", "1.0", "v2"}
	for _, tag := range tags {
		s.pushImage(t, repo, tag, im)
	}
	sorted := slices.Clone(tags)
	slices.Sort(sorted)
	list := func(q string) (*http.Response, []string) {
		resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/tags/list" + q, scopes: pull(repo)})
		expectStatus(t, "tags list"+q, resp, body, 200)
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &tl); err != nil {
			t.Fatal(err)
		}
		if tl.Name != repo {
			t.Fatalf("tags list name %q, want %q", tl.Name, repo)
		}
		return resp, tl.Tags
	}
	resp, all := list("")
	if !slices.Equal(all, sorted) {
		t.Fatalf("tags = %v, want %v", all, sorted)
	}
	if resp.Header.Get("Link") != "" {
		t.Fatal("a complete list has a Link header")
	}
	// Page through two at a time following Link.
	var paged []string
	q := "?n=2"
	for range 10 {
		resp, page := list(q)
		paged = append(paged, page...)
		link := resp.Header.Get("Link")
		if link == "" {
			break
		}
		if len(page) != 2 || !strings.HasSuffix(link, `>; rel="next"`) {
			t.Fatalf("page %v with Link %q", page, link)
		}
		u, err := url.Parse(strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`))
		if err != nil || u.Path != "/v2/"+repo+"/tags/list" {
			t.Fatalf("Link %q", link)
		}
		q = "?" + u.RawQuery
	}
	if !slices.Equal(paged, sorted) {
		t.Fatalf("paged tags = %v, want %v", paged, sorted)
	}
	_, after := list("?last=b")
	if !slices.Equal(after, sorted[slices.Index(sorted, "b")+1:]) {
		t.Fatalf("tags after b = %v", after)
	}
	_, none := list("?n=0")
	if len(none) != 0 {
		t.Fatalf("n=0 gave %v", none)
	}
	resp2, body := s.do(t, req{method: "GET", path: "/v2/" + s.repo("discovery/none") + "/tags/list", scopes: pull(s.repo("discovery/none"))})
	expectError(t, "tags of an unknown repository", resp2, body, 404, "NAME_UNKNOWN")
}

func (s *suite) testCatalog(t *testing.T) {
	names := []string{s.repo("catalog/x"), s.repo("catalog/y"), s.repo("catalog/z")}
	for _, n := range names {
		s.pushBlob(t, n, []byte("catalog "+n))
	}
	resp, body := s.do(t, req{method: "GET", path: "/v2/_catalog", scopes: []string{"registry:catalog:*"}})
	expectStatus(t, "catalog", resp, body, 200)
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	json.Unmarshal(body, &cat)
	for _, n := range names {
		if !slices.Contains(cat.Repositories, n) {
			t.Fatalf("catalog %v lacks %s", cat.Repositories, n)
		}
	}
	if !slices.IsSorted(cat.Repositories) {
		t.Fatal("catalog is not sorted")
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/_catalog?n=1&last=" + url.QueryEscape(names[0]), scopes: []string{"registry:catalog:*"}})
	expectStatus(t, "catalog page", resp, body, 200)
	json.Unmarshal(body, &cat)
	if len(cat.Repositories) != 1 || cat.Repositories[0] != names[1] {
		t.Fatalf("catalog page after %s = %v", names[0], cat.Repositories)
	}
	if !strings.Contains(resp.Header.Get("Link"), `rel="next"`) {
		t.Fatalf("catalog page: Link %q", resp.Header.Get("Link"))
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/_catalog", scopes: pull(names[0])})
	expectStatus(t, "catalog without registry:catalog:*", resp, body, 401)
}

func (s *suite) testContentManagement(t *testing.T) {
	repo := s.repo("manage/app")
	im := newImage(t, nil)
	s.pushImage(t, repo, "keep", im)
	s.pushImage(t, repo, "drop", im)
	// Delete a tag: the manifest stays under its digest and the other tag.
	resp, body := s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/manifests/drop", scopes: del(repo)})
	expectStatus(t, "DELETE tag", resp, body, 202)
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/drop", scopes: pull(repo)})
	expectError(t, "GET deleted tag", resp, body, 404, "MANIFEST_UNKNOWN")
	resp, _ = s.do(t, req{method: "HEAD", path: "/v2/" + repo + "/manifests/keep", scopes: pull(repo)})
	expectStatus(t, "HEAD other tag", resp, nil, 200)
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/manifests/drop", scopes: del(repo)})
	expectError(t, "DELETE deleted tag", resp, body, 404, "MANIFEST_UNKNOWN")
	// Delete by digest: gone, with its tags.
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/manifests/" + im.digest.String(), scopes: del(repo)})
	expectStatus(t, "DELETE manifest", resp, body, 202)
	for _, ref := range []string{im.digest.String(), "keep"} {
		resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/manifests/" + ref, scopes: pull(repo)})
		expectError(t, "GET deleted manifest "+ref, resp, body, 404, "MANIFEST_UNKNOWN")
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/tags/list", scopes: pull(repo)})
	expectStatus(t, "tags after delete", resp, body, 200)
	if strings.Contains(string(body), "keep") {
		t.Fatalf("tags list still has a tag of the deleted manifest: %s", body)
	}
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/manifests/" + im.digest.String(), scopes: del(repo)})
	expectError(t, "DELETE deleted manifest", resp, body, 404, "MANIFEST_UNKNOWN")
	// Delete a blob.
	ld := digest.FromBytes(im.layer)
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/blobs/" + ld.String(), scopes: del(repo)})
	expectStatus(t, "DELETE blob", resp, body, 202)
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/blobs/" + ld.String(), scopes: pull(repo)})
	expectError(t, "GET deleted blob", resp, body, 404, "BLOB_UNKNOWN")
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/blobs/" + ld.String(), scopes: del(repo)})
	expectError(t, "DELETE deleted blob", resp, body, 404, "BLOB_UNKNOWN")
	// Deleting needs the delete action.
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/blobs/" + digest.FromBytes(im.config).String(), scopes: push(repo)})
	expectStatus(t, "DELETE with push only", resp, body, 401)
}

type referrersIndex struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Manifests     []struct {
		MediaType    string            `json:"mediaType"`
		Digest       digest.Digest     `json:"digest"`
		Size         int64             `json:"size"`
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"manifests"`
}

func (s *suite) testReferrers(t *testing.T) {
	repo := s.repo("referrers/app")
	subject := newImage(t, nil)
	s.pushImage(t, repo, "v1", subject)
	subjDesc := map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.digest, "size": len(subject.manifest)}
	// A signature with artifactType and an empty config.
	emptyCfg := []byte("{}")
	sig := image{config: emptyCfg, layer: randomBytes(t, 300)}
	sigM, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"artifactType": "application/vnd.example.signature",
		"config":       map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest.FromBytes(emptyCfg), "size": 2},
		"layers":       []any{map[string]any{"mediaType": "application/octet-stream", "digest": digest.FromBytes(sig.layer), "size": len(sig.layer)}},
		"subject":      subjDesc, "annotations": map[string]string{"org.example.kind": "sig"}})
	sig.manifest, sig.digest = sigM, digest.FromBytes(sigM)
	resp := s.pushImage(t, repo, sig.digest.String(), sig)
	expectHeader(t, "push of a referrer", resp, "OCI-Subject", subject.digest.String())
	// An SBOM whose type comes from its config media type.
	sbomCfg := []byte(`{"sbom":"spdx"}`)
	sbom := image{config: sbomCfg, layer: randomBytes(t, 200)}
	sbomM, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config":  map[string]any{"mediaType": "application/vnd.example.sbom.config", "digest": digest.FromBytes(sbomCfg), "size": len(sbomCfg)},
		"layers":  []any{map[string]any{"mediaType": "application/spdx+json", "digest": digest.FromBytes(sbom.layer), "size": len(sbom.layer)}},
		"subject": subjDesc})
	sbom.manifest, sbom.digest = sbomM, digest.FromBytes(sbomM)
	s.pushImage(t, repo, sbom.digest.String(), sbom)

	get := func(q string) (*http.Response, referrersIndex) {
		resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/referrers/" + subject.digest.String() + q, scopes: pull(repo)})
		expectStatus(t, "referrers"+q, resp, body, 200)
		expectHeader(t, "referrers"+q, resp, "Content-Type", "application/vnd.oci.image.index.v1+json")
		var idx referrersIndex
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatal(err)
		}
		if idx.SchemaVersion != 2 || idx.MediaType != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("referrers index header: %+v", idx)
		}
		return resp, idx
	}
	resp, idx := get("")
	if len(idx.Manifests) != 2 {
		t.Fatalf("referrers = %+v, want 2", idx.Manifests)
	}
	byDigest := map[digest.Digest]int{}
	for i, m := range idx.Manifests {
		byDigest[m.Digest] = i
	}
	si, ok1 := byDigest[sig.digest]
	bi, ok2 := byDigest[sbom.digest]
	if !ok1 || !ok2 {
		t.Fatalf("referrers %+v lack the signature or the SBOM", idx.Manifests)
	}
	if m := idx.Manifests[si]; m.ArtifactType != "application/vnd.example.signature" || m.Size != int64(len(sigM)) ||
		m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Annotations["org.example.kind"] != "sig" {
		t.Fatalf("signature descriptor %+v", m)
	}
	if m := idx.Manifests[bi]; m.ArtifactType != "application/vnd.example.sbom.config" {
		t.Fatalf("SBOM artifactType %q, want the config media type", m.ArtifactType)
	}
	if resp.Header.Get("OCI-Filters-Applied") != "" {
		t.Fatal("OCI-Filters-Applied without a filter")
	}
	resp, idx = get("?artifactType=" + url.QueryEscape("application/vnd.example.signature"))
	expectHeader(t, "filtered referrers", resp, "OCI-Filters-Applied", "artifactType")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig.digest {
		t.Fatalf("filtered referrers = %+v", idx.Manifests)
	}
	// Unknown subject: an empty index, not 404.
	resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/referrers/" + digest.FromBytes([]byte("nothing")).String(), scopes: pull(repo)})
	expectStatus(t, "referrers of an unknown subject", resp, body, 200)
	if !strings.Contains(string(body), `"manifests":[]`) {
		t.Fatalf("referrers of an unknown subject: %s", body)
	}
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/referrers/sha256:bad", scopes: pull(repo)})
	expectError(t, "referrers with an invalid digest", resp, body, 400, "DIGEST_INVALID")
	// A referrer pushed before its subject exists is listed.
	ghost := digest.FromBytes([]byte("subject to come"))
	early := image{config: emptyCfg, layer: randomBytes(t, 50)}
	earlyM, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"artifactType": "application/vnd.example.early",
		"config":       map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest.FromBytes(emptyCfg), "size": 2},
		"layers":       []any{map[string]any{"mediaType": "application/octet-stream", "digest": digest.FromBytes(early.layer), "size": len(early.layer)}},
		"subject":      map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ghost, "size": 15}})
	early.manifest, early.digest = earlyM, digest.FromBytes(earlyM)
	resp = s.pushImage(t, repo, "early", early)
	expectHeader(t, "referrer before subject", resp, "OCI-Subject", ghost.String())
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/referrers/" + ghost.String(), scopes: pull(repo)})
	if resp.StatusCode != 200 || !strings.Contains(string(body), early.digest.String()) {
		t.Fatalf("referrers of a subject yet to come: %d %s", resp.StatusCode, body)
	}
	// Deleting a referrer removes it from the listing.
	resp, body = s.do(t, req{method: "DELETE", path: "/v2/" + repo + "/manifests/" + sig.digest.String(), scopes: del(repo)})
	expectStatus(t, "DELETE referrer", resp, body, 202)
	_, idx = get("")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sbom.digest {
		t.Fatalf("referrers after a delete = %+v", idx.Manifests)
	}
}

func (s *suite) testNames(t *testing.T) {
	// A name the registry refuses gets no token (the token endpoint refuses it too), so the
	// request carries a token for another repository: the name is refused before access.
	other := s.repo("names/other")
	for _, bad := range []string{"UPPER/case", "a..b", "-lead", "trail-"} {
		resp, body := s.do(t, req{method: "GET", path: "/v2/" + bad + "/tags/list", scopes: pull(other)})
		expectError(t, "invalid name "+bad, resp, body, 400, "NAME_INVALID")
	}
	// Deep names work.
	deep := s.repo("a/b/c/d/e")
	s.pushBlob(t, deep, []byte("deep"))
	// The trust endpoint space is left alone.
	resp, _ := s.do(t, req{method: "GET", path: "/v2/" + deep + "/_trust/tuf/root.json", scopes: pull(deep)})
	if resp.StatusCode != 404 {
		t.Fatalf("/_trust/ answered %d, want 404", resp.StatusCode)
	}
}

func (s *suite) testAuthChallenges(t *testing.T) {
	repo := s.repo("auth/app")
	resp, body := s.do(t, req{method: "GET", path: "/v2/" + repo + "/tags/list", noAuth: true})
	expectError(t, "anonymous tags list", resp, body, 401, "UNAUTHORIZED")
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.Contains(ch, `scope="repository:`+repo+`:pull"`) || !strings.Contains(ch, `service="coffer-registry"`) {
		t.Fatalf("pull challenge %q", ch)
	}
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/", noAuth: true})
	expectError(t, "anonymous push", resp, body, 401, "UNAUTHORIZED")
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `scope="repository:`+repo+`:pull,push"`) {
		t.Fatalf("push challenge %q", ch)
	}
	// A token for pull does not push.
	resp, body = s.do(t, req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/", scopes: pull(repo)})
	expectError(t, "push with a pull token", resp, body, 401, "DENIED")
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_scope"`) {
		t.Fatalf("insufficient scope challenge %q", ch)
	}
	// A token for one repository does not reach another.
	resp, body = s.do(t, req{method: "GET", path: "/v2/" + repo + "/tags/list", scopes: pull(s.repo("auth/other"))})
	expectStatus(t, "pull with another repository's token", resp, body, 401)
}
