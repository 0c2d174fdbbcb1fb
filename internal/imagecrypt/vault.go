package imagecrypt

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cofferhq/coffer/internal/kek"
)

// Annotations of ocicrypt's format.
const (
	annotationKeysPrefix = "org.opencontainers.image.enc.keys."
	annotationJWE        = annotationKeysPrefix + "jwe"
	annotationPubOpts    = "org.opencontainers.image.enc.pubopts"
)

// vaultDecrypter unwraps a JWE's encrypted key with the vault's unwrapKey (go-jose's opaque
// key decrypter), so the private key never leaves the vault.
type vaultDecrypter struct {
	ctx   context.Context
	k     kek.KEK
	kid   string
	calls int
	err   error // the vault's last error (go-jose reports only a generic failure)
}

func (d *vaultDecrypter) DecryptKey(encryptedKey []byte, h jose.Header) ([]byte, error) {
	alg := h.Algorithm
	if alg != string(jose.RSA_OAEP) && alg != string(jose.RSA_OAEP_256) {
		return nil, fmt.Errorf("JWE key algorithm %s cannot be unwrapped by a vault RSA key", alg)
	}
	d.calls++
	var out []byte
	var err error
	if alg == kek.Algorithm {
		out, err = d.k.UnwrapKey(d.ctx, d.kid, encryptedKey)
	} else if au, ok := d.k.(kek.AlgorithmUnwrapper); ok {
		out, err = au.UnwrapKeyAlgorithm(d.ctx, d.kid, alg, encryptedKey)
	} else {
		err = fmt.Errorf("the vault driver cannot unwrap with %s", alg)
	}
	if err != nil {
		d.err = err
	}
	return out, err
}

// jweAlgorithms are the JWE algorithms ocicrypt writes and reads.
var (
	jweKeyAlgorithms = []jose.KeyAlgorithm{jose.RSA_OAEP, jose.RSA_OAEP_256}
	jweContentAlgs   = []jose.ContentEncryption{jose.A128GCM, jose.A192GCM, jose.A256GCM, jose.A128CBC_HS256, jose.A192CBC_HS384, jose.A256CBC_HS512}
)

// errNoVaultRecipient: the layer has no JWE recipient the vault key could unwrap.
var errNoVaultRecipient = errors.New("no JWE recipient of this layer unwraps with the vault key")

// unwrapWithVault returns the layer's private options (ocicrypt's optsData) by unwrapping its
// JWE with the vault key keyURL. Each JWE recipient tried is one vault unwrapKey call; a JWE
// that ocicrypt wrote for one public key has one recipient.
func unwrapWithVault(ctx context.Context, keks KEKs, ident, keyURL string, desc ocispec.Descriptor) ([]byte, error) {
	b64 := desc.Annotations[annotationJWE]
	if b64 == "" {
		return nil, errNoVaultRecipient
	}
	k, err := keks.KEK(ctx, ident, keyURL)
	if err != nil {
		return nil, err
	}
	kid := keyURL
	var errs []error
	for _, one := range strings.Split(b64, ",") {
		raw, err := base64.StdEncoding.DecodeString(one)
		if err != nil {
			return nil, fmt.Errorf("the layer's %s annotation is not base64", annotationJWE)
		}
		jwe, err := jose.ParseEncrypted(string(raw), jweKeyAlgorithms, jweContentAlgs)
		if err != nil {
			errs = append(errs, fmt.Errorf("JWE: %w", err))
			continue
		}
		d := &vaultDecrypter{ctx: ctx, k: k, kid: kid}
		_, _, plain, err := jwe.DecryptMulti(d)
		if err == nil {
			return plain, nil
		}
		if d.calls == 0 {
			errs = append(errs, err)
			continue
		}
		// go-jose hides the vault's error; say what was asked.
		if d.err != nil {
			err = d.err
		}
		errs = append(errs, fmt.Errorf("the vault did not unwrap the layer key with %s (the identity needs the unwrapKey permission, and the image must be encrypted to this key): %w", kid, err))
	}
	return nil, fmt.Errorf("%w: %w", errNoVaultRecipient, errors.Join(errs...))
}
