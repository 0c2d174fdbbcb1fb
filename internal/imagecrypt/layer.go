package imagecrypt

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
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

// encryptLayer encrypts one layer into file and returns its new descriptor. The source is
// read and digested ahead in one goroutine, ocicrypt encrypts each buffer in place in this
// one, the ciphertext is digested and written in a third: the same buffers go round, no
// staging, no copy.
func encryptLayer(ctx context.Context, f content.Fetcher, ec *encconfig.EncryptConfig, desc ocispec.Descriptor, file *os.File, p *progress) (ocispec.Descriptor, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, desc)
	pool := newPool(2*chunksInStage + 1) // shared by the reader and the sinks
	in := readAheadInto(vr, pool)
	defer in.Close()
	src := &inPlace{}
	encR, fin, err := ocicrypt.EncryptLayer(ec, src, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encrypt layer %s: %w", desc.Digest, err)
	}
	h := sha256.New()
	out := newSinksOver(pool, both(hashTo(h, p), writeTo(file)))
	n, err := transformInPlace(in, src, encR, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encrypt layer %s: %w", desc.Digest, err)
	}
	in.Close()
	if err := vr.Verify(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s as read from the source: %w", desc.Digest, err)
	}
	ann, err := fin()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("wrap the key of layer %s: %w", desc.Digest, err)
	}
	nd := ocispec.Descriptor{MediaType: desc.MediaType + encryptedSuffix, Digest: digest.NewDigest(digest.SHA256, h), Size: n, Annotations: map[string]string{}}
	for k, v := range desc.Annotations {
		nd.Annotations[k] = v
	}
	for k, v := range ann {
		nd.Annotations[k] = v
	}
	return nd, nil
}

// hashTo is a sink that digests (and counts the progress of) each buffer.
func hashTo(h hash.Hash, p *progress) func([]byte) error {
	return func(b []byte) error {
		h.Write(b)
		if p != nil {
			p.Write(b)
		}
		return nil
	}
}

// both is a sink that runs f then g on each buffer (in one goroutine: g finds the buffer
// in the cache f warmed).
func both(f, g func([]byte) error) func([]byte) error {
	return func(b []byte) error {
		if err := f(b); err != nil {
			return err
		}
		return g(b)
	}
}

// writebackEvery is how much is written before the kernel is asked to start writing it
// back to disk.
const writebackEvery = 8 << 20

// writeTo is a sink that writes each buffer to file and, every writebackEvery bytes, asks
// the kernel to start writing them back, so the disk works while the layer is still
// being encrypted and the one fsync at the end of the run finds little left to do.
func writeTo(file *os.File) func([]byte) error {
	var off, pending int64
	return func(b []byte) error {
		n, err := file.Write(b)
		pending += int64(n)
		if pending >= writebackEvery {
			startWriteback(file, off, pending)
			off, pending = off+pending, 0
		}
		return err
	}
}

// decryptLayer decrypts one layer into file (a private file of the destination, made
// visible only after every layer passed) and verifies it whole: ocicrypt's HMAC at the end
// of the stream, the blob digest, the digest ocicrypt recorded and the config's diff_id.
// Reading, decrypting, digesting and writing run in their own goroutines.
func (o Options) decryptLayer(ctx context.Context, f content.Fetcher, dk *decryptKeys, idx int, desc ocispec.Descriptor, diffID digest.Digest, file *os.File, p *progress) (ocispec.Descriptor, error) {
	name := fmt.Sprintf("layer %d (%s)", idx, desc.Digest)
	plainType := strings.TrimSuffix(desc.MediaType, encryptedSuffix)
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read %s: %w", name, err)
	}
	defer rc.Close()
	// The encrypted blob is not digested: ocicrypt's HMAC authenticates every byte of it
	// under the layer key (the expected HMAC is in the manifest, which names the blob),
	// and the plaintext is checked against the recorded digest and the diff_id, so a
	// SHA-256 of the ciphertext would add a third pass over the layer and no assurance.
	// Its size is checked.
	vr := &sizeReader{r: rc, want: desc.Size}
	in := readAhead(io.TeeReader(vr, p))
	defer in.Close()

	plain, recorded, err := o.openLayer(ctx, dk, name, desc, in)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	// The plaintext's digest (an uncompressed layer's diff_id is its digest) and the file
	// write in one goroutine, and for a compressed layer a pipe to a decompressing
	// goroutine (the diff_id) in another, on the same buffers. (ocicrypt's decrypting reader copies
	// into them: it holds back the end of the stream until its HMAC is checked.)
	h := sha256.New()
	sinks := []func([]byte) error{both(hashTo(h, nil), writeTo(file))}
	compressed := isCompressed(plainType)
	var pw *io.PipeWriter
	diffc := make(chan diffResult, 1)
	if compressed {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		go func() {
			d, err := diffDigest(pr, plainType)
			_, _ = io.Copy(io.Discard, pr)
			diffc <- diffResult{d, err}
		}()
		sinks = append(sinks, func(b []byte) error { _, err := pw.Write(b); return err })
	}
	out := newSinks(sinks...)
	n, err := out.ReadFrom(plain)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	var dr diffResult
	if compressed {
		pw.CloseWithError(err)
		dr = <-diffc
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: %w (nothing was written out)", name, ErrVerify, err)
	}
	in.Close()
	if err := vr.Verify(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w: %w (nothing was written out)", name, ErrVerify, err)
	}
	got := digest.NewDigest(digest.SHA256, h)
	if !compressed {
		dr.d = got
	}
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

// sizeReader reads exactly want bytes.
type sizeReader struct {
	r    io.Reader
	want int64
	n    int64
}

func (s *sizeReader) Read(p []byte) (int, error) {
	if s.n >= s.want {
		// One byte more than the descriptor says is an error, not the end.
		var one [1]byte
		if n, _ := s.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("the blob is longer than the %d bytes its descriptor says", s.want)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > s.want-s.n {
		p = p[:s.want-s.n]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// Verify reports a blob shorter than its descriptor.
func (s *sizeReader) Verify() error {
	if s.n != s.want {
		return fmt.Errorf("the blob has %d bytes, its descriptor says %d", s.n, s.want)
	}
	return nil
}

// isCompressed: the layer's diff_id is the digest of its decompressed content.
func isCompressed(mediaType string) bool {
	return strings.HasSuffix(mediaType, "gzip") || strings.HasSuffix(mediaType, "zstd")
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
