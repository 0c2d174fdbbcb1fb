package imagecrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/ocicrypt"
	encconfig "github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/cofferhq/coffer/internal/imagecrypt"
)

// plainLayout writes an image of uncompressed layers with the given contents to dir.
func plainLayout(t testing.TB, dir string, layers [][]byte) string {
	t.Helper()
	ctx := context.Background()
	st, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, l := range layers {
		d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, l)
		if err := st.Push(ctx, d, bytes.NewReader(l)); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		descs, diffIDs = append(descs, d), append(diffIDs, d.Digest)
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cd := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cfg)
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: descs})
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	for _, x := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{cd, cfg}, {md, m}} {
		if err := st.Push(ctx, x.d, bytes.NewReader(x.b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Tag(ctx, md, "v1"); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":v1"
}

// TestPipelineBoundaries: layers of sizes around the pipeline's buffers (empty, one byte,
// a byte less than a buffer, exactly one, a byte more, several) encrypt into what ocicrypt itself decrypts to the
// source bytes, and Coffer decrypts them back; a source blob that does not match its
// digest is refused before anything is written.
func TestPipelineBoundaries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, pub := localKeys(t, dir)
	const buf = 128 << 10 // the pipeline's buffer (chunkSize)
	var layers [][]byte
	for _, n := range []int{0, 1, buf - 1, buf, buf + 1, 2 * buf, 6*buf + 5} {
		b := make([]byte, n)
		rand.Read(b)
		layers = append(layers, b)
	}
	src := plainLayout(t, filepath.Join(dir, "src"), layers)
	encDir := filepath.Join(dir, "enc")
	if _, err := imagecrypt.Encrypt(ctx, src, "oci:"+encDir+":v1", []string{"jwe:" + pub}, imagecrypt.Options{}); err != nil {
		t.Fatal(err)
	}
	// ocicrypt, called directly, decrypts every layer to the source bytes.
	img := readLayout(t, "oci:"+encDir+":v1")
	privB, _ := os.ReadFile(priv)
	dcc, err := encconfig.DecryptWithPrivKeys([][]byte{privB}, [][]byte{nil})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range img.manifest.Layers {
		f, err := os.Open(filepath.Join(encDir, "blobs", "sha256", l.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := ocicrypt.DecryptLayer(dcc.DecryptConfig, f, l, false)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		got, err := io.ReadAll(r)
		f.Close()
		if err != nil || !bytes.Equal(got, layers[i]) {
			t.Fatalf("layer %d (%d bytes): ocicrypt decrypts %d bytes (%v), not the source", i, len(layers[i]), len(got), err)
		}
	}
	dec := "oci:" + filepath.Join(dir, "dec") + ":v1"
	if _, err := imagecrypt.Decrypt(ctx, "oci:"+encDir+":v1", dec, []string{priv}, imagecrypt.Options{}); err != nil {
		t.Fatal(err)
	}
	sameLayers(t, readLayout(t, src), readLayout(t, dec))

	// A corrupt source blob (same size, other bytes) is not encrypted.
	last := layers[len(layers)-1]
	blob := filepath.Join(dir, "src", "blobs", "sha256", digest.FromBytes(last).Encoded())
	bad := bytes.Clone(last)
	bad[len(bad)/2] ^= 1
	os.Chmod(blob, 0o644)
	writeFile(t, blob, bad)
	out := filepath.Join(dir, "enc2")
	if _, err := imagecrypt.Encrypt(ctx, src, "oci:"+out+":v1", []string{"jwe:" + pub}, imagecrypt.Options{}); err == nil || !strings.Contains(err.Error(), "as read from the source") {
		t.Fatalf("encrypt of a corrupt source: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused encryption left its destination")
	}
}
