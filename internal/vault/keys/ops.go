package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384/512 for PS384/PS512

	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"math/big"
)

// Algorithms of wrap/unwrap and encrypt/decrypt.
const (
	AlgRSAOAEP    = "RSA-OAEP"
	AlgRSAOAEP256 = "RSA-OAEP-256"
	AlgRSA15      = "RSA1_5"
	AlgA128KW     = "A128KW"
	AlgA192KW     = "A192KW"
	AlgA256KW     = "A256KW"
	AlgA128GCM    = "A128GCM"
	AlgA192GCM    = "A192GCM"
	AlgA256GCM    = "A256GCM"
	AlgA128CBCPAD = "A128CBCPAD"
	AlgA192CBCPAD = "A192CBCPAD"
	AlgA256CBCPAD = "A256CBCPAD"
)

// CipherParams are the inputs of encrypt/decrypt/wrap/unwrap.
type CipherParams struct {
	Alg   string
	Value []byte
	IV    []byte
	AAD   []byte
	Tag   []byte
}

// CipherResult is the output of encrypt/decrypt/wrap/unwrap.
type CipherResult struct {
	Value []byte
	IV    []byte
	Tag   []byte
	AAD   []byte
}

func rsaHash(alg string) (hash.Hash, bool) {
	switch alg {
	case AlgRSAOAEP:
		return sha1.New(), true
	case AlgRSAOAEP256:
		return sha256.New(), true
	}
	return nil, false
}

// Encrypt encrypts (or wraps, when wrap is set) p.Value.
func (m *Material) Encrypt(p CipherParams, wrap bool) (CipherResult, error) {
	switch {
	case m.RSAPub != nil:
		if h, ok := rsaHash(p.Alg); ok {
			out, err := rsa.EncryptOAEP(h, rand.Reader, m.RSAPub, p.Value, nil)
			if err != nil {
				return CipherResult{}, invalidf("%s: %v", p.Alg, err)
			}
			return CipherResult{Value: out}, nil
		}
		if p.Alg == AlgRSA15 {
			out, err := rsa.EncryptPKCS1v15(rand.Reader, m.RSAPub, p.Value)
			if err != nil {
				return CipherResult{}, invalidf("%s: %v", p.Alg, err)
			}
			return CipherResult{Value: out}, nil
		}
	case m.Oct != nil:
		if wrap {
			if err := m.kwAlg(p.Alg); err != nil {
				return CipherResult{}, err
			}
			out, err := aesKeyWrap(m.Oct, p.Value)
			if err != nil {
				return CipherResult{}, err
			}
			return CipherResult{Value: out}, nil
		}
		return m.octEncrypt(p)
	}
	return CipherResult{}, m.unsupported(p.Alg)
}

// Decrypt decrypts (or unwraps) p.Value.
func (m *Material) Decrypt(p CipherParams, wrap bool) (CipherResult, error) {
	switch {
	case m.RSAPub != nil:
		if m.RSA == nil {
			return CipherResult{}, fmt.Errorf("%w: the key has no private part", ErrUnsupported)
		}
		if h, ok := rsaHash(p.Alg); ok {
			out, err := rsa.DecryptOAEP(h, nil, m.RSA, p.Value, nil)
			if err != nil {
				return CipherResult{}, fmt.Errorf("%w: %s", ErrDecrypt, p.Alg)
			}
			return CipherResult{Value: out}, nil
		}
		if p.Alg == AlgRSA15 {
			out, err := rsa.DecryptPKCS1v15(nil, m.RSA, p.Value)
			if err != nil {
				return CipherResult{}, fmt.Errorf("%w: %s", ErrDecrypt, p.Alg)
			}
			return CipherResult{Value: out}, nil
		}
	case m.Oct != nil:
		if wrap {
			if err := m.kwAlg(p.Alg); err != nil {
				return CipherResult{}, err
			}
			out, err := aesKeyUnwrap(m.Oct, p.Value)
			if err != nil {
				return CipherResult{}, err
			}
			return CipherResult{Value: out}, nil
		}
		return m.octDecrypt(p)
	}
	return CipherResult{}, m.unsupported(p.Alg)
}

func (m *Material) unsupported(alg string) error {
	return fmt.Errorf("%w: algorithm %q cannot be used with a %s key", ErrUnsupported, alg, BaseKty(m.Kty))
}

func (m *Material) kwAlg(alg string) error {
	want := map[string]int{AlgA128KW: 16, AlgA192KW: 24, AlgA256KW: 32}[alg]
	if want == 0 {
		return m.unsupported(alg)
	}
	if want != len(m.Oct) {
		return fmt.Errorf("%w: %s needs a %d-bit key, this key has %d bits", ErrUnsupported, alg, want*8, len(m.Oct)*8)
	}
	return nil
}

func (m *Material) octCipher(alg string) (cipher.Block, string, error) {
	sizes := map[string]int{AlgA128GCM: 16, AlgA192GCM: 24, AlgA256GCM: 32, AlgA128CBCPAD: 16, AlgA192CBCPAD: 24, AlgA256CBCPAD: 32}
	want, ok := sizes[alg]
	if !ok {
		return nil, "", m.unsupported(alg)
	}
	if want != len(m.Oct) {
		return nil, "", fmt.Errorf("%w: %s needs a %d-bit key, this key has %d bits", ErrUnsupported, alg, want*8, len(m.Oct)*8)
	}
	b, err := aes.NewCipher(m.Oct)
	if err != nil {
		return nil, "", fmt.Errorf("aes: %w", err)
	}
	mode := "GCM"
	if alg[len(alg)-3:] == "PAD" {
		mode = "CBCPAD"
	}
	return b, mode, nil
}

func (m *Material) octEncrypt(p CipherParams) (CipherResult, error) {
	b, mode, err := m.octCipher(p.Alg)
	if err != nil {
		return CipherResult{}, err
	}
	if mode == "GCM" {
		g, _ := cipher.NewGCM(b)
		iv := make([]byte, g.NonceSize())
		rand.Read(iv)
		sealed := g.Seal(nil, iv, p.Value, p.AAD)
		n := len(sealed) - g.Overhead()
		return CipherResult{Value: sealed[:n], Tag: sealed[n:], IV: iv, AAD: p.AAD}, nil
	}
	iv := p.IV
	if len(iv) == 0 {
		iv = make([]byte, aes.BlockSize)
		rand.Read(iv)
	}
	if len(iv) != aes.BlockSize {
		return CipherResult{}, invalidf("iv must be %d bytes", aes.BlockSize)
	}
	buf := Pad(p.Value)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf, buf)
	return CipherResult{Value: buf, IV: iv}, nil
}

func (m *Material) octDecrypt(p CipherParams) (CipherResult, error) {
	b, mode, err := m.octCipher(p.Alg)
	if err != nil {
		return CipherResult{}, err
	}
	if mode == "GCM" {
		g, _ := cipher.NewGCM(b)
		if len(p.IV) != g.NonceSize() || len(p.Tag) != g.Overhead() {
			return CipherResult{}, invalidf("%s needs a %d-byte iv and a %d-byte tag", p.Alg, g.NonceSize(), g.Overhead())
		}
		out, err := g.Open(nil, p.IV, append(append([]byte{}, p.Value...), p.Tag...), p.AAD)
		if err != nil {
			return CipherResult{}, fmt.Errorf("%w: authentication failed", ErrDecrypt)
		}
		return CipherResult{Value: out}, nil
	}
	if len(p.IV) != aes.BlockSize {
		return CipherResult{}, invalidf("iv must be %d bytes", aes.BlockSize)
	}
	if len(p.Value) == 0 || len(p.Value)%aes.BlockSize != 0 {
		return CipherResult{}, fmt.Errorf("%w: ciphertext is not a whole number of blocks", ErrDecrypt)
	}
	buf := append([]byte{}, p.Value...)
	cipher.NewCBCDecrypter(b, p.IV).CryptBlocks(buf, buf)
	out, err := Unpad(buf)
	if err != nil {
		return CipherResult{}, err
	}
	return CipherResult{Value: out}, nil
}

// Pad returns a copy of b with PKCS#7 padding to the AES block size (CBCPAD).
func Pad(b []byte) []byte {
	pad := aes.BlockSize - len(b)%aes.BlockSize
	buf := make([]byte, len(b)+pad)
	copy(buf, b)
	for i := len(b); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	return buf
}

// Unpad removes PKCS#7 padding from a decrypted CBCPAD message.
func Unpad(buf []byte) ([]byte, error) {
	if len(buf) == 0 {
		return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
	}
	pad := int(buf[len(buf)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(buf) {
		return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
	}
	for _, c := range buf[len(buf)-pad:] {
		if int(c) != pad {
			return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
		}
	}
	return buf[:len(buf)-pad], nil
}

// signAlg describes a signature algorithm.
type signAlg struct {
	family string // RS, PS, ES
	hash   crypto.Hash
	curve  string
}

var signAlgs = map[string]signAlg{
	"RS256": {"RS", crypto.SHA256, ""}, "RS384": {"RS", crypto.SHA384, ""}, "RS512": {"RS", crypto.SHA512, ""},
	"PS256": {"PS", crypto.SHA256, ""}, "PS384": {"PS", crypto.SHA384, ""}, "PS512": {"PS", crypto.SHA512, ""},
	"ES256": {"ES", crypto.SHA256, CurveP256}, "ES384": {"ES", crypto.SHA384, CurveP384}, "ES512": {"ES", crypto.SHA512, CurveP521},
}

func (m *Material) signParams(alg string, digest []byte) (signAlg, error) {
	a, ok := signAlgs[alg]
	if !ok {
		return a, invalidf("signature algorithm %q is not supported: use RS/PS/ES 256/384/512", alg)
	}
	switch a.family {
	case "RS", "PS":
		if m.RSAPub == nil {
			return a, m.unsupported(alg)
		}
	case "ES":
		if m.ECPub == nil {
			return a, m.unsupported(alg)
		}
		if m.ECPub.Curve.Params().Name != a.curve {
			return a, fmt.Errorf("%w: %s needs a %s key", ErrUnsupported, alg, a.curve)
		}
	}
	if len(digest) != a.hash.Size() {
		return a, invalidf("%s signs a %d-byte digest, got %d bytes", alg, a.hash.Size(), len(digest))
	}
	return a, nil
}

// Sign signs a digest.
func (m *Material) Sign(alg string, digest []byte) ([]byte, error) {
	a, err := m.signParams(alg, digest)
	if err != nil {
		return nil, err
	}
	switch a.family {
	case "RS":
		if m.RSA == nil {
			return nil, fmt.Errorf("%w: the key has no private part", ErrUnsupported)
		}
		return rsa.SignPKCS1v15(nil, m.RSA, a.hash, digest)
	case "PS":
		if m.RSA == nil {
			return nil, fmt.Errorf("%w: the key has no private part", ErrUnsupported)
		}
		return rsa.SignPSS(rand.Reader, m.RSA, a.hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default:
		if m.EC == nil {
			return nil, fmt.Errorf("%w: the key has no private part", ErrUnsupported)
		}
		r, s, err := ecdsa.Sign(rand.Reader, m.EC, digest)
		if err != nil {
			return nil, fmt.Errorf("ecdsa: %w", err)
		}
		size := (m.EC.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
}

// Verify checks a signature over a digest.
func (m *Material) Verify(alg string, digest, sig []byte) (bool, error) {
	a, err := m.signParams(alg, digest)
	if err != nil {
		return false, err
	}
	switch a.family {
	case "RS":
		return rsa.VerifyPKCS1v15(m.RSAPub, a.hash, digest, sig) == nil, nil
	case "PS":
		return rsa.VerifyPSS(m.RSAPub, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
	default:
		size := (m.ECPub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false, nil
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(m.ECPub, digest, r, s), nil
	}
}

// Operator runs a key version's operations: a *Material for a key held in software, or a
// key whose private part lives in an HSM (package vault/hsm).
type Operator interface {
	Encrypt(p CipherParams, wrap bool) (CipherResult, error)
	Decrypt(p CipherParams, wrap bool) (CipherResult, error)
	Sign(alg string, digest []byte) ([]byte, error)
	Verify(alg string, digest, sig []byte) (bool, error)
	// Size is the key size in bits.
	Size() int
}

// ErrTokenLimit is wrapped (with ErrUnsupported) when an algorithm fits the key type but
// the HSM token holding the key cannot run it (SoftHSM 2.6 has no OAEP with SHA-256).
var ErrTokenLimit = errors.New("the HSM token cannot run this algorithm")

// SignParams checks alg and digest for a signature with m's public part and returns the
// hash the algorithm signs with and its family (RS, PS or ES).
func (m *Material) SignParams(alg string, digest []byte) (crypto.Hash, string, error) {
	a, err := m.signParams(alg, digest)
	return a.hash, a.family, err
}

// HashFor returns the hash an algorithm signs with (for callers that sign data).
func HashFor(alg string) (crypto.Hash, bool) {
	a, ok := signAlgs[alg]
	return a.hash, ok
}

// aesKeyWrap implements RFC 3394 key wrap with the default IV.
func aesKeyWrap(kek, plain []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return KeyWrap(b, plain)
}

// KeyWrap is RFC 3394 AES key wrap (default IV) over any AES block cipher, such as one
// whose key lives in an HSM.
func KeyWrap(b cipher.Block, plain []byte) ([]byte, error) {
	if len(plain)%8 != 0 || len(plain) < 16 {
		return nil, invalidf("key wrap needs a key of at least 16 bytes in multiples of 8")
	}
	n := len(plain) / 8
	r := make([]byte, len(plain))
	copy(r, plain)
	a := []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i*8:i*8+8])
			b.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			for k := 0; k < 8; k++ {
				buf[7-k] ^= byte(t >> (8 * k))
			}
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a, r...), nil
}

// aesKeyUnwrap implements RFC 3394 key unwrap and checks the integrity value.
func aesKeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return KeyUnwrap(b, wrapped)
}

// KeyUnwrap is RFC 3394 AES key unwrap over any AES block cipher; it checks the integrity
// value.
func KeyUnwrap(b cipher.Block, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, fmt.Errorf("%w: wrapped key has a bad length", ErrDecrypt)
	}
	n := len(wrapped)/8 - 1
	a := append([]byte{}, wrapped[:8]...)
	r := append([]byte{}, wrapped[8:]...)
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			t := uint64(n*j + i + 1)
			copy(buf, a)
			for k := 0; k < 8; k++ {
				buf[7-k] ^= byte(t >> (8 * k))
			}
			copy(buf[8:], r[i*8:i*8+8])
			b.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}) != 1 {
		return nil, fmt.Errorf("%w: key unwrap integrity check failed", ErrDecrypt)
	}
	return r, nil
}

// CheckAlg reports whether alg fits op ("wrapKey", "unwrapKey", "encrypt", "decrypt",
// "sign", "verify") on a key of type kty, before anything else is looked at.
func CheckAlg(kty, op, alg string) error {
	base := BaseKty(kty)
	rsaAlgs := map[string]bool{AlgRSAOAEP: true, AlgRSAOAEP256: true, AlgRSA15: true}
	var ok bool
	switch op {
	case "wrapKey", "unwrapKey":
		ok = (base == KtyRSA && rsaAlgs[alg]) || (base == KtyOct && (alg == AlgA128KW || alg == AlgA192KW || alg == AlgA256KW))
	case "encrypt", "decrypt":
		ok = (base == KtyRSA && rsaAlgs[alg]) || (base == KtyOct && len(alg) > 4 && (alg[4:] == "GCM" || alg[4:] == "CBCPAD"))
	case "sign", "verify":
		a, known := signAlgs[alg]
		if !known {
			return invalidf("signature algorithm %q is not supported: use RS/PS/ES 256/384/512", alg)
		}
		ok = (base == KtyRSA && a.family != "ES") || (base == KtyEC && a.family == "ES")
	}
	if !ok {
		return fmt.Errorf("%w: algorithm %q cannot be used for %s with a %s key", ErrUnsupported, alg, op, kty)
	}
	return nil
}
