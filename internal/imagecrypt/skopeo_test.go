package imagecrypt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/imagecrypt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// TestSkopeoEncryptsCofferDecrypts: Debian's skopeo (ocicrypt 1.0.3) encrypts an image to
// a public key while pushing it into Coffer; Coffer decrypts it with the private key file
// and with the same key imported into the vault (the private key never leaving it), and the
// layers and diff_ids are the source's. Each vault decryption is one audited unwrap per
// layer under the caller's identity. skopeo without a key copies only ciphertext, and
// cannot turn it into an image that needs the plain layers.
func TestSkopeoEncryptsCofferDecrypts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := testImage(t, filepath.Join(e.dir, "src"), "v1", 3, 300_000)
	want := readLayout(t, src)
	if out, err := e.skopeo(t, "copy", "--encryption-key", "jwe:"+e.pubPEM, "DEST-TLS", src, e.reg("team/app:enc")); err != nil {
		t.Fatalf("skopeo copy --encryption-key: %v\n%s", err, out)
	}
	o := e.opts(t, e.node)

	// The registry took the +encrypted layers, and its tag listing marks the image.
	var tags wire.TagList
	e.MustDo(t, "GET", "/coffer/v1/registry/tags?repository=team/app", nil, &tags)
	if len(tags.Tags) != 1 || tags.Tags[0].EncryptedLayers != 3 {
		t.Fatalf("tag listing %+v: want tag enc with 3 encrypted layers", tags)
	}

	insp, err := imagecrypt.Inspect(ctx, e.reg("team/app:enc"), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range insp.Images[0].Layers {
		if !l.Encrypted || strings.Join(l.Schemes, ",") != "jwe" || len(l.Recipients) != 1 || !strings.HasPrefix(l.Recipients[0], "jwe RSA-OAEP") {
			t.Fatalf("inspect: layer %+v, want encrypted with one JWE recipient", l)
		}
	}

	// With the private key file.
	out1 := "oci:" + filepath.Join(e.dir, "out1") + ":v1"
	if _, err := imagecrypt.Decrypt(ctx, e.reg("team/app:enc"), out1, []string{e.privPEM}, o); err != nil {
		t.Fatal(err)
	}
	sameLayers(t, want, readLayout(t, out1))

	// With the key in the vault, as the node's identity.
	before := len(e.audit(t, "KeyUnwrapKey"))
	out2 := "oci:" + filepath.Join(e.dir, "out2") + ":v1"
	res, err := imagecrypt.Decrypt(ctx, e.reg("team/app:enc"), out2, []string{"vault:" + e.keyURL}, o)
	if err != nil {
		t.Fatal(err)
	}
	sameLayers(t, want, readLayout(t, out2))
	recs := e.audit(t, "KeyUnwrapKey")[before:]
	if len(recs) != len(want.manifest.Layers) {
		t.Fatalf("%d unwrap records for %d layers: %+v", len(recs), len(want.manifest.Layers), recs)
	}
	for _, r := range recs {
		if r.PrincipalID != e.node.ObjectID || r.Result != "success" || r.Algorithm != "RSA-OAEP" {
			t.Fatalf("audit record %+v: want a successful RSA-OAEP unwrap by the node %s", r, e.node.ObjectID)
		}
	}
	for _, l := range res.Images[0].Layers {
		if !l.Changed || l.Encrypted {
			t.Fatalf("decrypt result layer %+v", l)
		}
	}

	// No key: Coffer refuses in the seed's words, naming the layer, and writes nothing.
	out3 := filepath.Join(e.dir, "out3")
	_, err = imagecrypt.Decrypt(ctx, e.reg("team/app:enc"), "oci:"+out3+":v1", nil, o)
	if !errors.Is(err, imagecrypt.ErrMissingKey) || !strings.Contains(err.Error(), "missing private key needed for decryption") || !strings.Contains(err.Error(), ") is encrypted") || !strings.Contains(err.Error(), "layer ") {
		t.Fatalf("decrypt without a key: %v", err)
	}
	if _, err := os.Stat(out3); !os.IsNotExist(err) {
		t.Fatalf("decrypt without a key wrote %s", out3)
	}

	// skopeo without a key: a copy keeps the ciphertext (still encrypted) ...
	out4 := "oci:" + filepath.Join(e.dir, "out4") + ":v1"
	if out, err := e.skopeo(t, "copy", "SRC-TLS", e.reg("team/app:enc"), out4); err != nil {
		t.Fatalf("skopeo copy without a key: %v\n%s", err, out)
	}
	if got := readLayout(t, out4); encryptedLayers(got) != 3 {
		t.Fatalf("skopeo without a key: %d encrypted layers, want 3", encryptedLayers(got))
	}
	// ... and a wrong key is refused with ocicrypt's words.
	other := filepath.Join(e.dir, "other.pem")
	otherKey(t, other)
	out, err := e.skopeo(t, "copy", "--decryption-key", other, "SRC-TLS", e.reg("team/app:enc"), "oci:"+filepath.Join(e.dir, "out5")+":v1")
	if err == nil || !strings.Contains(out, "decrypt") {
		t.Fatalf("skopeo with the wrong key: %v\n%s", err, out)
	}
	t.Logf("skopeo with the wrong key: %s", strings.TrimSpace(out))
}

// TestCofferEncryptsSkopeoDecrypts: Coffer encrypts to a PEM public key and to the vault
// key's public half; Debian's skopeo decrypts both with the private key file.
func TestCofferEncryptsSkopeoDecrypts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := testImage(t, filepath.Join(e.dir, "src"), "v1", 2, 400_000)
	want := readLayout(t, src)
	o := e.opts(t, e.node)
	for i, rcpt := range []string{"jwe:" + e.pubPEM, "vault:" + e.keyURL} {
		tag := []string{"team/app:pem", "team/app:vault"}[i]
		res, err := imagecrypt.Encrypt(ctx, src, e.reg(tag), []string{rcpt}, o)
		if err != nil {
			t.Fatalf("encrypt to %s: %v", rcpt, err)
		}
		for _, l := range res.Images[0].Layers {
			if !l.Encrypted || !strings.HasSuffix(l.MediaType, "+gzip+encrypted") {
				t.Fatalf("encrypt to %s: layer %+v", rcpt, l)
			}
		}
		out := "oci:" + filepath.Join(e.dir, "out-"+[]string{"pem", "vault"}[i]) + ":v1"
		if log, err := e.skopeo(t, "copy", "--decryption-key", e.privPEM, "SRC-TLS", e.reg(tag), out); err != nil {
			t.Fatalf("skopeo copy --decryption-key: %v\n%s", err, log)
		}
		sameLayers(t, want, readLayout(t, out))
	}
}
