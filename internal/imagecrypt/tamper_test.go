package imagecrypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/cofferhq/coffer/internal/imagecrypt"
)

// localKeys writes an RSA key pair for tests that need no server.
func localKeys(t *testing.T, dir string) (priv, pub string) { return localKeysTB(t, dir) }

func localKeysTB(t testing.TB, dir string) (priv, pub string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "priv.pem"), filepath.Join(dir, "pub.pem")
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	writeFile(t, priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	writeFile(t, pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return priv, pub
}

// retag writes a changed copy of the manifest tagged from into the layout as tag to, as an
// attacker with write access to the registry could (the digests all match what they name).
func retag(t *testing.T, dir, from, to string, change func(st *oci.Store, m *ocispec.Manifest)) {
	t.Helper()
	ctx := context.Background()
	st, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Resolve(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := content.FetchAll(ctx, st, d)
	var m ocispec.Manifest
	json.Unmarshal(raw, &m)
	change(st, &m)
	raw, _ = json.Marshal(m)
	nd := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
	if err := st.Push(ctx, nd, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if err := st.Tag(ctx, nd, to); err != nil {
		t.Fatal(err)
	}
}

// replaceBlob stores b and points layer i at it, keeping the layer's annotations.
func replaceBlob(t *testing.T, st *oci.Store, m *ocispec.Manifest, i int, b []byte) {
	t.Helper()
	d := m.Layers[i]
	d.Digest, d.Size = digest.FromBytes(b), int64(len(b))
	if err := st.Push(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	m.Layers[i] = d
}

func blob(t *testing.T, st *oci.Store, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.FetchAll(context.Background(), st, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTamperedImagesAreRefused: a flipped bit in the middle of a layer, a truncated layer,
// two layers swapped and a wrong diff_id in the config are each refused, and nothing is
// written to the destination. The flipped bit is the case that ocicrypt alone streams out:
// its HMAC is checked only at the end.
func TestTamperedImagesAreRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, pub := localKeys(t, dir)
	src := testImage(t, filepath.Join(dir, "src"), "v1", 3, 2<<20)
	encDir := filepath.Join(dir, "enc")
	if _, err := imagecrypt.Encrypt(ctx, src, "oci:"+encDir+":good", []string{"jwe:" + pub}, imagecrypt.Options{}); err != nil {
		t.Fatal(err)
	}
	// The untampered image decrypts.
	if _, err := imagecrypt.Decrypt(ctx, "oci:"+encDir+":good", "oci:"+filepath.Join(dir, "good")+":v1", []string{priv}, imagecrypt.Options{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(st *oci.Store, m *ocispec.Manifest)
		want   string
	}{
		{"flipped-bit", func(st *oci.Store, m *ocispec.Manifest) {
			b := blob(t, st, m.Layers[1])
			b[len(b)/2] ^= 0x10
			replaceBlob(t, st, m, 1, b)
		}, "hmac"},
		{"truncated", func(st *oci.Store, m *ocispec.Manifest) {
			b := blob(t, st, m.Layers[2])
			replaceBlob(t, st, m, 2, b[:len(b)-4096])
		}, "hmac"},
		{"swapped-layers", func(st *oci.Store, m *ocispec.Manifest) {
			m.Layers[0], m.Layers[1] = m.Layers[1], m.Layers[0]
		}, "diff_id"},
		{"wrong-diff-id", func(st *oci.Store, m *ocispec.Manifest) {
			var cfg map[string]any
			json.Unmarshal(blob(t, st, m.Config), &cfg)
			rootfs := cfg["rootfs"].(map[string]any)
			ids := rootfs["diff_ids"].([]any)
			ids[1] = digest.FromString("something else").String()
			raw, _ := json.Marshal(cfg)
			m.Config.Digest, m.Config.Size = digest.FromBytes(raw), int64(len(raw))
			if err := st.Push(context.Background(), m.Config, bytes.NewReader(raw)); err != nil {
				t.Fatal(err)
			}
		}, "diff_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			retag(t, encDir, "good", c.name, c.change)
			out := filepath.Join(dir, "out-"+c.name)
			_, err := imagecrypt.Decrypt(ctx, "oci:"+encDir+":"+c.name, "oci:"+out+":v1", []string{priv}, imagecrypt.Options{})
			if !errors.Is(err, imagecrypt.ErrVerify) || !strings.Contains(strings.ToLower(err.Error()), c.want) {
				t.Fatalf("decrypt: %v, want a verification failure mentioning %q", err, c.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("the refused image was written to %s", out)
			}
		})
	}
}
