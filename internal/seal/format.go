package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Format constants of version 1 (see docs/seal-format.md).
const (
	// HeaderSize is the size of the object header.
	HeaderSize = 48
	// NonceSize is the size of the random nonce in front of every segment.
	NonceSize = 12
	// TagSize is the size of the GCM authentication tag at the end of every segment.
	TagSize = 16
	// Overhead is what every segment adds to its plaintext.
	Overhead = NonceSize + TagSize
	// KeySize is the size of root keys and data keys.
	KeySize = 32
	// IDSize is the size of the random object id.
	IDSize = 32
	// DefaultSegmentSize is the plaintext size of a full segment written by this package.
	DefaultSegmentSize = 64 << 10
	// MaxSegmentSize bounds the segment size a decoder accepts from a header.
	MaxSegmentSize = 16 << 20

	version1 = 1
	magic    = "CFSEAL"

	kindSegment = 0 // AAD marker: a non-final segment
	kindFinal   = 1 // AAD marker: the final segment
	kindTail    = 2 // AAD marker: a resume tail record
)

const dataKeyInfo = "coffer seal v1 data key"

// Errors a decoder returns (wrapped). ErrAuth covers every tampering case and a wrong key:
// the decoder cannot, and does not try to, tell them apart.
var (
	ErrFormat = errors.New("seal: not a sealed object or unsupported format")
	ErrAuth   = errors.New("seal: object failed authentication (tampered, truncated, or sealed under another key)")
)

// Header is the clear-text header of a sealed object. It is authenticated as associated
// data of every segment, so changing any byte of it makes every segment fail.
type Header struct {
	Generation  uint32       // root key generation the data key is derived from
	SegmentSize uint32       // plaintext bytes in every segment but the last
	ObjectID    [IDSize]byte // random per object; the HKDF salt of its data key
}

// Marshal encodes h as HeaderSize bytes.
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b, magic)
	b[6] = version1
	b[7] = 0
	binary.BigEndian.PutUint32(b[8:], h.Generation)
	binary.BigEndian.PutUint32(b[12:], h.SegmentSize)
	copy(b[16:], h.ObjectID[:])
	return b
}

// ParseHeader decodes and checks a header.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header is %d bytes, want %d", ErrFormat, len(b), HeaderSize)
	}
	if string(b[:6]) != magic {
		return h, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	if b[6] != version1 {
		return h, fmt.Errorf("%w: format version %d (this build reads version %d)", ErrFormat, b[6], version1)
	}
	if b[7] != 0 {
		return h, fmt.Errorf("%w: unknown flags %#x", ErrFormat, b[7])
	}
	h.Generation = binary.BigEndian.Uint32(b[8:])
	h.SegmentSize = binary.BigEndian.Uint32(b[12:])
	if h.SegmentSize == 0 || h.SegmentSize > MaxSegmentSize {
		return h, fmt.Errorf("%w: segment size %d out of range", ErrFormat, h.SegmentSize)
	}
	copy(h.ObjectID[:], b[16:HeaderSize])
	return h, nil
}

// slot is the stored size of a full segment.
func (h Header) slot() int64 { return int64(h.SegmentSize) + Overhead }

// PlainSize is the logical (plaintext) size of a sealed object whose stored size is
// sealedSize, computed from sizes alone. It is unauthenticated until the object is read.
func (h Header) PlainSize(sealedSize int64) (int64, error) {
	body := sealedSize - HeaderSize
	if body < Overhead {
		return 0, fmt.Errorf("%w: %d bytes is too short for a sealed object", ErrAuth, sealedSize)
	}
	n := (body + h.slot() - 1) / h.slot() // number of segments; the last one is final
	last := body - (n-1)*h.slot()
	if last < Overhead {
		return 0, fmt.Errorf("%w: truncated segment", ErrAuth)
	}
	return body - n*Overhead, nil
}

// SegmentOffset is where segment i starts in the stored object.
func (h Header) SegmentOffset(i int64) int64 { return HeaderSize + i*h.slot() }

// DeriveDataKey derives an object's data key from a root key: HKDF-SHA256 with the object
// id as salt.
func DeriveDataKey(root []byte, objectID [IDSize]byte) ([]byte, error) {
	if len(root) != KeySize {
		return nil, fmt.Errorf("seal: root key is %d bytes, want %d", len(root), KeySize)
	}
	return hkdf.Key(sha256.New, root, objectID[:], dataKeyInfo, KeySize)
}

// objectCipher seals and opens the segments of one object.
type objectCipher struct {
	header []byte // marshalled header, the AAD prefix
	aead   cipher.AEAD
	aad    []byte // scratch: header || index || kind
}

func newObjectCipher(root []byte, h Header) (*objectCipher, error) {
	dk, err := DeriveDataKey(root, h.ObjectID)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hb := h.Marshal()
	aad := make([]byte, HeaderSize+9)
	copy(aad, hb)
	return &objectCipher{header: hb, aead: aead, aad: aad}, nil
}

func (c *objectCipher) setAAD(index uint64, kind byte) []byte {
	binary.BigEndian.PutUint64(c.aad[HeaderSize:], index)
	c.aad[HeaderSize+8] = kind
	return c.aad
}

// sealSegment appends nonce || ciphertext || tag of plaintext to dst.
func (c *objectCipher) sealSegment(dst []byte, index uint64, kind byte, nonce, plaintext []byte) []byte {
	dst = append(dst, nonce...)
	return c.aead.Seal(dst, nonce, plaintext, c.setAAD(index, kind))
}

// openSegment authenticates and decrypts one stored segment into dst.
func (c *objectCipher) openSegment(dst []byte, index uint64, kind byte, stored []byte) ([]byte, error) {
	if len(stored) < Overhead {
		return nil, fmt.Errorf("%w: segment %d is truncated", ErrAuth, index)
	}
	out, err := c.aead.Open(dst, stored[:NonceSize], stored[NonceSize:], c.setAAD(index, kind))
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d", ErrAuth, index)
	}
	return out, nil
}

// Seal encrypts a whole object in memory under root key generation gen: the reference
// encoder used by tests and by the format's test vectors. rand supplies the object id and
// the nonces.
func Seal(rand io.Reader, root []byte, gen uint32, segmentSize int, plaintext []byte) ([]byte, error) {
	if segmentSize <= 0 || segmentSize > MaxSegmentSize {
		return nil, fmt.Errorf("seal: segment size %d out of range", segmentSize)
	}
	h := Header{Generation: gen, SegmentSize: uint32(segmentSize)}
	if _, err := io.ReadFull(rand, h.ObjectID[:]); err != nil {
		return nil, fmt.Errorf("seal: object id: %w", err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), c.header...)
	nonce := make([]byte, NonceSize)
	for i := uint64(0); ; i++ {
		n := min(len(plaintext), segmentSize)
		kind := byte(kindSegment)
		if n == len(plaintext) {
			kind = kindFinal
		}
		if _, err := io.ReadFull(rand, nonce); err != nil {
			return nil, fmt.Errorf("seal: nonce: %w", err)
		}
		out = c.sealSegment(out, i, kind, nonce, plaintext[:n])
		plaintext = plaintext[n:]
		if kind == kindFinal {
			return out, nil
		}
	}
}

// Open authenticates and decrypts a whole sealed object in memory. keyFor returns the root
// key of a generation. Every tampering case and a wrong key give an error wrapping ErrAuth
// (or ErrFormat for a malformed header); Open never panics on bad input.
func Open(sealed []byte, keyFor func(gen uint32) ([]byte, error)) ([]byte, error) {
	h, err := ParseHeader(sealed)
	if err != nil {
		return nil, err
	}
	if _, err := h.PlainSize(int64(len(sealed))); err != nil {
		return nil, err
	}
	root, err := keyFor(h.Generation)
	if err != nil {
		return nil, err
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	body := sealed[HeaderSize:]
	var out []byte
	for i := uint64(0); ; i++ {
		n := min(int64(len(body)), h.slot())
		kind := byte(kindSegment)
		if n == int64(len(body)) {
			kind = kindFinal
		}
		out, err = c.openSegment(out, i, kind, body[:n])
		if err != nil {
			return nil, err
		}
		body = body[n:]
		if kind == kindFinal {
			return out, nil
		}
	}
}
