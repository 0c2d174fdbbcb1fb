package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/blobstore/s3/s3test"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/registry/conformance"
	"github.com/cofferhq/coffer/internal/servertest"
)

// startOnS3 starts versitygw with bucket "coffer" and a coffer server storing there under
// the prefix "registry", configured as an operator would: the secret in a 0600 file.
func startOnS3(t *testing.T) (*s3test.Server, *servertest.Instance) {
	t.Helper()
	srv := s3test.Start(t, "coffer")
	secret := filepath.Join(t.TempDir(), "s3-secret")
	if err := os.WriteFile(secret, []byte(s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := servertest.Start(t, func(c *config.Server) {
		c.BlobStore = config.BlobStore{URL: "s3://coffer/registry", S3Endpoint: srv.Endpoint, S3Region: "us-east-1",
			S3PathStyle: true, S3AccessKeyID: s3test.AccessKey, S3SecretAccessKeyFile: secret}
	})
	return srv, inst
}

// TestConformanceOnS3 runs Coffer's raw-HTTP conformance suite (pushes monolithic, POST+PUT,
// chunked, resumed after a dropped connection, cancelled, sha512, mounts, manifests,
// referrers, deletes) against a coffer whose blob store is S3.
func TestConformanceOnS3(t *testing.T) {
	_, inst := startOnS3(t)
	var mu sync.Mutex
	tokens := map[string]string{}
	conformance.Run(t, conformance.Target{
		URL: inst.URL, Client: inst.Client,
		Token: func(t *testing.T, scopes ...string) string {
			t.Helper()
			key := strings.Join(scopes, " ")
			mu.Lock()
			defer mu.Unlock()
			if tok, ok := tokens[key]; ok {
				return tok
			}
			q := url.Values{"service": {"coffer-registry"}, "scope": scopes}
			req, _ := http.NewRequest(http.MethodGet, inst.URL+"/oauth2/token?"+q.Encode(), nil)
			req.SetBasicAuth("admin", inst.AdminPassword)
			resp, err := inst.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tr struct {
				Token string `json:"token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.Token == "" {
				t.Fatalf("token: %d %v", resp.StatusCode, err)
			}
			tokens[key] = tr.Token
			return tr.Token
		},
	})
}

const marker = "COFFER-S3-PLAINTEXT-MARKER-7d1e"

// markedImage has a layer of 6 MiB (more than an S3 part: composed by part copies), a small
// one (composed by copying), and a config, each carrying marker.
func markedImage(t *testing.T) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	big := make([]byte, 6<<20)
	rand.Read(big)
	for i := 0; i+len(marker) < len(big); i += 1 << 20 {
		copy(big[i:], marker)
	}
	small := bytes.Repeat([]byte(marker+" small layer\n"), 300)
	for _, content := range [][]byte{big, small} {
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer(content, types.OCIUncompressedLayer)); err != nil {
			t.Fatal(err)
		}
	}
	cf, _ := img.ConfigFile()
	cf.Config.Labels = map[string]string{"note": marker}
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestServeOnS3: coffer serve --blob-store s3://… on a real S3 server (versitygw). An image
// pushed with go-containerregistry pulls back intact, digests verified; an upload left
// open ends in the marker; and no object in the bucket (whose files the gateway's
// directory holds) contains the marker, while the data directory holds no blob at all.
func TestServeOnS3(t *testing.T) {
	srv, inst := startOnS3(t)
	auth := &authn.Basic{Username: "admin", Password: inst.AdminPassword}
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(inst.Client.Transport), remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	ref, err := name.ParseReference(inst.Addr + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img := markedImage(t)
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}

	// An upload in progress whose chunk ends in the marker.
	tr, err := transport.NewWithContext(context.Background(), ref.Context().Registry, auth, inst.Client.Transport,
		[]string{ref.Context().Scope(transport.PushScope)})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(inst.URL+"/v2/team/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = inst.URL + loc
	}
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(append(bytes.Repeat([]byte("x"), 99_976), marker...)))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload chunk: %d", resp.StatusCode)
	}

	// Pull: every layer's digest is verified as it is read.
	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Fatalf("pulled manifest %s, pushed %s", d, want)
	}
	layers, _ := got.Layers()
	for _, l := range layers {
		r, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			t.Fatalf("pulled layer: %v (marker present: %v)", err, bytes.Contains(b, []byte(marker)))
		}
	}
	// A ranged read of the big layer, as a resuming client makes it.
	big := layers[0]
	d, _ := big.Digest()
	rreq, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v2/team/app/blobs/%s", inst.URL, d), nil)
	rreq.Header.Set("Range", "bytes=3000000-3000099")
	rresp, err := hc.Do(rreq)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rresp.Body)
	rresp.Body.Close()
	whole, _ := big.Uncompressed()
	all, _ := io.ReadAll(whole)
	if rresp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, all[3_000_000:3_000_100]) {
		t.Fatalf("range read: %d, %d bytes matching %v", rresp.StatusCode, len(part), bytes.Equal(part, all[3_000_000:3_000_100]))
	}

	// The bucket: sealed objects only.
	bucket := filepath.Join(srv.Dir, "coffer")
	objects, blobs := 0, 0
	err = filepath.WalkDir(bucket, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(bucket, p)
		if strings.HasPrefix(rel, filepath.Join("registry", "blobs")+string(filepath.Separator)) {
			blobs++
		}
		objects++
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("plaintext marker in the bucket's object %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if blobs < 4 { // two layers, the config, the manifest
		t.Fatalf("only %d objects under registry/blobs/ in the bucket (%d in all): the content is not in S3", blobs, objects)
	}
	if objects < blobs+2 { // the open upload: its chunk and its sealed tail
		t.Fatalf("the open upload left %d objects in the bucket, want its chunk and its tail", objects-blobs)
	}
	if ents, _ := os.ReadDir(filepath.Join(inst.DataDir, "blobs")); len(ents) > 0 {
		t.Fatalf("the data directory has a blob store too: %v", ents)
	}
	t.Logf("%d objects in the bucket, %d under registry/blobs/", objects, blobs)
}

// TestServeProcessFlags: the real `coffer serve` binary takes the S3 blob store from its
// flags and the environment (the secret's file as COFFER_S3_SECRET_ACCESS_KEY_FILE); an
// image pushed to it lands in the bucket under the prefix. A secret file others may read
// is refused at start with a message saying so.
func TestServeProcessFlags(t *testing.T) {
	srv := s3test.Start(t, "coffer")
	dir := t.TempDir()
	secret := filepath.Join(dir, "s3-secret")
	if err := os.WriteFile(secret, []byte(s3test.SecretKey), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--blob-store", "s3://coffer/via-flags", "--s3-endpoint", srv.Endpoint, "--s3-region", "us-east-1",
		"--s3-path-style", "--s3-access-key-id", s3test.AccessKey}
	env := []string{"COFFER_S3_SECRET_ACCESS_KEY_FILE=" + secret}

	cmd := exec.Command(servertest.Binary(t), append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "readable by others") {
		t.Fatalf("serve with a secret file of mode 0644: %v\n%s", err, out)
	}

	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	p := servertest.StartProcess(t, dir, env, args...)
	defer func() {
		p.Cmd.Process.Signal(os.Interrupt)
		p.Wait()
	}()
	pw, err := os.ReadFile(filepath.Join(dir, "data", "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	client := servertest.ClientTrusting(t, filepath.Join(dir, "data", "tls", "ca.pem"))
	u, _ := url.Parse(p.URL)
	ref, err := name.ParseReference(u.Host + "/flags/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img, err = mutate.AppendLayers(img, static.NewLayer([]byte(marker+" via flags"), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: strings.TrimSpace(string(pw))}),
		remote.WithTransport(client.Transport)); err != nil {
		t.Fatalf("push: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(srv.Dir, "coffer", "via-flags", "blobs", "sha256"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no blobs under the prefix in the bucket: %v", err)
	}
}
