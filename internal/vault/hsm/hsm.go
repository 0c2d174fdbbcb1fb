//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/cofferhq/coffer/internal/vault/keys"
)

// Backend is an open PKCS#11 token. It is safe for concurrent use.
type Backend struct {
	ctx      *crypto11.Context
	log      *slog.Logger
	platform string
	// oaep256 says whether the token decrypts RSA-OAEP with SHA-256 (SoftHSM 2.6 does not).
	oaep256 bool
}

// Open loads the module, finds the token by its label, logs in with the PIN and probes
// what the token can do. A missing module or token and a wrong PIN are refused with the
// reason.
func Open(ctx context.Context, c Config, log *slog.Logger) (*Backend, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pin, err := c.pin()
	if err != nil {
		return nil, err
	}
	info, err := tokenInfo(c.Module, c.Token)
	if err != nil {
		return nil, err
	}
	cctx, err := crypto11.Configure(&crypto11.Config{Path: c.Module, TokenLabel: c.Token, Pin: pin, GCMIVLength: 12})
	if err != nil {
		var perr pkcs11.Error
		if errors.As(err, &perr) && (perr == pkcs11.CKR_PIN_INCORRECT || perr == pkcs11.CKR_PIN_LEN_RANGE || perr == pkcs11.CKR_PIN_LOCKED) {
			return nil, fmt.Errorf("%w: log in to HSM token %q: the PIN in %s is refused (%v)", ErrUnavailable, c.Token, c.PinFile, perr)
		}
		return nil, fmt.Errorf("%w: open HSM token %q with module %s: %v", ErrUnavailable, c.Token, c.Module, err)
	}
	b := &Backend{ctx: cctx, log: log,
		platform: strings.TrimSpace(fmt.Sprintf("PKCS#11 %s %s %d.%d, token %q", strings.TrimSpace(info.ManufacturerID), strings.TrimSpace(info.Model),
			info.FirmwareVersion.Major, info.FirmwareVersion.Minor, c.Token))}
	b.oaep256 = b.probeOAEP256()
	log.Info("HSM token opened", "module", filepath.Base(c.Module), "token", c.Token, "platform", b.platform, "rsa_oaep_sha256", b.oaep256)
	return b, nil
}

// tokenInfo reads the token's description and says clearly when the module cannot be
// loaded or the token is absent (listing the tokens that are present).
func tokenInfo(module, label string) (pkcs11.TokenInfo, error) {
	p := pkcs11.New(module)
	if p == nil {
		return pkcs11.TokenInfo{}, fmt.Errorf("%w: the PKCS#11 module %s cannot be loaded (is the path right and the vendor library installed?)", ErrUnavailable, module)
	}
	defer p.Destroy()
	err := p.Initialize()
	var perr pkcs11.Error
	switch {
	case err == nil:
		defer p.Finalize()
	case errors.As(err, &perr) && perr == pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED:
		// Another backend in this process holds the module: it stays initialized.
	default:
		return pkcs11.TokenInfo{}, fmt.Errorf("%w: initialize PKCS#11 module %s: %v", ErrUnavailable, module, err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return pkcs11.TokenInfo{}, fmt.Errorf("%w: list the slots of %s: %v", ErrUnavailable, module, err)
	}
	var present []string
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimSpace(ti.Label) == label {
			return ti, nil
		}
		if l := strings.TrimSpace(ti.Label); l != "" {
			present = append(present, fmt.Sprintf("%q", l))
		}
	}
	have := "none"
	if len(present) > 0 {
		have = strings.Join(present, ", ")
	}
	return pkcs11.TokenInfo{}, fmt.Errorf("%w: HSM token %q is not present in module %s (tokens present: %s): plug the token in or fix --hsm-token", ErrUnavailable, label, module, have)
}

// probeOAEP256 tries RSA-OAEP with SHA-256 on a session key that never reaches the
// token's storage: PKCS#11 lists mechanisms, not the hashes a mechanism accepts.
func (b *Backend) probeOAEP256() bool {
	id := make([]byte, 16)
	rand.Read(id)
	pubT, _ := crypto11.NewAttributeSetWithID(id)
	privT, _ := crypto11.NewAttributeSetWithID(id)
	_ = pubT.Set(crypto11.CkaToken, false)
	_ = privT.Set(crypto11.CkaToken, false)
	k, err := b.ctx.GenerateRSAKeyPairWithAttributes(pubT, privT, 2048)
	if err != nil {
		b.log.Warn("HSM probe: no session RSA key; assuming RSA-OAEP with SHA-1 only", "err", err)
		return false
	}
	defer k.Delete()
	msg := []byte("coffer probe")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public().(*rsa.PublicKey), msg, nil)
	if err != nil {
		return false
	}
	out, err := k.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
	return err == nil && string(out) == string(msg)
}

// Close logs out and releases the module.
func (b *Backend) Close() error { return b.ctx.Close() }

// Platform describes the token (the key JSON's hsmPlatform).
func (b *Backend) Platform() string { return b.platform }

// Generate makes a key of spec inside the token, non-extractable and sensitive, labelled
// label; it returns the public part (no private members; none for oct) and the object's
// reference (hex CKA_ID).
func (b *Backend) Generate(ctx context.Context, label string, spec keys.CreateSpec) (keys.JWK, string, error) {
	id := make([]byte, 16)
	rand.Read(id)
	ref := hex.EncodeToString(id)
	attrs := func() crypto11.AttributeSet {
		a, _ := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
		return a
	}
	switch keys.BaseKty(spec.Kty) {
	case keys.KtyRSA:
		size := spec.Size
		if size == 0 {
			size = 2048
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return keys.JWK{}, "", fmt.Errorf("%w: RSA key size %d is not supported: use 2048, 3072 or 4096", keys.ErrInvalid, size)
		}
		if spec.PublicExponent != 0 && spec.PublicExponent != 65537 {
			return keys.JWK{}, "", fmt.Errorf("%w: public exponent %d is not supported: only 65537", keys.ErrInvalid, spec.PublicExponent)
		}
		priv := attrs()
		_ = priv.Set(crypto11.CkaPrivate, true)
		k, err := b.ctx.GenerateRSAKeyPairWithAttributes(attrs(), priv, size)
		if err != nil {
			return keys.JWK{}, "", fmt.Errorf("%w: generate an RSA key in the token: %v", ErrUnavailable, err)
		}
		pub := k.Public().(*rsa.PublicKey)
		return keys.JWK{Kty: spec.Kty, N: pub.N.Bytes(), E: big.NewInt(int64(pub.E)).Bytes()}, ref, nil
	case keys.KtyEC:
		if spec.Size != 0 {
			return keys.JWK{}, "", fmt.Errorf("%w: key_size is not used with EC keys: give crv", keys.ErrInvalid)
		}
		crv := spec.Curve
		if crv == "" {
			crv = keys.CurveP256
		}
		c, err := keys.Curve(crv)
		if err != nil {
			return keys.JWK{}, "", err
		}
		priv := attrs()
		_ = priv.Set(crypto11.CkaPrivate, true)
		k, err := b.ctx.GenerateECDSAKeyPairWithAttributes(attrs(), priv, c)
		if err != nil {
			return keys.JWK{}, "", fmt.Errorf("%w: generate an EC key in the token: %v", ErrUnavailable, err)
		}
		pub := k.Public().(*ecdsa.PublicKey)
		raw, err := pub.Bytes()
		if err != nil {
			return keys.JWK{}, "", fmt.Errorf("encode EC key: %w", err)
		}
		size := (c.Params().BitSize + 7) / 8
		return keys.JWK{Kty: spec.Kty, Crv: crv, X: raw[1 : 1+size], Y: raw[1+size:]}, ref, nil
	case keys.KtyOct:
		size := spec.Size
		if size == 0 {
			size = 256
		}
		if size != 128 && size != 192 && size != 256 {
			return keys.JWK{}, "", fmt.Errorf("%w: oct key size %d is not supported: use 128, 192 or 256", keys.ErrInvalid, size)
		}
		if _, err := b.ctx.GenerateSecretKeyWithAttributes(attrs(), size, crypto11.CipherAES); err != nil {
			return keys.JWK{}, "", fmt.Errorf("%w: generate an AES key in the token: %v", ErrUnavailable, err)
		}
		return keys.JWK{Kty: spec.Kty}, ref, nil
	}
	return keys.JWK{}, "", fmt.Errorf("%w: key type %q cannot live in the HSM", keys.ErrInvalid, spec.Kty)
}

func parseRef(ref string) ([]byte, error) {
	id, err := hex.DecodeString(ref)
	if err != nil || len(id) == 0 {
		return nil, fmt.Errorf("bad HSM object reference %q", ref)
	}
	return id, nil
}

// OpenKey returns the operations of the token object ref, whose public part is pub (for
// oct, pub holds only kty; size is read from the token).
func (b *Backend) OpenKey(ctx context.Context, ref string, pub keys.JWK) (keys.Operator, error) {
	id, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	k := &key{b: b, kty: pub.Kty}
	if keys.BaseKty(pub.Kty) == keys.KtyOct {
		sk, err := b.findSecret(id)
		if err != nil {
			return nil, fmt.Errorf("%w: find key %s in the token: %v", ErrUnavailable, ref, err)
		}
		if sk == nil {
			return nil, fmt.Errorf("%w: the token holds no object %s (was the key destroyed, or is this another token?)", ErrUnavailable, ref)
		}
		a, err := b.ctx.GetAttribute(sk, crypto11.CkaValueLen)
		if err != nil {
			return nil, fmt.Errorf("%w: read the size of key %s: %v", ErrUnavailable, ref, err)
		}
		k.secret, k.bits = sk, int(bytesToUint(a.Value))*8
		return k, nil
	}
	m, err := keys.Parse(pub)
	if err != nil {
		return nil, err
	}
	s, err := b.findPair(id)
	if err != nil {
		return nil, fmt.Errorf("%w: find key %s in the token: %v", ErrUnavailable, ref, err)
	}
	if s == nil {
		return nil, fmt.Errorf("%w: the token holds no object %s (was the key destroyed, or is this another token?)", ErrUnavailable, ref)
	}
	k.pub, k.signer, k.bits = m, s, m.Size()
	return k, nil
}

// findPair returns the key pair whose CKA_ID is id, or nil.
func (b *Backend) findPair(id []byte) (crypto11.Signer, error) {
	all, err := b.ctx.FindKeyPairs(id, nil)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return all[0], nil
}

// findSecret returns the secret key whose CKA_ID is id, or nil.
func (b *Backend) findSecret(id []byte) (*crypto11.SecretKey, error) {
	all, err := b.ctx.FindKeys(id, nil)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return all[0], nil
}

// bytesToUint reads a CK_ULONG attribute (native byte order, little-endian here).
func bytesToUint(b []byte) uint64 {
	var n uint64
	for i := len(b) - 1; i >= 0; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n
}

// Exists reports whether the token still holds object ref.
func (b *Backend) Exists(ctx context.Context, ref string) (bool, error) {
	id, err := parseRef(ref)
	if err != nil {
		return false, err
	}
	if s, err := b.findPair(id); err != nil || s != nil {
		return s != nil, err
	}
	sk, err := b.findSecret(id)
	return sk != nil, err
}

// Destroy destroys object ref (both halves of a key pair). An object already gone is not
// an error.
func (b *Backend) Destroy(ctx context.Context, ref string) error {
	id, err := parseRef(ref)
	if err != nil {
		return err
	}
	s, err := b.findPair(id)
	if err != nil {
		return fmt.Errorf("%w: find key %s: %v", ErrUnavailable, ref, err)
	}
	if s != nil {
		if err := s.Delete(); err != nil {
			return fmt.Errorf("%w: destroy key %s: %v", ErrUnavailable, ref, err)
		}
		return nil
	}
	sk, err := b.findSecret(id)
	if err != nil {
		return fmt.Errorf("%w: find key %s: %v", ErrUnavailable, ref, err)
	}
	if sk != nil {
		if err := sk.Delete(); err != nil {
			return fmt.Errorf("%w: destroy key %s: %v", ErrUnavailable, ref, err)
		}
	}
	return nil
}

// key is a key version held by the token.
type key struct {
	b      *Backend
	kty    string
	bits   int
	pub    *keys.Material // RSA and EC: the public part, for encrypt, wrap and verify
	signer crypto11.Signer
	secret *crypto11.SecretKey
}

func (k *key) Size() int { return k.bits }

// tokenLimit refuses an algorithm the key type allows but the token cannot run.
func (k *key) tokenLimit(alg string) error {
	return fmt.Errorf("%w: %w: algorithm %s cannot be used with this %s key: it lives in HSM %s, which does RSA-OAEP with SHA-1 only (no OAEP with SHA-256); use RSA-OAEP",
		keys.ErrUnsupported, keys.ErrTokenLimit, alg, k.kty, k.b.platform)
}

// protect turns a panic of crypto11's cipher interfaces (which cannot return errors) into
// an error.
func protect(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s in the token: %v", ErrUnavailable, what, r)
		}
	}()
	return fn()
}

var octSizes = map[string]int{keys.AlgA128KW: 16, keys.AlgA192KW: 24, keys.AlgA256KW: 32,
	keys.AlgA128GCM: 16, keys.AlgA192GCM: 24, keys.AlgA256GCM: 32,
	keys.AlgA128CBCPAD: 16, keys.AlgA192CBCPAD: 24, keys.AlgA256CBCPAD: 32}

func (k *key) octAlg(alg string, wrap bool) error {
	want, ok := octSizes[alg]
	if !ok || wrap != strings.HasSuffix(alg, "KW") {
		return fmt.Errorf("%w: algorithm %q cannot be used with an oct key here", keys.ErrUnsupported, alg)
	}
	if want*8 != k.bits {
		return fmt.Errorf("%w: %s needs a %d-bit key, this key has %d bits", keys.ErrUnsupported, alg, want*8, k.bits)
	}
	return nil
}

func (k *key) Encrypt(p keys.CipherParams, wrap bool) (keys.CipherResult, error) {
	if k.secret == nil {
		if p.Alg == keys.AlgRSAOAEP256 && !k.b.oaep256 {
			// The public half could wrap it, but the token could never unwrap it.
			return keys.CipherResult{}, k.tokenLimit(p.Alg)
		}
		return k.pub.Encrypt(p, wrap)
	}
	return k.octCrypt(p, wrap, true)
}

func (k *key) Decrypt(p keys.CipherParams, wrap bool) (keys.CipherResult, error) {
	if k.secret != nil {
		return k.octCrypt(p, wrap, false)
	}
	d, ok := k.signer.(crypto.Decrypter)
	if !ok || keys.BaseKty(k.kty) != keys.KtyRSA {
		return keys.CipherResult{}, fmt.Errorf("%w: algorithm %q cannot be used with a %s key", keys.ErrUnsupported, p.Alg, k.kty)
	}
	var opts crypto.DecrypterOpts
	switch p.Alg {
	case keys.AlgRSAOAEP:
		opts = &rsa.OAEPOptions{Hash: crypto.SHA1}
	case keys.AlgRSAOAEP256:
		if !k.b.oaep256 {
			return keys.CipherResult{}, k.tokenLimit(p.Alg)
		}
		opts = &rsa.OAEPOptions{Hash: crypto.SHA256}
	case keys.AlgRSA15:
		opts = nil
	default:
		return keys.CipherResult{}, fmt.Errorf("%w: algorithm %q cannot be used with a %s key", keys.ErrUnsupported, p.Alg, k.kty)
	}
	out, err := d.Decrypt(rand.Reader, p.Value, opts)
	if err != nil {
		return keys.CipherResult{}, fmt.Errorf("%w: %s in the HSM: %v", keys.ErrDecrypt, p.Alg, err)
	}
	return keys.CipherResult{Value: out}, nil
}

// octCrypt runs an oct-HSM operation in the token: key wrap (RFC 3394), AES-GCM or
// AES-CBC with PKCS#7 padding, encrypting or decrypting.
func (k *key) octCrypt(p keys.CipherParams, wrap, enc bool) (keys.CipherResult, error) {
	if err := k.octAlg(p.Alg, wrap); err != nil {
		return keys.CipherResult{}, err
	}
	var res keys.CipherResult
	err := protect("an AES operation", func() error {
		switch {
		case wrap && enc:
			out, err := keys.KeyWrap(block{k.secret}, p.Value)
			res.Value = out
			return err
		case wrap:
			out, err := keys.KeyUnwrap(block{k.secret}, p.Value)
			res.Value = out
			return err
		case strings.HasSuffix(p.Alg, "GCM"):
			return k.gcm(p, enc, &res)
		default:
			return k.cbcPad(p, enc, &res)
		}
	})
	return res, err
}

func (k *key) gcm(p keys.CipherParams, enc bool, res *keys.CipherResult) error {
	g, err := k.secret.NewGCM()
	if err != nil {
		return err
	}
	if enc {
		iv := make([]byte, g.NonceSize())
		rand.Read(iv)
		sealed := g.Seal(nil, iv, p.Value, p.AAD)
		n := len(sealed) - g.Overhead()
		*res = keys.CipherResult{Value: sealed[:n], Tag: sealed[n:], IV: iv, AAD: p.AAD}
		return nil
	}
	if len(p.IV) != g.NonceSize() || len(p.Tag) != g.Overhead() {
		return fmt.Errorf("%w: %s needs a %d-byte iv and a %d-byte tag", keys.ErrInvalid, p.Alg, g.NonceSize(), g.Overhead())
	}
	out, err := g.Open(nil, p.IV, append(append([]byte{}, p.Value...), p.Tag...), p.AAD)
	if err != nil {
		return fmt.Errorf("%w: authentication failed", keys.ErrDecrypt)
	}
	res.Value = out
	return nil
}

func (k *key) cbcPad(p keys.CipherParams, enc bool, res *keys.CipherResult) error {
	iv := p.IV
	if enc && len(iv) == 0 {
		iv = make([]byte, 16)
		rand.Read(iv)
	}
	if len(iv) != 16 {
		return fmt.Errorf("%w: iv must be 16 bytes", keys.ErrInvalid)
	}
	var bm crypto11.BlockModeCloser
	var err error
	var buf []byte
	if enc {
		buf = keys.Pad(p.Value)
		bm, err = k.secret.NewCBCEncrypterCloser(iv)
	} else {
		if len(p.Value) == 0 || len(p.Value)%16 != 0 {
			return fmt.Errorf("%w: ciphertext is not a whole number of blocks", keys.ErrDecrypt)
		}
		buf = append([]byte{}, p.Value...)
		bm, err = k.secret.NewCBCDecrypterCloser(iv)
	}
	if err != nil {
		return err
	}
	defer bm.Close()
	bm.CryptBlocks(buf, buf)
	if enc {
		*res = keys.CipherResult{Value: buf, IV: iv}
		return nil
	}
	out, err := keys.Unpad(buf)
	res.Value = out
	return err
}

func (k *key) Sign(alg string, digest []byte) ([]byte, error) {
	if k.secret != nil {
		return nil, fmt.Errorf("%w: algorithm %q cannot be used with an oct key", keys.ErrUnsupported, alg)
	}
	h, family, err := k.pub.SignParams(alg, digest)
	if err != nil {
		return nil, err
	}
	switch family {
	case "RS":
		return k.signer.Sign(rand.Reader, digest, h)
	case "PS":
		return k.signer.Sign(rand.Reader, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
	}
	der, err := k.signer.Sign(rand.Reader, digest, h)
	if err != nil {
		return nil, fmt.Errorf("%w: sign in the token: %v", ErrUnavailable, err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("the token's ECDSA signature does not parse: %w", err)
	}
	size := (k.bits + 7) / 8
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

func (k *key) Verify(alg string, digest, sig []byte) (bool, error) {
	if k.secret != nil {
		return false, fmt.Errorf("%w: algorithm %q cannot be used with an oct key", keys.ErrUnsupported, alg)
	}
	return k.pub.Verify(alg, digest, sig)
}

// block is one AES block operation in the token (CBC with a zero IV over one block is ECB),
// for RFC 3394 key wrap. Slow, but a key wrap is a few dozen blocks.
type block struct{ k *crypto11.SecretKey }

func (b block) BlockSize() int { return 16 }

func (b block) Encrypt(dst, src []byte) { b.run(true, dst, src) }

func (b block) Decrypt(dst, src []byte) { b.run(false, dst, src) }

func (b block) run(enc bool, dst, src []byte) {
	zero := make([]byte, 16)
	var bm crypto11.BlockModeCloser
	var err error
	if enc {
		bm, err = b.k.NewCBCEncrypterCloser(zero)
	} else {
		bm, err = b.k.NewCBCDecrypterCloser(zero)
	}
	if err != nil {
		panic(err)
	}
	defer bm.Close()
	bm.CryptBlocks(dst[:16], src[:16])
}

var _ cipher.Block = block{}

// ---- the vault root key ----

// rootKEKID is the CKA_ID of the AES key that seals the vault root key.
var rootKEKID = []byte("coffer-vault-root-kek-v1")

var rootAAD = []byte("coffer vault root key v1")

// SealRootKey encrypts the vault root key with AES-256-GCM in the token, under a key that
// never leaves it (made on first use). The result is nonce || ciphertext || tag.
func (b *Backend) SealRootKey(ctx context.Context, root []byte) ([]byte, error) {
	sk, err := b.findSecret(rootKEKID)
	if err != nil {
		return nil, fmt.Errorf("%w: find the root-key sealing key: %v", ErrUnavailable, err)
	}
	if sk == nil {
		t, _ := crypto11.NewAttributeSetWithIDAndLabel(rootKEKID, []byte("coffer vault root key sealing key"))
		if sk, err = b.ctx.GenerateSecretKeyWithAttributes(t, 256, crypto11.CipherAES); err != nil {
			return nil, fmt.Errorf("%w: make the root-key sealing key in the token: %v", ErrUnavailable, err)
		}
	}
	var out []byte
	err = protect("seal the root key", func() error {
		g, err := sk.NewGCM()
		if err != nil {
			return err
		}
		nonce := make([]byte, g.NonceSize())
		rand.Read(nonce)
		out = g.Seal(nonce, nonce, root, rootAAD)
		return nil
	})
	return out, err
}

// UnsealRootKey decrypts what SealRootKey returned.
func (b *Backend) UnsealRootKey(ctx context.Context, sealed []byte) ([]byte, error) {
	sk, err := b.findSecret(rootKEKID)
	if err != nil {
		return nil, fmt.Errorf("%w: find the root-key sealing key: %v", ErrUnavailable, err)
	}
	if sk == nil {
		return nil, fmt.Errorf("%w: token %s holds no root-key sealing key: it is not the token that sealed this vault root key", ErrUnavailable, b.platform)
	}
	var out []byte
	err = protect("unseal the root key", func() error {
		g, err := sk.NewGCM()
		if err != nil {
			return err
		}
		if len(sealed) < g.NonceSize()+g.Overhead() {
			return errors.New("the sealed root key is too short")
		}
		out, err = g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], rootAAD)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("unseal the vault root key with token %s (sealed by another token, or the file is damaged): %w", b.platform, err)
	}
	return out, nil
}
