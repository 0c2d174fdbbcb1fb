//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/cofferhq/coffer/internal/vault"
	"github.com/cofferhq/coffer/internal/vault/hsm"
	"github.com/cofferhq/coffer/internal/vault/hsm/hsmtest"
	"github.com/cofferhq/coffer/internal/vault/keys"
)

func open(t *testing.T) (*hsm.Backend, hsmtest.Token) {
	t.Helper()
	tok := hsmtest.New(t, "coffer-test")
	b, err := hsm.Open(context.Background(), tok.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, tok
}

func TestRSAHSMWrapSignAndTokenLimit(t *testing.T) {
	ctx := context.Background()
	b, _ := open(t)
	if !strings.Contains(b.Platform(), "SoftHSM") {
		t.Errorf("platform %q does not name the token's maker", b.Platform())
	}
	pub, ref, err := b.Generate(ctx, "test/rsa/1", keys.CreateSpec{Kty: keys.KtyRSAHSM, Size: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.D) != 0 || len(pub.P) != 0 || len(pub.N) != 256 {
		t.Fatalf("public JWK from the token: d=%d p=%d n=%d bytes", len(pub.D), len(pub.P), len(pub.N))
	}
	op, err := b.OpenKey(ctx, ref, pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	w, err := op.Encrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP, Value: secret}, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := op.Decrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP, Value: w.Value}, true)
	if err != nil || !bytes.Equal(got.Value, secret) {
		t.Fatalf("unwrap in the token: %v (equal %v)", err, bytes.Equal(got.Value, secret))
	}
	// SoftHSM 2.6 cannot do OAEP with SHA-256: refused on both sides, naming the limit.
	for _, wrap := range []bool{true, false} {
		_, err = op.Encrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP256, Value: secret}, wrap)
		if !errors.Is(err, keys.ErrTokenLimit) || !errors.Is(err, keys.ErrUnsupported) || !strings.Contains(err.Error(), "SHA-1 only") {
			t.Fatalf("RSA-OAEP-256 wrap: %v", err)
		}
	}
	_, err = op.Decrypt(keys.CipherParams{Alg: keys.AlgRSAOAEP256, Value: w.Value}, true)
	if !errors.Is(err, keys.ErrTokenLimit) {
		t.Fatalf("RSA-OAEP-256 unwrap: %v", err)
	}
	digest := sha256.Sum256([]byte("hello"))
	for _, alg := range []string{"RS256", "PS256"} {
		sig, err := op.Sign(alg, digest[:])
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		m, _ := keys.Parse(pub)
		if ok, err := m.Verify(alg, digest[:], sig); !ok || err != nil {
			t.Fatalf("%s signature from the token does not verify in software: %v", alg, err)
		}
	}
}

func TestECAndOctHSM(t *testing.T) {
	ctx := context.Background()
	b, _ := open(t)
	pub, ref, err := b.Generate(ctx, "test/ec/1", keys.CreateSpec{Kty: keys.KtyECHSM, Curve: keys.CurveP256})
	if err != nil {
		t.Fatal(err)
	}
	op, err := b.OpenKey(ctx, ref, pub)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("hello"))
	sig, err := op.Sign("ES256", digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := op.Verify("ES256", digest[:], sig); !ok || err != nil {
		t.Fatalf("ES256 verify: %v %v", ok, err)
	}
	digest[0] ^= 1
	if ok, _ := op.Verify("ES256", digest[:], sig); ok {
		t.Fatal("a changed digest verifies")
	}

	pub, ref, err = b.Generate(ctx, "test/oct/1", keys.CreateSpec{Kty: keys.KtyOctHSM, Size: 256})
	if err != nil {
		t.Fatal(err)
	}
	op, err = b.OpenKey(ctx, ref, pub)
	if err != nil {
		t.Fatal(err)
	}
	if op.Size() != 256 {
		t.Fatalf("size %d", op.Size())
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	w, err := op.Encrypt(keys.CipherParams{Alg: keys.AlgA256KW, Value: secret}, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := op.Decrypt(keys.CipherParams{Alg: keys.AlgA256KW, Value: w.Value}, true)
	if err != nil || !bytes.Equal(got.Value, secret) {
		t.Fatalf("A256KW round trip: %v", err)
	}
	w.Value[3] ^= 1
	if _, err := op.Decrypt(keys.CipherParams{Alg: keys.AlgA256KW, Value: w.Value}, true); !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("altered wrapped key: %v", err)
	}
	for _, alg := range []string{keys.AlgA256GCM, keys.AlgA256CBCPAD} {
		c, err := op.Encrypt(keys.CipherParams{Alg: alg, Value: []byte("attack at dawn"), AAD: nil}, false)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		p, err := op.Decrypt(keys.CipherParams{Alg: alg, Value: c.Value, IV: c.IV, Tag: c.Tag}, false)
		if err != nil || string(p.Value) != "attack at dawn" {
			t.Fatalf("%s round trip: %v %q", alg, err, p.Value)
		}
	}
}

// TestNotExtractable reads the private parts through PKCS#11 and expects the token to
// refuse: the keys are sensitive and not extractable.
func TestNotExtractable(t *testing.T) {
	ctx := context.Background()
	b, tok := open(t)
	_, rsaRef, err := b.Generate(ctx, "x/rsa", keys.CreateSpec{Kty: keys.KtyRSAHSM})
	if err != nil {
		t.Fatal(err)
	}
	_, octRef, err := b.Generate(ctx, "x/oct", keys.CreateSpec{Kty: keys.KtyOctHSM})
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := hsm.ReadPIN(tok.Config)
	c, err := crypto11.Configure(&crypto11.Config{Path: tok.Module, TokenLabel: tok.Token, Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := func(ref string) []byte { b, _ := hexDecode(ref); return b }
	priv, err := c.FindKeyPair(id(rsaRef), nil)
	if err != nil || priv == nil {
		t.Fatalf("find RSA key: %v", err)
	}
	if a, err := c.GetAttribute(priv, crypto11.CkaPrivateExponent); err == nil && len(a.Value) > 0 {
		t.Fatalf("the private exponent was read: %d bytes", len(a.Value))
	}
	if a, err := c.GetAttribute(priv, crypto11.CkaPrime1); err == nil && len(a.Value) > 0 {
		t.Fatalf("a prime was read: %d bytes", len(a.Value))
	}
	sk, err := c.FindKey(id(octRef), nil)
	if err != nil || sk == nil {
		t.Fatalf("find AES key: %v", err)
	}
	if a, err := c.GetAttribute(sk, crypto11.CkaValue); err == nil && len(a.Value) > 0 {
		t.Fatalf("CKA_VALUE was read: %d bytes", len(a.Value))
	}
	for _, k := range []any{priv, sk} {
		a, err := c.GetAttributes(k, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
		if err != nil {
			t.Fatal(err)
		}
		if s := a[crypto11.CkaSensitive].Value; len(s) != 1 || s[0] != 1 {
			t.Errorf("CKA_SENSITIVE = %v", s)
		}
		if e := a[crypto11.CkaExtractable].Value; len(e) != 1 || e[0] != 0 {
			t.Errorf("CKA_EXTRACTABLE = %v", e)
		}
	}
}

func TestDestroyAndRootKey(t *testing.T) {
	ctx := context.Background()
	b, tok := open(t)
	pub, ref, err := b.Generate(ctx, "x/rsa", keys.CreateSpec{Kty: keys.KtyRSAHSM})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Exists(ctx, ref); !ok || err != nil {
		t.Fatalf("exists before destroy: %v %v", ok, err)
	}
	if err := b.Destroy(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Exists(ctx, ref); ok || err != nil {
		t.Fatalf("exists after destroy: %v %v", ok, err)
	}
	if _, err := b.OpenKey(ctx, ref, pub); err == nil {
		t.Fatal("a destroyed key opens")
	}

	root := make([]byte, 32)
	rand.Read(root)
	sealed, err := b.SealRootKey(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, root) {
		t.Fatal("the sealed root key holds the root key")
	}
	got, err := b.UnsealRootKey(ctx, sealed)
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("unseal: %v", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := b.UnsealRootKey(ctx, sealed); err == nil {
		t.Fatal("an altered sealed root key unseals")
	}

	// Wrong PIN, absent token: refused with the reason.
	bad := tok.Config
	bad.Token = "no-such-token"
	if _, err := hsm.Open(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), `"coffer-test"`) || !strings.Contains(err.Error(), "not present") {
		t.Fatalf("absent token: %v", err)
	}
}

// TestPlainRootKeySealedInPlace: a plain root-key file is sealed on the first start with
// --vault-root-key-hsm, keeps its key, and no longer holds it.
func TestPlainRootKeySealedInPlace(t *testing.T) {
	ctx := context.Background()
	b, _ := open(t)
	file := filepath.Join(t.TempDir(), "vault-root.key")
	plain, _, err := vault.LoadRootKey(file, "")
	if err != nil {
		t.Fatal(err)
	}
	got, where, err := vault.LoadRootKeyWith(ctx, file, "", b, true)
	if err != nil || !bytes.Equal(got, plain) || !strings.Contains(where, "sealed by HSM") {
		t.Fatalf("seal in place: %v %q", err, where)
	}
	raw, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(raw), "coffer-vault-root-key-hsm-v1:") || strings.Contains(string(raw), base64.StdEncoding.EncodeToString(plain)) {
		t.Fatalf("file after sealing: %q", raw)
	}
	again, _, err := vault.LoadRootKeyWith(ctx, file, "", b, false)
	if err != nil || !bytes.Equal(again, plain) {
		t.Fatalf("unseal: %v", err)
	}
}
