package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/registry"
)

// v2 is a raw-HTTP client of a /v2/ handler with one token for everything.
type v2 struct {
	t   *testing.T
	url string
	c   *http.Client
	tok string
}

func newV2(t *testing.T, svc *registry.Service, repos ...string) *v2 {
	t.Helper()
	v := &testVerifier{}
	srv := httptest.NewServer(newHandler(t, svc, v))
	t.Cleanup(srv.Close)
	scopes := []string{"registry:catalog:*"}
	for _, r := range repos {
		scopes = append(scopes, "repository:"+r+":pull,push,delete")
	}
	return &v2{t: t, url: srv.URL, c: srv.Client(), tok: v.issue(scopes...)}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// code is the first OCI error code of the answer ("" if none).
func (a answer) code() string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	json.Unmarshal(a.body, &e)
	if len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

func (c *v2) do(method, path string, body []byte, hdr ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func (c *v2) blob(repo string, content []byte) digest.Digest {
	c.t.Helper()
	d := digest.FromBytes(content)
	if a := c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content); a.status != http.StatusCreated {
		c.t.Fatalf("push blob: %s", a)
	}
	return d
}

func (c *v2) manifest(repo, ref, mediaType string, body []byte) answer {
	c.t.Helper()
	return c.do("PUT", "/v2/"+repo+"/manifests/"+ref, body, "Content-Type", mediaType)
}

func desc(mediaType string, d digest.Digest, size int) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": d.String(), "size": size}
}

func ociManifest(config map[string]any, layers ...map[string]any) []byte {
	if layers == nil {
		layers = []map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": registry.MediaTypeOCIManifest, "config": config, "layers": layers})
	return b
}

func indexOf(mediaType string, children ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaType, "manifests": children})
	return b
}

const (
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayer    = "application/vnd.oci.image.layer.v1.tar"
	dockerCfg   = "application/vnd.docker.container.image.v1+json"
	dockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)
