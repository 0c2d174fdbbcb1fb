package imagecrypt

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/blockcipher"
	encconfig "github.com/containers/ocicrypt/config"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// ErrMissingKey is the seed's (and ocicrypt's) words for an encrypted layer that no given
// key opens.
var ErrMissingKey = errors.New("missing private key needed for decryption")

// ErrVerify is a decrypted layer that failed authentication or did not match the image.
var ErrVerify = errors.New("layer verification failed")

// encryptLayer encrypts one layer into file and returns its new descriptor.
func encryptLayer(ctx context.Context, f content.Fetcher, ec *encconfig.EncryptConfig, desc ocispec.Descriptor, file *os.File, p *progress) (ocispec.Descriptor, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, desc)
	encR, fin, err := ocicrypt.EncryptLayer(ec, vr, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encrypt layer %s: %w", desc.Digest, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(file, h, p), encR)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encrypt layer %s: %w", desc.Digest, err)
	}
	if err := vr.Verify(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s as read from the source: %w", desc.Digest, err)
	}
	ann, err := fin()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("wrap the key of layer %s: %w", desc.Digest, err)
	}
	out := ocispec.Descriptor{MediaType: desc.MediaType + encryptedSuffix, Digest: digest.NewDigest(digest.SHA256, h), Size: n, Annotations: map[string]string{}}
	for k, v := range desc.Annotations {
		out.Annotations[k] = v
	}
	for k, v := range ann {
		out.Annotations[k] = v
	}
	return out, nil
}

// decryptLayer decrypts one layer into file and verifies it whole (ocicrypt's HMAC, the
// digest it recorded, the config's diff_id) before it is released.
func (o Options) decryptLayer(ctx context.Context, f content.Fetcher, dk *decryptKeys, idx int, desc ocispec.Descriptor, diffID digest.Digest, file *os.File, p *progress) (ocispec.Descriptor, error) {
	name := fmt.Sprintf("layer %d (%s)", idx, desc.Digest)
	plainType := strings.TrimSuffix(desc.MediaType, encryptedSuffix)
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read %s: %w", name, err)
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, desc)
	in := io.TeeReader(vr, p)

	plain, recorded, err := o.openLayer(ctx, dk, name, desc, in)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	// One pass: the staged file, the blob digest and, through a pipe, the diff_id.
	h := sha256.New()
	pr, pw := io.Pipe()
	diffc := make(chan diffResult, 1)
	go func() {
		d, err := diffDigest(pr, plainType)
		_, _ = io.Copy(io.Discard, pr)
		diffc <- diffResult{d, err}
	}()
	n, err := io.Copy(io.MultiWriter(file, h, pw), plain)
	pw.CloseWithError(err)
	dr := <-diffc
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: %w (nothing was written out)", name, ErrVerify, err)
	}
	if err := vr.Verify(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: %w (nothing was written out)", name, ErrVerify, err)
	}
	got := digest.NewDigest(digest.SHA256, h)
	if recorded != "" && recorded != got {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: it decrypts to %s, but its key was made for %s (nothing was written out)", name, ErrVerify, got, recorded)
	}
	if dr.err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: the decrypted layer is not a %s: %w (nothing was written out)", name, ErrVerify, plainType, dr.err)
	}
	if dr.d != diffID {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: its content is %s but the config's diff_id %d is %s (nothing was written out)", name, ErrVerify, dr.d, idx, diffID)
	}
	return ocispec.Descriptor{MediaType: plainType, Digest: got, Size: n, Annotations: ocicryptFilter(desc.Annotations)}, nil
}

type diffResult struct {
	d   digest.Digest
	err error
}

// openLayer returns the decrypting reader of a layer: through the vault for vault: keys,
// through ocicrypt's key wrappers for key files and key providers.
func (o Options) openLayer(ctx context.Context, dk *decryptKeys, name string, desc ocispec.Descriptor, r io.Reader) (io.Reader, digest.Digest, error) {
	var errs []error
	for _, u := range dk.vault {
		opts, err := unwrapWithVault(ctx, o.KEKs, o.Identity, u, desc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return decryptWithOpts(r, opts, desc)
	}
	if dk.fileKeys > 0 {
		plain, d, err := ocicrypt.DecryptLayer(dk.dc, r, desc, false)
		if err == nil {
			return plain, d, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, "", fmt.Errorf("%s is encrypted: %w (give --key PRIVATE.pem or --key vault:KEY-URL)", name, ErrMissingKey)
	}
	return nil, "", fmt.Errorf("%s: %w: no given key opens it: %w", name, ErrMissingKey, errors.Join(errs...))
}

// decryptWithOpts decrypts with the private options a key wrapper gave (ocicrypt's
// optsData) and the layer's public options.
func decryptWithOpts(r io.Reader, privData []byte, desc ocispec.Descriptor) (io.Reader, digest.Digest, error) {
	var priv blockcipher.PrivateLayerBlockCipherOptions
	if err := json.Unmarshal(privData, &priv); err != nil {
		return nil, "", fmt.Errorf("the layer's private options are not JSON: %w", err)
	}
	var pub blockcipher.PublicLayerBlockCipherOptions
	if s := desc.Annotations[annotationPubOpts]; s != "" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, "", fmt.Errorf("the layer's %s annotation is not base64", annotationPubOpts)
		}
		if err := json.Unmarshal(b, &pub); err != nil {
			return nil, "", fmt.Errorf("the layer's public options are not JSON: %w", err)
		}
	}
	h, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return nil, "", err
	}
	plain, opts, err := h.Decrypt(r, blockcipher.LayerBlockCipherOptions{Private: priv, Public: pub})
	if err != nil {
		return nil, "", err
	}
	return plain, opts.Private.Digest, nil
}

// diffDigest is the digest of a layer's uncompressed tar (its diff_id).
func diffDigest(r io.Reader, mediaType string) (digest.Digest, error) {
	var u io.Reader
	switch {
	case strings.HasSuffix(mediaType, "gzip"):
		z, err := gzip.NewReader(r)
		if err != nil {
			return "", err
		}
		defer z.Close()
		u = z
	case strings.HasSuffix(mediaType, "zstd"):
		z, err := zstd.NewReader(r)
		if err != nil {
			return "", err
		}
		defer z.Close()
		u = z
	default:
		u = r
	}
	h := sha256.New()
	if _, err := io.Copy(h, u); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// recipientsOf describes the wrapped keys of one scheme's annotation.
func recipientsOf(scheme, b64s string) []string {
	var out []string
	for _, one := range strings.Split(b64s, ",") {
		raw, err := base64.StdEncoding.DecodeString(one)
		if err != nil {
			out = append(out, scheme+": (not base64)")
			continue
		}
		switch {
		case scheme == "jwe":
			out = append(out, jweRecipients(raw)...)
		case strings.HasPrefix(scheme, "provider."):
			s := scheme
			if kid := envelopeKeyID(raw); kid != "" {
				s += " kid=" + kid
			}
			out = append(out, s)
		default:
			out = append(out, scheme)
		}
	}
	return out
}

// envelopeKeyID reads the key id of a Coffer key-provider envelope (keyprovider package),
// without depending on it: {"v":…, "kid":…}.
func envelopeKeyID(raw []byte) string {
	var e struct {
		KID string `json:"kid"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return ""
	}
	return e.KID
}

// jweRecipients describes the recipients of a JWE in JSON serialization (algorithm, key
// id when the writer set one).
func jweRecipients(raw []byte) []string {
	type hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var j struct {
		Protected  string `json:"protected"`
		Header     *hdr   `json:"header"`
		Recipients []struct {
			Header *hdr `json:"header"`
		} `json:"recipients"`
	}
	if json.Unmarshal(raw, &j) != nil {
		return []string{"jwe: (unparsable)"}
	}
	var prot hdr
	if b, err := base64.RawURLEncoding.DecodeString(j.Protected); err == nil {
		_ = json.Unmarshal(b, &prot)
	}
	one := func(h *hdr) string {
		alg, kid := prot.Alg, prot.Kid
		if h != nil && h.Alg != "" {
			alg = h.Alg
		}
		if h != nil && h.Kid != "" {
			kid = h.Kid
		}
		s := "jwe " + alg
		if kid != "" {
			s += " kid=" + kid
		}
		return s
	}
	if len(j.Recipients) == 0 {
		return []string{one(j.Header)}
	}
	var out []string
	for _, r := range j.Recipients {
		out = append(out, one(r.Header))
	}
	return out
}
