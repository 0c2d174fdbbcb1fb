package api_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cofferhq/coffer/internal/config"
)

// TestAnonymousPull: with --anonymous-pull, pulls need no credentials (raw requests and
// a client running the token flow anonymously); pushes, deletes and the catalog still do.
func TestAnonymousPull(t *testing.T) {
	e := startEnv(t, func(c *config.Server) { c.Registry.AnonymousPull = true })
	tr := e.transport()
	ref, _ := name.ParseReference(e.host + "/public/app:v1")
	img := ociImage(t, 2000, 1)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: e.inst.AdminPassword}), remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	got, err := remote.Image(ref, remote.WithAuth(authn.Anonymous), remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("anonymous pull through the token flow: %v", err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatalf("anonymous pull got %s, want %s", d, want)
	}
	if err := verifyImage(got); err != nil {
		t.Fatal(err)
	}
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, e.inst.URL+path, nil)
		resp, err := e.inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v2/public/app/manifests/v1", 200},
		{"GET", "/v2/public/app/tags/list", 200},
		{"POST", "/v2/public/app/blobs/uploads/", 401},
		{"DELETE", "/v2/public/app/manifests/v1", 401},
		{"GET", "/v2/_catalog", 401},
		{"GET", "/v2/", 401},
	} {
		if got := status(c.method, c.path); got != c.want {
			t.Errorf("anonymous %s %s = %d, want %d", c.method, c.path, got, c.want)
		}
	}
	// Without the setting, anonymous pulls are refused.
	e2 := startEnv(t, nil)
	req, _ := http.NewRequest("GET", e2.inst.URL+"/v2/public/app/tags/list", nil)
	resp, err := e2.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("anonymous pull without --anonymous-pull: %d", resp.StatusCode)
	}
}
