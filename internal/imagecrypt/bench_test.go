package imagecrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
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

const benchSize = 256 << 20

// benchLayout writes a one-layer image (an uncompressed layer of random bytes) to dir.
func benchLayout(b *testing.B, dir string) (string, []byte, ocispec.Descriptor) {
	b.Helper()
	ctx := context.Background()
	layer := make([]byte, benchSize)
	rand.Read(layer)
	st, err := oci.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	ld := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, layer)
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{ld.Digest}}})
	cd := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cfg)
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	for _, x := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{ld, layer}, {cd, cfg}, {md, m}} {
		if err := st.Push(ctx, x.d, bytes.NewReader(x.b)); err != nil {
			b.Fatal(err)
		}
	}
	st.Tag(ctx, md, "v1")
	return "oci:" + dir + ":v1", layer, ld
}

// BenchmarkLayer256MiB: encrypt and decrypt of a 256 MiB layer, by Coffer (layout to layout,
// decrypt verified before release) and by the ocicrypt library directly (reader to
// io.Discard, no verification), in one run.
func BenchmarkLayer256MiB(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	priv, pub := localKeysB(b, dir)
	src, layer, ld := benchLayout(b, filepath.Join(dir, "src"))
	enc := "oci:" + filepath.Join(dir, "enc") + ":v1"
	if _, err := imagecrypt.Encrypt(ctx, src, enc, []string{"jwe:" + pub}, imagecrypt.Options{}); err != nil {
		b.Fatal(err)
	}
	pubB, _ := os.ReadFile(pub)
	privB, _ := os.ReadFile(priv)
	ecc, _ := encconfig.EncryptWithJwe([][]byte{pubB})
	dcc, _ := encconfig.DecryptWithPrivKeys([][]byte{privB}, [][]byte{nil})
	// One encrypted blob and descriptor for the direct decryption.
	r, fin, _ := ocicrypt.EncryptLayer(ecc.EncryptConfig, bytes.NewReader(layer), ld)
	encBlob, _ := io.ReadAll(r)
	ann, _ := fin()
	encDesc := ld
	encDesc.Annotations = ann

	b.Run("coffer-encrypt", func(b *testing.B) {
		b.SetBytes(benchSize)
		for i := 0; b.Loop(); i++ {
			os.RemoveAll(filepath.Join(dir, "out-enc"))
			if _, err := imagecrypt.Encrypt(ctx, src, "oci:"+filepath.Join(dir, "out-enc")+":v1", []string{"jwe:" + pub}, imagecrypt.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ocicrypt-encrypt", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			r, fin, err := ocicrypt.EncryptLayer(ecc.EncryptConfig, bytes.NewReader(layer), ld)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, r)
			if _, err := fin(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("coffer-decrypt-verified", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			os.RemoveAll(filepath.Join(dir, "out-dec"))
			if _, err := imagecrypt.Decrypt(ctx, enc, "oci:"+filepath.Join(dir, "out-dec")+":v1", []string{priv}, imagecrypt.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ocicrypt-decrypt-streamed", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			r, _, err := ocicrypt.DecryptLayer(dcc.DecryptConfig, bytes.NewReader(encBlob), encDesc, false)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func localKeysB(b *testing.B, dir string) (string, string) { return localKeysTB(b, dir) }
