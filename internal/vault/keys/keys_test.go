package keys

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
)

func TestAESKeyWrapRFC3394(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF")
	want, _ := hex.DecodeString("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
	got, err := aesKeyWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrap = %x, %v; want %x", got, err, want)
	}
	back, err := aesKeyUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("unwrap = %x, %v", back, err)
	}
	got[3] ^= 1
	if _, err := aesKeyUnwrap(kek, got); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered unwrap: %v", err)
	}
}

func gen(t *testing.T, spec CreateSpec) *Material {
	t.Helper()
	j, err := Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as the vault stores it.
	raw, _ := json.Marshal(j)
	var back JWK
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	m, err := Parse(back)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCipherRoundTrips(t *testing.T) {
	rsa := gen(t, CreateSpec{Kty: KtyRSA, Size: 2048})
	oct128 := gen(t, CreateSpec{Kty: KtyOct, Size: 128})
	oct256 := gen(t, CreateSpec{Kty: KtyOctHSM, Size: 256})
	msg := []byte("0123456789abcdef0123456789abcdef")
	cases := []struct {
		name string
		m    *Material
		alg  string
		wrap bool
	}{
		{"RSA-OAEP wrap", rsa, AlgRSAOAEP, true},
		{"RSA-OAEP-256 wrap", rsa, AlgRSAOAEP256, true},
		{"RSA1_5 wrap", rsa, AlgRSA15, true},
		{"RSA-OAEP encrypt", rsa, AlgRSAOAEP, false},
		{"A128KW", oct128, AlgA128KW, true},
		{"A256KW", oct256, AlgA256KW, true},
		{"A256GCM", oct256, AlgA256GCM, false},
		{"A128CBCPAD", oct128, AlgA128CBCPAD, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct, err := c.m.Encrypt(CipherParams{Alg: c.alg, Value: msg, AAD: []byte("a")}, c.wrap)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := c.m.Decrypt(CipherParams{Alg: c.alg, Value: ct.Value, IV: ct.IV, Tag: ct.Tag, AAD: []byte("a")}, c.wrap)
			if err != nil || !bytes.Equal(pt.Value, msg) {
				t.Fatalf("round trip: %v", err)
			}
			bad := append([]byte{}, ct.Value...)
			bad[len(bad)/2] ^= 0x40
			if out, err := c.m.Decrypt(CipherParams{Alg: c.alg, Value: bad, IV: ct.IV, Tag: ct.Tag, AAD: []byte("a")}, c.wrap); err == nil && bytes.Equal(out.Value, msg) {
				t.Fatal("tampered ciphertext decrypted to the plaintext")
			}
		})
	}
	// Wrong algorithm family or size.
	if _, err := oct128.Encrypt(CipherParams{Alg: AlgA256KW, Value: msg}, true); !errors.Is(err, ErrUnsupported) {
		t.Errorf("A256KW on a 128-bit key: %v", err)
	}
	if _, err := rsa.Encrypt(CipherParams{Alg: AlgA256KW, Value: msg}, true); !errors.Is(err, ErrUnsupported) {
		t.Errorf("A256KW on RSA: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	rsa := gen(t, CreateSpec{Kty: KtyRSA, Size: 2048})
	p256 := gen(t, CreateSpec{Kty: KtyEC, Curve: CurveP256})
	p384 := gen(t, CreateSpec{Kty: KtyECHSM, Curve: CurveP384})
	p521 := gen(t, CreateSpec{Kty: KtyEC, Curve: CurveP521})
	d256 := sha256.Sum256([]byte("x"))
	d384 := sha512.Sum384([]byte("x"))
	d512 := sha512.Sum512([]byte("x"))
	cases := []struct {
		m      *Material
		alg    string
		digest []byte
	}{
		{rsa, "RS256", d256[:]}, {rsa, "RS384", d384[:]}, {rsa, "RS512", d512[:]},
		{rsa, "PS256", d256[:]}, {rsa, "PS384", d384[:]}, {rsa, "PS512", d512[:]},
		{p256, "ES256", d256[:]}, {p384, "ES384", d384[:]}, {p521, "ES512", d512[:]},
	}
	for _, c := range cases {
		sig, err := c.m.Sign(c.alg, c.digest)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		if ok, err := c.m.Verify(c.alg, c.digest, sig); !ok || err != nil {
			t.Fatalf("%s verify: %v %v", c.alg, ok, err)
		}
		sig[len(sig)-1] ^= 1
		if ok, _ := c.m.Verify(c.alg, c.digest, sig); ok {
			t.Fatalf("%s accepted a bad signature", c.alg)
		}
	}
	if _, err := p256.Sign("ES384", d384[:]); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ES384 on P-256: %v", err)
	}
	if _, err := rsa.Sign("RS256", d384[:]); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong digest size: %v", err)
	}
}

func TestCheckAlg(t *testing.T) {
	cases := []struct {
		kty, op, alg string
		ok           bool
	}{
		{KtyRSA, "wrapKey", AlgRSAOAEP256, true},
		{KtyRSAHSM, "unwrapKey", AlgRSA15, true},
		{KtyEC, "wrapKey", AlgRSAOAEP, false},
		{KtyEC, "encrypt", AlgRSAOAEP, false},
		{KtyOct, "wrapKey", AlgA192KW, true},
		{KtyOct, "encrypt", AlgA256GCM, true},
		{KtyOct, "wrapKey", AlgRSAOAEP, false},
		{KtyEC, "sign", "ES256", true},
		{KtyEC, "sign", "RS256", false},
		{KtyRSA, "sign", "PS512", true},
		{KtyOct, "sign", "RS256", false},
	}
	for _, c := range cases {
		if err := CheckAlg(c.kty, c.op, c.alg); (err == nil) != c.ok {
			t.Errorf("CheckAlg(%s, %s, %s) = %v", c.kty, c.op, c.alg, err)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, spec := range []CreateSpec{{Kty: "DSA"}, {Kty: KtyRSA, Size: 1024}, {Kty: KtyRSA, PublicExponent: 3},
		{Kty: KtyEC, Curve: "P-192"}, {Kty: KtyEC, Size: 256}, {Kty: KtyOct, Size: 512}} {
		if _, err := Generate(spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", spec, err)
		}
	}
}

func TestB64AcceptsPaddedAndStd(t *testing.T) {
	for _, in := range []string{`"-_8"`, `"-_8="`, `"+/8="`, `"+/8"`} {
		var b B64
		if err := json.Unmarshal([]byte(in), &b); err != nil || !bytes.Equal(b, []byte{0xfb, 0xff}) {
			t.Errorf("%s: %x %v", in, b, err)
		}
	}
	out, _ := json.Marshal(B64{0xfb, 0xff})
	if string(out) != `"-_8"` {
		t.Errorf("marshal = %s, want unpadded base64url", out)
	}
}

// FuzzParseJWK: untrusted JWKs (import, restore) never panic the parser, and what parses
// can be used.
func FuzzParseJWK(f *testing.F) {
	j, _ := Generate(CreateSpec{Kty: KtyEC, Curve: CurveP256})
	seed, _ := json.Marshal(j)
	f.Add(seed)
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var j JWK
		if json.Unmarshal(data, &j) != nil {
			return
		}
		m, err := Parse(j)
		if err != nil {
			return
		}
		d := sha256.Sum256(data)
		if m.EC != nil && m.ECPub.Curve.Params().Name == CurveP256 {
			sig, err := m.Sign("ES256", d[:])
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := m.Verify("ES256", d[:], sig); !ok {
				t.Fatal("own signature does not verify")
			}
		}
	})
}
