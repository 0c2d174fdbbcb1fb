package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// countingTransport records the requests a client makes.
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string // "METHOD path?query -> status"
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.seen = append(c.seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" -> "+http.StatusText(resp.StatusCode))
		c.mu.Unlock()
	}
	return resp, err
}

func (c *countingTransport) find(substr string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.seen {
		if strings.Contains(s, substr) {
			out = append(out, s)
		}
	}
	return out
}

func ociImage(t *testing.T, size int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

func TestGoContainerRegistry(t *testing.T) {
	e := startEnv(t, nil)
	ct := &countingTransport{base: e.transport()}
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: "admin", Password: e.inst.AdminPassword}), remote.WithTransport(ct)}
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(e.host + "/" + s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Write.
	img := ociImage(t, 300_000, 3)
	if err := remote.Write(ref("ggcr/app:v1"), img, opts...); err != nil {
		t.Fatalf("remote.Write: %v", err)
	}
	want, _ := img.Digest()

	// Pull by tag and by digest; validate reads every byte and checks every digest.
	for _, r := range []string{"ggcr/app:v1", "ggcr/app@" + want.String()} {
		got, err := remote.Image(ref(r), opts...)
		if err != nil {
			t.Fatalf("remote.Image(%s): %v", r, err)
		}
		if d, _ := got.Digest(); d != want {
			t.Fatalf("%s: digest %s, want %s", r, d, want)
		}
		if err := verifyImage(got); err != nil {
			t.Fatalf("validate %s: %v", r, err)
		}
	}

	// Copy to another repository: the layers are mounted, not re-uploaded.
	src, err := remote.Image(ref("ggcr/app:v1"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref("ggcr/copy:v1"), src, opts...); err != nil {
		t.Fatalf("copy: %v", err)
	}
	mounts := ct.find("/v2/ggcr/copy/blobs/uploads/?from=ggcr%2Fapp&mount=")
	created := 0
	for _, m := range mounts {
		if strings.HasSuffix(m, "Created") {
			created++
		}
	}
	if created < 3 {
		t.Fatalf("copy mounted %d blobs (requests %v), want the 3 layers and the config", created, mounts)
	}
	if patches := ct.find("PATCH /v2/ggcr/copy/"); len(patches) > 0 {
		t.Fatalf("copy uploaded bytes instead of mounting: %v", patches)
	}
	copied, err := remote.Image(ref("ggcr/copy:v1"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(copied); err != nil {
		t.Fatalf("validate copy: %v", err)
	}

	// A multi-platform index.
	amd, arm := ociImage(t, 1000, 1), ociImage(t, 1000, 1)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	if err := remote.WriteIndex(ref("ggcr/multi:latest"), idx, opts...); err != nil {
		t.Fatalf("WriteIndex: %v", err)
	}
	gotIdx, err := remote.Index(ref("ggcr/multi:latest"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyIndex(gotIdx); err != nil {
		t.Fatalf("validate index: %v", err)
	}
	armWant, _ := arm.Digest()
	armGot, err := remote.Image(ref("ggcr/multi:latest"), append(opts, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))...)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := armGot.Digest(); d != armWant {
		t.Fatalf("arm64 image %s, want %s", d, armWant)
	}

	// Tags list.
	tags, err := remote.List(ref("ggcr/app:v1").Context(), opts...)
	if err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("List = %v, %v", tags, err)
	}
	// Delete by digest.
	if err := remote.Delete(ref("ggcr/copy@"+want.String()), opts...); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := remote.Image(ref("ggcr/copy:v1"), opts...); err == nil {
		t.Fatal("deleted image still pulls")
	}
}

func TestORASReferrers(t *testing.T) {
	e := startEnv(t, nil)
	ctx := context.Background()
	repo, err := orasremote.NewRepository(e.host + "/oras/app")
	if err != nil {
		t.Fatal(err)
	}
	repo.Client = &auth.Client{
		Client:     &http.Client{Transport: e.transport()},
		Cache:      auth.NewCache(),
		Credential: auth.StaticCredential(e.host, auth.Credential{Username: "admin", Password: e.inst.AdminPassword}),
	}
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := repo.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("push blob: %v", err)
		}
		return d
	}
	// The subject: an artifact tagged v1.
	layer := push("application/vnd.example.data", []byte("subject payload"))
	subject, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.thing",
		oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatalf("pack subject: %v", err)
	}
	if err := repo.Tag(ctx, subject, "v1"); err != nil {
		t.Fatal(err)
	}
	// Two referrers of different artifact types.
	sigLayer := push("application/vnd.example.sig.payload", []byte("signature"))
	sig, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.signature",
		oras.PackManifestOptions{Subject: &subject, Layers: []ocispec.Descriptor{sigLayer},
			ManifestAnnotations: map[string]string{"org.example.signer": "ci"}})
	if err != nil {
		t.Fatalf("pack signature: %v", err)
	}
	sbomLayer := push("application/spdx+json", []byte(`{"spdx":true}`))
	sbom, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.sbom",
		oras.PackManifestOptions{Subject: &subject, Layers: []ocispec.Descriptor{sbomLayer}})
	if err != nil {
		t.Fatalf("pack sbom: %v", err)
	}
	list := func(artifactType string) []ocispec.Descriptor {
		var out []ocispec.Descriptor
		if err := repo.Referrers(ctx, subject, artifactType, func(refs []ocispec.Descriptor) error {
			out = append(out, refs...)
			return nil
		}); err != nil {
			t.Fatalf("Referrers: %v", err)
		}
		return out
	}
	all := list("")
	if len(all) != 2 {
		t.Fatalf("referrers = %+v, want 2", all)
	}
	types := map[string]ocispec.Descriptor{}
	for _, d := range all {
		types[d.ArtifactType] = d
	}
	if types["application/vnd.example.signature"].Digest != sig.Digest || types["application/vnd.example.sbom"].Digest != sbom.Digest {
		t.Fatalf("referrers by type = %+v", types)
	}
	if types["application/vnd.example.signature"].Annotations["org.example.signer"] != "ci" {
		t.Fatal("referrer annotations lost")
	}
	if only := list("application/vnd.example.sbom"); len(only) != 1 || only[0].Digest != sbom.Digest {
		t.Fatalf("filtered referrers = %+v", only)
	}
	// oras used the referrers API, not the tag-schema fallback.
	var tags []string
	if err := repo.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("tags = %v: the client fell back to the referrers tag schema", tags)
	}
	// Fetch the signature back by digest.
	rc, err := repo.Fetch(ctx, sig)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := content.ReadAll(rc, sig)
	rc.Close()
	var m ocispec.Manifest
	if err := json.Unmarshal(got, &m); err != nil || m.Subject == nil || m.Subject.Digest != subject.Digest {
		t.Fatalf("fetched signature %s has no subject", got)
	}
}

// TestSkopeo copies an OCI layout into Coffer and back out with Debian's skopeo.
func TestSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("skopeo is not installed (scripts/test installs it; CI requires it)")
		}
		t.Fatal("skopeo is required in CI: scripts/test installs it with apt-get")
	}
	e := startEnv(t, nil)
	dir := t.TempDir()
	srcLayout := filepath.Join(dir, "src")
	img := ociImage(t, 200_000, 2)
	lp, err := layout.Write(srcLayout, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	certDir := filepath.Join(dir, "certs")
	os.MkdirAll(certDir, 0o700)
	ca, _ := os.ReadFile(e.inst.CAFile)
	os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o600)
	creds := "admin:" + e.inst.AdminPassword
	dst := "docker://" + e.inst.Addr + "/skopeo/app:v1"
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(skopeo, append([]string{"--insecure-policy"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out)
	}
	run("copy", "--dest-cert-dir", certDir, "--dest-creds", creds, "oci:"+srcLayout+":v1", dst)
	// The registry holds exactly the image's manifest.
	out := run("inspect", "--raw", "--cert-dir", certDir, "--creds", creds, dst)
	if got := (v1.Hash{Algorithm: "sha256", Hex: sha256Hex([]byte(out))}); got != want {
		t.Fatalf("manifest in Coffer has digest %s, want %s", got, want)
	}
	outLayout := filepath.Join(dir, "out")
	run("copy", "--src-cert-dir", certDir, "--src-creds", creds, dst, "oci:"+outLayout+":v1")
	lp2, err := layout.FromPath(outLayout)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lp2.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("output layout index: %v %+v", err, im)
	}
	if im.Manifests[0].Digest != want {
		t.Fatalf("copied-out digest %s, want %s", im.Manifests[0].Digest, want)
	}
	got, err := lp2.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(got); err != nil {
		t.Fatalf("validate copied-out image: %v", err)
	}
	srcLayers, _ := img.Layers()
	gotLayers, _ := got.Layers()
	for i := range srcLayers {
		a, _ := srcLayers[i].Digest()
		b, _ := gotLayers[i].Digest()
		if a != b {
			t.Fatalf("layer %d: %s, want %s", i, b, a)
		}
	}
}

// verifyImage reads every byte of an image (config and layers) and checks each against
// its digest and size.
func verifyImage(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if got := sha256Hex(raw); got != m.Config.Digest.Hex || int64(len(raw)) != m.Config.Size {
		return fmt.Errorf("config digest sha256:%s, want %s", got, m.Config.Digest)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(m.Layers) {
		return fmt.Errorf("%d layers, manifest lists %d", len(layers), len(m.Layers))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != m.Layers[i].Digest.Hex || n != m.Layers[i].Size {
			return fmt.Errorf("layer %d: sha256:%s (%d bytes), want %s (%d)", i, got, n, m.Layers[i].Digest, m.Layers[i].Size)
		}
	}
	return nil
}

// verifyIndex verifies every image of an index.
func verifyIndex(idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if got, _ := img.Digest(); got != d.Digest {
			return fmt.Errorf("child %s has digest %s", d.Digest, got)
		}
		if err := verifyImage(img); err != nil {
			return err
		}
	}
	return nil
}
