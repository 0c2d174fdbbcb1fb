package imagecrypt

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	encconfig "github.com/containers/ocicrypt/config"
	encutils "github.com/containers/ocicrypt/utils"

	"github.com/cofferhq/coffer/internal/kek"
	"github.com/cofferhq/coffer/internal/kek/resolve"
)

// KEKs gives the vault driver that reaches a key as an identity: *resolve.Resolver, the
// one KEK resolver.
type KEKs interface {
	KEK(ctx context.Context, ident, keyID string) (kek.KEK, error)
}

// vaultPrefix marks a recipient or key that lives in a key vault.
const vaultPrefix = "vault:"

// ErrKeyFormat is a recipient or key file that is not of an accepted format.
var ErrKeyFormat = errors.New("unsupported key format")

// encryptConfig turns recipients (jwe:FILE, pkcs7:FILE, vault:KEY-URL, provider:NAME:…)
// into ocicrypt's encryption configuration.
func encryptConfig(ctx context.Context, recipients []string, keks KEKs, ident string) (*encconfig.EncryptConfig, []string, error) {
	if len(recipients) == 0 {
		return nil, nil, errors.New("give at least one --recipient (jwe:PUBLIC.pem, pkcs7:CERT.pem, vault:KEY-URL or provider:NAME:PARAMS)")
	}
	var ccs []encconfig.CryptoConfig
	var jwes, certs, providers [][]byte
	var names []string
	for _, r := range recipients {
		scheme, arg, ok := strings.Cut(r, ":")
		if !ok || arg == "" {
			return nil, nil, fmt.Errorf("recipient %q: want jwe:PUBLIC.pem, pkcs7:CERT.pem, vault:KEY-URL or provider:NAME:PARAMS", r)
		}
		switch scheme {
		case "jwe":
			b, err := os.ReadFile(arg)
			if err != nil {
				return nil, nil, fmt.Errorf("recipient %s: %w", r, err)
			}
			if !encutils.IsPublicKey(b) {
				return nil, nil, fmt.Errorf("recipient %s: %w: the file is not a public key in PKIX PEM, DER or JWK form (a private key or a certificate is refused: use pkcs7: for certificates)", r, ErrKeyFormat)
			}
			jwes = append(jwes, b)
		case "pkcs7":
			b, err := os.ReadFile(arg)
			if err != nil {
				return nil, nil, fmt.Errorf("recipient %s: %w", r, err)
			}
			if !encutils.IsCertificate(b) {
				return nil, nil, fmt.Errorf("recipient %s: %w: the file is not an X.509 certificate (PEM or DER)", r, ErrKeyFormat)
			}
			certs = append(certs, b)
		case "vault":
			pub, kid, err := vaultPublicKey(ctx, keks, ident, arg)
			if err != nil {
				return nil, nil, fmt.Errorf("recipient %s: %w", r, err)
			}
			jwes = append(jwes, pub)
			r = vaultPrefix + kid
		case "provider":
			providers = append(providers, []byte(arg))
		default:
			return nil, nil, fmt.Errorf("recipient %q: unknown scheme %q (pgp and pkcs11 are not offered; use jwe:, pkcs7:, vault: or provider:)", r, scheme)
		}
		names = append(names, r)
	}
	if len(jwes) > 0 {
		cc, err := encconfig.EncryptWithJwe(jwes)
		if err != nil {
			return nil, nil, err
		}
		ccs = append(ccs, cc)
	}
	if len(certs) > 0 {
		cc, err := encconfig.EncryptWithPkcs7(certs)
		if err != nil {
			return nil, nil, err
		}
		ccs = append(ccs, cc)
	}
	if len(providers) > 0 {
		cc, err := encconfig.EncryptWithKeyProvider(providers)
		if err != nil {
			return nil, nil, err
		}
		ccs = append(ccs, cc)
	}
	cc := encconfig.CombineCryptoConfigs(ccs)
	return cc.EncryptConfig, names, nil
}

// vaultPublicKey reads the public half of an RSA key in a vault, as PKIX PEM.
func vaultPublicKey(ctx context.Context, keks KEKs, ident, keyURL string) ([]byte, string, error) {
	if keks == nil {
		return nil, "", errors.New("no key vault is configured for vault: keys")
	}
	k, err := keks.KEK(ctx, ident, keyURL)
	if err != nil {
		return nil, "", err
	}
	info, err := k.GetKey(ctx, keyURL)
	if err != nil {
		return nil, "", fmt.Errorf("read the public key (the identity needs the get permission): %w", err)
	}
	if !kek.SupportedType(info.Type) || len(info.N) == 0 || len(info.E) == 0 {
		return nil, "", fmt.Errorf("key %s is of type %s: %w; image keys are wrapped with RSA keys", info.KID, info.Type, kek.ErrUnsupportedKeyType)
	}
	if !info.Enabled {
		return nil, "", fmt.Errorf("key %s: %w", info.KID, kek.ErrDisabled)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(info.N), E: int(new(big.Int).SetBytes(info.E).Int64())}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), info.KID, nil
}

// decryptKeys is what a decryption may use: ocicrypt's configuration for key files and
// key providers, and the vault keys.
type decryptKeys struct {
	dc    *encconfig.DecryptConfig
	vault []string // key URLs
	// fileKeys counts keys given as files (or provider:), for the error message.
	fileKeys int
}

// parseKeys reads --key values: PRIVATE.pem[:password] (PEM, DER or JWK; password also as
// pass=…, file=…), CERT.pem (the certificate a pkcs7 recipient was encrypted to, beside its
// private key), vault:KEY-URL and provider:NAME[:PARAMS].
func parseKeys(keys []string) (*decryptKeys, error) {
	out := &decryptKeys{}
	var priv, pwds, certs, providers [][]byte
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, vaultPrefix):
			u := strings.TrimPrefix(k, vaultPrefix)
			if _, err := kek.ParseKeyID(u); err != nil {
				return nil, fmt.Errorf("key %s: %w", k, err)
			}
			out.vault = append(out.vault, u)
			continue
		case strings.HasPrefix(k, "provider:"):
			providers = append(providers, []byte(strings.TrimPrefix(k, "provider:")))
			out.fileKeys++
			continue
		}
		file, pw := k, ""
		if _, err := os.Stat(k); err != nil {
			if i := strings.LastIndex(k, ":"); i > 0 {
				file, pw = k[:i], k[i+1:]
			}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", file, err)
		}
		password, err := readPassword(pw)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", file, err)
		}
		switch ok, err := encutils.IsPrivateKey(b, password); {
		case encutils.IsPasswordError(err):
			return nil, fmt.Errorf("key %s is encrypted: give its password as %s:PASSWORD (or :file=PASSWORD-FILE): %w", file, file, err)
		case ok:
			priv = append(priv, b)
			pwds = append(pwds, password)
		case encutils.IsCertificate(b):
			certs = append(certs, b)
		default:
			return nil, fmt.Errorf("key %s: %w: not a private key in PEM (PKCS#1, PKCS#8, EC), DER or JWK form, nor a certificate", file, ErrKeyFormat)
		}
		out.fileKeys++
	}
	var ccs []encconfig.CryptoConfig
	if len(priv) > 0 {
		cc, err := encconfig.DecryptWithPrivKeys(priv, pwds)
		if err != nil {
			return nil, err
		}
		ccs = append(ccs, cc)
	}
	if len(certs) > 0 {
		cc, err := encconfig.DecryptWithX509s(certs)
		if err != nil {
			return nil, err
		}
		ccs = append(ccs, cc)
	}
	if len(providers) > 0 {
		cc, err := encconfig.DecryptWithKeyProvider(providers)
		if err != nil {
			return nil, err
		}
		ccs = append(ccs, cc)
	}
	cc := encconfig.CombineCryptoConfigs(ccs)
	out.dc = cc.DecryptConfig
	if out.dc == nil {
		out.dc = &encconfig.DecryptConfig{Parameters: map[string][][]byte{}}
	}
	return out, nil
}

func readPassword(pw string) ([]byte, error) {
	switch {
	case pw == "":
		return nil, nil
	case strings.HasPrefix(pw, "file="):
		b, err := os.ReadFile(strings.TrimPrefix(pw, "file="))
		return []byte(strings.TrimRight(string(b), "\r\n")), err
	case strings.HasPrefix(pw, "pass="):
		return []byte(strings.TrimPrefix(pw, "pass=")), nil
	}
	return []byte(pw), nil
}

// PrivateKeyJWK reads an RSA private key (PEM PKCS#1 or PKCS#8, optionally encrypted with
// password) and returns it for import into a vault.
func ParseRSAPrivateKey(data, password []byte) (*rsa.PrivateKey, error) {
	k, err := encutils.ParsePrivateKey(data, password, "import")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFormat, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: the key is a %T; only RSA keys can hold image keys", ErrKeyFormat, k)
	}
	return rk, nil
}

// RemoteKEKs is the KEK resolver of a client process (the CLI): every vault key is reached
// over REST as the client-secret credential given, else as the host's managed identity.
func RemoteKEKs(tenantID, clientID, clientSecret, authorityHost, caFile string) KEKs {
	return resolve.NewRemote(resolve.Credential{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret, AuthorityHost: authorityHost}, caFile)
}

// PublicKeyPEM is an RSA public key (modulus and exponent, big-endian) as PKIX PEM, as
// `coffer vault key download --public` writes it for skopeo and buildah.
func PublicKeyPEM(n, e []byte) ([]byte, error) {
	if len(n) == 0 || len(e) == 0 {
		return nil, fmt.Errorf("%w: not an RSA public key", ErrKeyFormat)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
