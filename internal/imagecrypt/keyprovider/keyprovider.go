// Package keyprovider is Coffer's ocicrypt key provider: it wraps and unwraps the private
// options of encrypted image layers through a key vault, so that nodes (containerd
// imgcrypt, CRI-O, skopeo built with ocicrypt ≥ 1.1) run encrypted images with their own
// vault identity instead of private key files.
//
// It speaks ocicrypt's keyprovider protocol both ways ocicrypt calls a provider: as a
// command (one JSON request on stdin, the answer on stdout; Handle) and as the gRPC
// KeyProviderService on a unix socket (Serve). Recipients and keys name it
// provider:coffer:KEY-URL.
//
// The annotation it writes is a small versioned JSON envelope (docs/image-encryption.md has
// the spec and test vectors): the layer's private options, sealed with AES-256-GCM under a
// fresh key, with the provider name, the version and the key id as associated data; the AES
// key wrapped (RSA-OAEP-256) by the vault key. Unwrap is one vault unwrapKey call made with
// the provider's identity, so a node whose identity lacks the unwrapKey permission is
// refused, and each decryption is in the vault's audit trail.
//
// ocicrypt sends a provider the whole DecryptConfig (private keys of other schemes
// included). The request types here have no field for it, so it is skipped by the JSON
// decoder: never decoded, logged or kept.
package keyprovider

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/kek"
)

// Name is the provider's fixed name: recipients provider:coffer:KEY-URL, the annotation
// org.opencontainers.image.enc.keys.provider.coffer.
const Name = "coffer"

// Version is the envelope version this package writes.
const Version = 1

// KEKs gives the vault driver that reaches a key as an identity (*resolve.Resolver).
type KEKs interface {
	KEK(ctx context.Context, ident, keyID string) (kek.KEK, error)
}

// Provider wraps and unwraps through a vault as one identity.
type Provider struct {
	keks  KEKs
	ident string
}

// New returns a provider reaching vault keys through keks as ident ("" : the resolver's
// default identity).
func New(keks KEKs, ident string) *Provider { return &Provider{keks: keks, ident: ident} }

// Envelope is the annotation the provider writes (version 1).
type Envelope struct {
	// V is the envelope version (1).
	V int `json:"v"`
	// KID is the versioned id of the vault key that wrapped WK.
	KID string `json:"kid"`
	// Alg is the vault wrapping algorithm (RSA-OAEP-256).
	Alg string `json:"alg"`
	// WK is the AES-256 key wrapped by the vault key.
	WK []byte `json:"wk"`
	// Nonce is the 12-byte AES-GCM nonce.
	Nonce []byte `json:"nonce"`
	// CT is the sealed private options (ciphertext and the 16-byte tag).
	CT []byte `json:"ct"`
}

// AAD is the associated data of an envelope: provider name, version and key id, so an
// envelope cannot be replayed under another version or relabelled to another key.
func AAD(v int, kid string) []byte {
	return fmt.Appendf(nil, "coffer-keyprovider\x00v%d\x00%s", v, kid)
}

// Seal makes an envelope of optsData with the AES key aesKey, nonce and the wrapped key
// (the deterministic part of Wrap, used by the test vectors).
func Seal(aesKey, nonce, optsData []byte, kid string, wrapped []byte) (Envelope, error) {
	g, err := gcm(aesKey)
	if err != nil {
		return Envelope{}, err
	}
	if len(nonce) != g.NonceSize() {
		return Envelope{}, errors.New("the nonce must be 12 bytes")
	}
	return Envelope{V: Version, KID: kid, Alg: kek.Algorithm, WK: wrapped, Nonce: nonce, CT: g.Seal(nil, nonce, optsData, AAD(Version, kid))}, nil
}

// Open checks and opens an envelope with the unwrapped AES key.
func (e Envelope) Open(aesKey []byte) ([]byte, error) {
	g, err := gcm(aesKey)
	if err != nil {
		return nil, err
	}
	if len(e.Nonce) != g.NonceSize() {
		return nil, errors.New("coffer key provider envelope: bad nonce length")
	}
	out, err := g.Open(nil, e.Nonce, e.CT, AAD(e.V, e.KID))
	if err != nil {
		return nil, errors.New("coffer key provider envelope: authentication failed (the annotation was changed or the key is wrong)")
	}
	return out, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("coffer key provider envelope: the key must be 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ParseEnvelope decodes and checks an annotation.
func ParseEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("not a coffer key provider envelope: %w", err)
	}
	if e.V != Version {
		return Envelope{}, fmt.Errorf("coffer key provider envelope version %d is not supported (this build reads version %d)", e.V, Version)
	}
	if _, err := kek.ParseKeyID(e.KID); err != nil {
		return Envelope{}, fmt.Errorf("coffer key provider envelope: %w", err)
	}
	if e.Alg != kek.Algorithm || len(e.WK) == 0 || len(e.CT) < 16 {
		return Envelope{}, errors.New("coffer key provider envelope: missing or unsupported fields")
	}
	return e, nil
}

// Wrap seals optsData under a fresh AES-256 key wrapped by the vault key keyURL.
func (p *Provider) Wrap(ctx context.Context, keyURL string, optsData []byte) ([]byte, error) {
	k, err := p.keks.KEK(ctx, p.ident, keyURL)
	if err != nil {
		return nil, err
	}
	aesKey := make([]byte, 32)
	nonce := make([]byte, 12)
	if _, err := rand.Read(aesKey); err != nil {
		return nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	kid, wrapped, err := k.WrapKey(ctx, keyURL, aesKey)
	if err != nil {
		return nil, fmt.Errorf("wrap the layer key with %s (the identity needs the wrapKey permission): %w", keyURL, err)
	}
	e, err := Seal(aesKey, nonce, optsData, kid, wrapped)
	if err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// Unwrap opens an envelope through the vault: one unwrapKey call as the provider's identity.
func (p *Provider) Unwrap(ctx context.Context, annotation []byte) ([]byte, error) {
	e, err := ParseEnvelope(annotation)
	if err != nil {
		return nil, err
	}
	k, err := p.keks.KEK(ctx, p.ident, e.KID)
	if err != nil {
		return nil, err
	}
	aesKey, err := k.UnwrapKey(ctx, e.KID, e.WK)
	if err != nil {
		return nil, fmt.Errorf("unwrap the layer key with %s (the identity needs the unwrapKey permission): %w", e.KID, err)
	}
	return e.Open(aesKey)
}

// request is the part of ocicrypt's KeyProviderKeyWrapProtocolInput the provider reads. It
// has no field for keyunwrapparams.dc (the DecryptConfig, which may hold other schemes'
// private keys) nor for ec.DecryptConfig: the JSON decoder skips them unread.
type request struct {
	Op            string `json:"op"`
	KeyWrapParams struct {
		Ec struct {
			Parameters map[string]json.RawMessage `json:"Parameters"`
		} `json:"ec"`
		OptsData []byte `json:"optsdata"`
	} `json:"keywrapparams"`
	KeyUnwrapParams struct {
		Annotation []byte `json:"annotation"`
	} `json:"keyunwrapparams"`
}

type response struct {
	KeyWrapResults   *wrapResults   `json:"keywrapresults,omitempty"`
	KeyUnwrapResults *unwrapResults `json:"keyunwrapresults,omitempty"`
}

type wrapResults struct {
	Annotation []byte `json:"annotation"`
}

type unwrapResults struct {
	OptsData []byte `json:"optsdata"`
}

// Handle answers one protocol request (the command transport's stdin; the gRPC messages'
// bytes).
func (p *Provider) Handle(ctx context.Context, in []byte) ([]byte, error) {
	var req request
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, fmt.Errorf("not an ocicrypt key provider request: %w", err)
	}
	switch req.Op {
	case "keywrap":
		raw, ok := req.KeyWrapParams.Ec.Parameters[Name]
		if !ok {
			return nil, fmt.Errorf("no %s recipient in the request (give --recipient provider:%s:KEY-URL)", Name, Name)
		}
		var params [][]byte
		if err := json.Unmarshal(raw, &params); err != nil {
			return nil, fmt.Errorf("the %s parameters are not a list: %w", Name, err)
		}
		if len(params) != 1 {
			return nil, fmt.Errorf("give exactly one provider:%s:KEY-URL recipient (got %d)", Name, len(params))
		}
		ann, err := p.Wrap(ctx, string(params[0]), req.KeyWrapParams.OptsData)
		if err != nil {
			return nil, err
		}
		return json.Marshal(response{KeyWrapResults: &wrapResults{Annotation: ann}})
	case "keyunwrap":
		opts, err := p.Unwrap(ctx, req.KeyUnwrapParams.Annotation)
		if err != nil {
			return nil, err
		}
		return json.Marshal(response{KeyUnwrapResults: &unwrapResults{OptsData: opts}})
	}
	return nil, fmt.Errorf("unknown key provider operation %q (want keywrap or keyunwrap)", req.Op)
}

// maxRequest bounds a protocol request (a few KiB in practice; the DecryptConfig ocicrypt
// sends may hold several private keys).
const maxRequest = 4 << 20

// Command runs the command transport: one request on r, the answer on w.
func Command(ctx context.Context, p *Provider, r io.Reader, w io.Writer) error {
	in, err := io.ReadAll(io.LimitReader(r, maxRequest+1))
	if err != nil {
		return err
	}
	if len(in) > maxRequest {
		return errors.New("key provider request too large")
	}
	out, err := p.Handle(ctx, in)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
