// Package kek is how Coffer's services reach a key-encryption key (KEK) in a key vault: wrap
// and unwrap a small secret (a data or root key) with an RSA key, read a key's properties,
// and find its newest version. The registry's encryption at rest (package seal/keyring) and
// the KMS plugin use it.
//
// Two drivers implement KEK: kek/rest speaks the Azure Key Vault keys REST API through the
// real azkeys SDK (Coffer's vault in another process, or Azure Key Vault), and kek/inproc
// calls Coffer's own vault service in the same process as a given identity, so the vault's
// access checks, network rules and audit trail apply exactly as over HTTP. Both pass the
// shared suite in kek/kektest. Package kek/resolve chooses between them for a key URL and
// an identity (docs/kek.md).
//
// Errors from every driver wrap one of the sentinel errors below, so callers can tell a
// revoked permission from a deleted or disabled key, and the message carries the vault's
// own words.
package kek

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Algorithm is the wrapping algorithm Coffer uses.
const Algorithm = "RSA-OAEP-256"

// FallbackAlgorithm is what the drivers wrap with when the key lives in an HSM token that
// cannot run Algorithm (SoftHSM 2.6 does RSA-OAEP with SHA-1 only): the vault refuses
// Algorithm with ErrAlgorithmUnsupported, and the wrapped value records the algorithm
// used (RecordAlgorithm), so UnwrapKey needs nothing else.
const FallbackAlgorithm = "RSA-OAEP"

// algMarker starts a wrapped value made with another algorithm than Algorithm. A bare
// RSA-OAEP-256 ciphertext (every value wrapped before, and every one a token able to run
// it makes) starts with these 16 bytes with probability 2^-128.
const algMarker = "\x00coffer-kek-alg\x00"

// RecordAlgorithm is the wrapped value to store for raw, made with alg: raw itself for
// Algorithm, else raw prefixed with the algorithm's name.
func RecordAlgorithm(alg string, raw []byte) []byte {
	if alg == Algorithm {
		return raw
	}
	return append([]byte(algMarker+alg+"\x00"), raw...)
}

// RecordedAlgorithm splits a stored wrapped value into the algorithm it was made with and
// the vault's ciphertext.
func RecordedAlgorithm(wrapped []byte) (alg string, raw []byte) {
	rest, ok := strings.CutPrefix(string(wrapped), algMarker)
	if !ok {
		return Algorithm, wrapped
	}
	name, _, ok := strings.Cut(rest, "\x00")
	if !ok || name != FallbackAlgorithm {
		return Algorithm, wrapped
	}
	return name, wrapped[len(algMarker)+len(name)+1:]
}

// WrapWithFallback runs wrap with Algorithm and, when the key's HSM cannot run it, with
// FallbackAlgorithm; it returns the wrapped value with the algorithm recorded. The
// drivers' WrapKey use it.
func WrapWithFallback(wrap func(alg string) (kid string, raw []byte, err error)) (string, []byte, error) {
	kid, raw, err := wrap(Algorithm)
	if errors.Is(err, ErrAlgorithmUnsupported) {
		kid, raw, err = wrap(FallbackAlgorithm)
		if err != nil {
			return "", nil, err
		}
		return kid, RecordAlgorithm(FallbackAlgorithm, raw), nil
	}
	return kid, raw, err
}

// Sentinel errors; driver errors wrap one of them (errors.Is).
var (
	ErrNotFound      = errors.New("key not found")
	ErrForbidden     = errors.New("access to the key is denied")
	ErrDisabled      = errors.New("key is disabled")
	ErrNetworkDenied = errors.New("the vault's network rules deny the caller")
	// ErrUnsupportedKeyType: only RSA and RSA-HSM keys can be key-encryption keys.
	ErrUnsupportedKeyType = errors.New("unsupported key type")
	ErrInvalidKeyID       = errors.New("invalid key identifier")
	// ErrUnavailable: the vault could not be reached or failed (network, 5xx).
	ErrUnavailable = errors.New("key vault unavailable")
	// ErrInvalid: the vault refused the request as malformed (for example, a wrapped key
	// that does not unwrap under the key).
	ErrInvalid = errors.New("the vault rejected the request")
	// ErrAlgorithmUnsupported: the key's HSM token cannot run the algorithm (the drivers
	// then wrap with FallbackAlgorithm).
	ErrAlgorithmUnsupported = errors.New("the key's HSM cannot run the algorithm")
	// ErrUnwrapMismatch: a wrap/unwrap round trip did not give back the secret.
	ErrUnwrapMismatch = errors.New("key vault returned a different key on unwrap")
)

// KeyInfo is what a vault tells about a key version.
type KeyInfo struct {
	// KID is the versioned key id, https://HOST/keys/NAME/VERSION.
	KID string
	// Type is the JWK key type: RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM.
	Type    string
	Enabled bool
	// Ops are the operations the key allows (JWK key_ops).
	Ops []string
	// N and E are an RSA key's public modulus and exponent (big-endian), when the vault
	// gave them: image encryption encrypts to the public half of a vault key.
	N, E []byte
}

// KEK is a key vault as a key-encryption-key service. Key ids are URLs; a versionless id
// (https://HOST/keys/NAME) means the key's newest version.
type KEK interface {
	// GetKey reads the key's public properties (permission "get").
	GetKey(ctx context.Context, keyID string) (KeyInfo, error)
	// WrapKey wraps secret with RSA-OAEP-256, or RSA-OAEP recorded in the result when the
	// key's HSM cannot do RSA-OAEP-256 (permission "wrapKey"), and returns the
	// versioned id of the key version that wrapped it.
	WrapKey(ctx context.Context, keyID string, secret []byte) (kid string, wrapped []byte, err error)
	// UnwrapKey unwraps what WrapKey returned (permission "unwrapKey"); kid is versioned.
	UnwrapKey(ctx context.Context, kid string, wrapped []byte) ([]byte, error)
}

// AlgorithmUnwrapper is a KEK that can also unwrap with another RSA algorithm than
// Algorithm: a JWE that an ocicrypt client (skopeo, buildah) wrote to an RSA public key uses
// RSA-OAEP (SHA-1), and image decryption through the vault (package imagecrypt) must unwrap
// it with the vault's unwrapKey. Both drivers implement it.
type AlgorithmUnwrapper interface {
	// UnwrapKeyAlgorithm is UnwrapKey with alg (RSA-OAEP-256 or RSA-OAEP).
	UnwrapKeyAlgorithm(ctx context.Context, kid, alg string, wrapped []byte) ([]byte, error)
}

// Error is a failed vault operation. It wraps Kind (one of the sentinel errors) and keeps
// the vault's own message.
type Error struct {
	Op    string // get, wrapKey, unwrapKey
	KeyID string
	Kind  error
	// Detail is the vault's message (or the transport error).
	Detail string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("key vault %s of %s: %v", e.Op, e.KeyID, e.Kind)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Kind }

// KeyID is a parsed key identifier.
type KeyID struct {
	// Vault is the vault's base URL: scheme and host (with port), no path.
	Vault   string
	Name    string
	Version string // empty: the newest version
}

// ParseKeyID parses https://HOST/keys/NAME[/VERSION]. The vault URL cannot carry a path
// prefix (Key Vault clients read the name and version from fixed path segments).
func ParseKeyID(s string) (KeyID, error) {
	bad := func(why string) (KeyID, error) {
		return KeyID{}, fmt.Errorf("%w %q: %s (want https://VAULT-HOST/keys/NAME or https://VAULT-HOST/keys/NAME/VERSION)", ErrInvalidKeyID, s, why)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad("the scheme must be https")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("it must be a plain URL with a host")
	}
	parts := strings.Split(strings.TrimSuffix(u.Path, "/"), "/")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "" || parts[1] != "keys" || parts[2] == "" {
		return bad("the path must be /keys/NAME[/VERSION]")
	}
	k := KeyID{Vault: u.Scheme + "://" + u.Host, Name: parts[2]}
	if len(parts) == 4 {
		if parts[3] == "" {
			return bad("empty version")
		}
		k.Version = parts[3]
	}
	return k, nil
}

// String is the key id URL.
func (k KeyID) String() string {
	s := k.Vault + "/keys/" + k.Name
	if k.Version != "" {
		s += "/" + k.Version
	}
	return s
}

// Versionless is the key id without its version.
func (k KeyID) Versionless() string { return KeyID{Vault: k.Vault, Name: k.Name}.String() }

// SupportedType reports whether a key type can be a key-encryption key.
func SupportedType(kty string) bool { return kty == "RSA" || kty == "RSA-HSM" }

// CheckKey reads keyID and checks that it can serve as a key-encryption key: it exists, the
// identity may get it, it is an enabled RSA or RSA-HSM key that allows wrapKey and
// unwrapKey. It does not call wrap or unwrap (see Probe).
func CheckKey(ctx context.Context, k KEK, keyID string) (KeyInfo, error) {
	if _, err := ParseKeyID(keyID); err != nil {
		return KeyInfo{}, err
	}
	info, err := k.GetKey(ctx, keyID)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("read key %s (the identity needs the get permission): %w", keyID, err)
	}
	if !SupportedType(info.Type) {
		return info, fmt.Errorf("key %s is of type %s: %w; only RSA and RSA-HSM keys can encrypt the registry", info.KID, info.Type, ErrUnsupportedKeyType)
	}
	if !info.Enabled {
		return info, fmt.Errorf("key %s: %w", info.KID, ErrDisabled)
	}
	if len(info.Ops) > 0 {
		for _, op := range []string{"wrapKey", "unwrapKey"} {
			if !slices.Contains(info.Ops, op) {
				return info, fmt.Errorf("key %s does not allow %s (its operations are %s): %w", info.KID, op, strings.Join(info.Ops, ", "), ErrUnsupportedKeyType)
			}
		}
	}
	return info, nil
}

// WrapVerified wraps secret under keyID and unwraps the result to prove that the identity
// holds both wrapKey and unwrapKey and that the round trip is exact, before anyone relies on
// the wrapped copy.
func WrapVerified(ctx context.Context, k KEK, keyID string, secret []byte) (kid string, wrapped []byte, err error) {
	kid, wrapped, err = k.WrapKey(ctx, keyID, secret)
	if err != nil {
		return "", nil, fmt.Errorf("wrap with key %s (the identity needs the wrapKey permission): %w", keyID, err)
	}
	back, err := k.UnwrapKey(ctx, kid, wrapped)
	if err != nil {
		return "", nil, fmt.Errorf("unwrap with key %s (the identity needs the unwrapKey permission): %w", kid, err)
	}
	if !Equal(back, secret) {
		return "", nil, fmt.Errorf("key %s: %w", kid, ErrUnwrapMismatch)
	}
	return kid, wrapped, nil
}

// Probe checks keyID fully, as `registry encryption enable` must before anything is
// encrypted with it: CheckKey, then a wrap/unwrap round trip of a random secret.
func Probe(ctx context.Context, k KEK, keyID string) (KeyInfo, error) {
	info, err := CheckKey(ctx, k, keyID)
	if err != nil {
		return info, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return info, err
	}
	if _, _, err := WrapVerified(ctx, k, info.KID, secret); err != nil {
		return info, err
	}
	return info, nil
}

// Equal compares two secrets in constant time.
func Equal(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}
