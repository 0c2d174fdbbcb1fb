// Package keys holds the vault's key material: JSON Web Keys in the Azure Key Vault
// dialect (unpadded base64url members), key generation, import validation and the
// cryptographic operations (wrap/unwrap, encrypt/decrypt, sign/verify). It knows nothing
// of storage, HTTP or access control.
package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Key types as Key Vault names them.
const (
	KtyRSA    = "RSA"
	KtyRSAHSM = "RSA-HSM"
	KtyEC     = "EC"
	KtyECHSM  = "EC-HSM"
	KtyOct    = "oct"
	KtyOctHSM = "oct-HSM"
)

// Curves.
const (
	CurveP256 = "P-256"
	CurveP384 = "P-384"
	CurveP521 = "P-521"
)

// Key operations (key_ops).
var AllOps = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}

// ErrInvalid is wrapped by every error caused by bad input (a 400 for the API).
var ErrInvalid = errors.New("invalid parameter")

// ErrUnsupported is wrapped when an algorithm does not fit the key (400 for the API).
var ErrUnsupported = errors.New("operation not supported by the key")

// ErrDecrypt is wrapped when ciphertext does not decrypt or a signature is malformed.
var ErrDecrypt = errors.New("decryption failed")

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

// B64 is a byte string that marshals as unpadded base64url and accepts padded, unpadded,
// standard or URL alphabets when unmarshalled.
type B64 []byte

// MarshalJSON implements json.Marshaler.
func (b B64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + base64.RawURLEncoding.EncodeToString(b) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *B64) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return invalidf("expected a base64url string")
	}
	v, err := DecodeB64(string(data[1 : len(data)-1]))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// DecodeB64 decodes base64url or base64, padded or not.
func DecodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		v, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			return nil, invalidf("bad base64: %v", err)
		}
		return v, nil
	}
	v, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, invalidf("bad base64url: %v", err)
	}
	return v, nil
}

// JWK is a JSON Web Key in Key Vault's shape. Private members are only present in
// imported keys and backups; the API never returns them.
type JWK struct {
	Kid    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      B64      `json:"n,omitempty"`
	E      B64      `json:"e,omitempty"`
	D      B64      `json:"d,omitempty"`
	DP     B64      `json:"dp,omitempty"`
	DQ     B64      `json:"dq,omitempty"`
	QI     B64      `json:"qi,omitempty"`
	P      B64      `json:"p,omitempty"`
	Q      B64      `json:"q,omitempty"`
	K      B64      `json:"k,omitempty"`
	KeyHSM B64      `json:"key_hsm,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      B64      `json:"x,omitempty"`
	Y      B64      `json:"y,omitempty"`
}

// Public returns the JWK without private members.
func (j JWK) Public() JWK {
	p := JWK{Kid: j.Kid, Kty: j.Kty, KeyOps: slices.Clone(j.KeyOps), Crv: j.Crv}
	switch BaseKty(j.Kty) {
	case KtyRSA:
		p.N, p.E = j.N, j.E
	case KtyEC:
		p.X, p.Y = j.X, j.Y
	}
	return p
}

// BaseKty maps HSM kinds to their software kind (the algorithms are the same).
func BaseKty(kty string) string {
	switch kty {
	case KtyRSA, KtyRSAHSM:
		return KtyRSA
	case KtyEC, KtyECHSM:
		return KtyEC
	case KtyOct, KtyOctHSM:
		return KtyOct
	}
	return ""
}

// DefaultOps are the key_ops a new key of kty gets when the request names none.
func DefaultOps(kty string) []string {
	switch BaseKty(kty) {
	case KtyRSA:
		return []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
	case KtyEC:
		return []string{"sign", "verify"}
	default:
		return []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}
	}
}

// ValidateOps checks that every op is known and fits the key type.
func ValidateOps(kty string, ops []string) error {
	for _, op := range ops {
		if op == "import" { // accepted by Key Vault, no operation of its own
			continue
		}
		if !slices.Contains(AllOps, op) {
			return invalidf("unknown key operation %q (known: %s)", op, strings.Join(AllOps, ", "))
		}
		if BaseKty(kty) == KtyEC && op != "sign" && op != "verify" {
			return invalidf("key operation %q is not possible with an EC key", op)
		}
		if BaseKty(kty) == KtyOct && (op == "sign" || op == "verify") {
			return invalidf("key operation %q is not possible with an oct key", op)
		}
	}
	return nil
}

// CreateSpec says what key to generate.
type CreateSpec struct {
	Kty            string
	Size           int
	Curve          string
	PublicExponent int
}

// Generate makes new key material (a JWK with private members).
func Generate(spec CreateSpec) (JWK, error) {
	switch BaseKty(spec.Kty) {
	case KtyRSA:
		size := spec.Size
		if size == 0 {
			size = 2048
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return JWK{}, invalidf("RSA key size %d is not supported: use 2048, 3072 or 4096", size)
		}
		if spec.PublicExponent != 0 && spec.PublicExponent != 65537 {
			return JWK{}, invalidf("public exponent %d is not supported: only 65537", spec.PublicExponent)
		}
		k, err := rsa.GenerateKey(rand.Reader, size)
		if err != nil {
			return JWK{}, fmt.Errorf("generate RSA key: %w", err)
		}
		return rsaJWK(spec.Kty, k), nil
	case KtyEC:
		if spec.Size != 0 {
			return JWK{}, invalidf("key_size is not used with EC keys: give crv")
		}
		crv := spec.Curve
		if crv == "" {
			crv = CurveP256
		}
		c, err := curveOf(crv)
		if err != nil {
			return JWK{}, err
		}
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			return JWK{}, fmt.Errorf("generate EC key: %w", err)
		}
		return ecJWK(spec.Kty, crv, k)
	case KtyOct:
		size := spec.Size
		if size == 0 {
			size = 256
		}
		if size != 128 && size != 192 && size != 256 {
			return JWK{}, invalidf("oct key size %d is not supported: use 128, 192 or 256", size)
		}
		k := make([]byte, size/8)
		rand.Read(k)
		return JWK{Kty: spec.Kty, K: k}, nil
	}
	return JWK{}, invalidf("key type %q is not supported: use RSA, RSA-HSM, EC, EC-HSM, oct or oct-HSM", spec.Kty)
}

func rsaJWK(kty string, k *rsa.PrivateKey) JWK {
	k.Precompute()
	return JWK{Kty: kty, N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(),
		P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(), DP: k.Precomputed.Dp.Bytes(),
		DQ: k.Precomputed.Dq.Bytes(), QI: k.Precomputed.Qinv.Bytes()}
}

func ecJWK(kty, crv string, k *ecdsa.PrivateKey) (JWK, error) {
	// Fixed-size coordinates, as JWA requires.
	size := (k.Curve.Params().BitSize + 7) / 8
	pub, err := k.PublicKey.Bytes() // uncompressed 0x04 || X || Y
	if err != nil {
		return JWK{}, fmt.Errorf("encode EC key: %w", err)
	}
	priv, err := k.Bytes()
	if err != nil {
		return JWK{}, fmt.Errorf("encode EC key: %w", err)
	}
	return JWK{Kty: kty, Crv: crv, X: pub[1 : 1+size], Y: pub[1+size:], D: priv}, nil
}

// Curve returns the curve a JWK crv names (P-256, P-384, P-521).
func Curve(crv string) (elliptic.Curve, error) { return curveOf(crv) }

func curveOf(crv string) (elliptic.Curve, error) {
	switch crv {
	case CurveP256:
		return elliptic.P256(), nil
	case CurveP384:
		return elliptic.P384(), nil
	case CurveP521:
		return elliptic.P521(), nil
	}
	return nil, invalidf("curve %q is not supported: use P-256, P-384 or P-521", crv)
}

// Material is parsed key material, ready for operations. It is safe for concurrent use.
type Material struct {
	Kty    string
	RSA    *rsa.PrivateKey
	RSAPub *rsa.PublicKey
	EC     *ecdsa.PrivateKey
	ECPub  *ecdsa.PublicKey
	Oct    []byte
}

// Parse turns a JWK into Material. Private members are required for RSA/EC private
// operations; a JWK without them gives a public-only Material.
func Parse(j JWK) (*Material, error) {
	m := &Material{Kty: j.Kty}
	switch BaseKty(j.Kty) {
	case KtyRSA:
		if len(j.N) == 0 || len(j.E) == 0 {
			return nil, invalidf("RSA key needs n and e")
		}
		e := new(big.Int).SetBytes(j.E)
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, invalidf("RSA public exponent out of range")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(j.N), E: int(e.Int64())}
		bits := pub.N.BitLen()
		if bits < 2048 || bits > 4096 {
			return nil, invalidf("RSA key size %d is not supported: 2048 to 4096 bits", bits)
		}
		m.RSAPub = pub
		if len(j.D) > 0 {
			if len(j.P) == 0 || len(j.Q) == 0 {
				return nil, invalidf("RSA private key needs p and q")
			}
			k := &rsa.PrivateKey{PublicKey: *pub, D: new(big.Int).SetBytes(j.D),
				Primes: []*big.Int{new(big.Int).SetBytes(j.P), new(big.Int).SetBytes(j.Q)}}
			if err := k.Validate(); err != nil {
				return nil, invalidf("RSA private key is inconsistent: %v", err)
			}
			k.Precompute()
			m.RSA = k
		}
	case KtyEC:
		c, err := curveOf(j.Crv)
		if err != nil {
			return nil, err
		}
		size := (c.Params().BitSize + 7) / 8
		if len(j.X) != size || len(j.Y) != size {
			return nil, invalidf("EC key coordinates must be %d bytes for %s", size, j.Crv)
		}
		raw := append(append([]byte{4}, j.X...), j.Y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c, raw)
		if err != nil {
			return nil, invalidf("EC public key is not on the curve: %v", err)
		}
		m.ECPub = pub
		if len(j.D) > 0 {
			d := j.D
			if len(d) < size {
				d = append(make([]byte, size-len(d)), d...)
			}
			k, err := ecdsa.ParseRawPrivateKey(c, d)
			if err != nil {
				return nil, invalidf("EC private key: %v", err)
			}
			if !k.PublicKey.Equal(pub) {
				return nil, invalidf("EC private key does not match x and y")
			}
			m.EC = k
		}
	case KtyOct:
		if len(j.K) != 16 && len(j.K) != 24 && len(j.K) != 32 {
			return nil, invalidf("oct key must be 128, 192 or 256 bits")
		}
		m.Oct = slices.Clone(j.K)
	default:
		return nil, invalidf("key type %q is not supported", j.Kty)
	}
	return m, nil
}

// Private reports whether m holds private (or symmetric) material.
func (m *Material) Private() bool { return m.RSA != nil || m.EC != nil || m.Oct != nil }

// Size is the key size in bits (RSA modulus, curve, or symmetric key).
func (m *Material) Size() int {
	switch {
	case m.RSAPub != nil:
		return m.RSAPub.N.BitLen()
	case m.ECPub != nil:
		return m.ECPub.Curve.Params().BitSize
	default:
		return len(m.Oct) * 8
	}
}
