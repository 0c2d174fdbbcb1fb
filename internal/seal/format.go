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

// Format constants (see docs/seal-format.md). Versions 1 and 2 share the layout; version 2
// binds an object to its name in the associated data of its final segment.
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

	version1 = 1 // no binding to a name: read, never written (except by Seal, for the vectors)
	version2 = 2 // the final segment's AAD ends with the object's name
	magic    = "CFSEAL"

	kindSegment = 0 // AAD marker: a non-final segment
	kindFinal   = 1 // AAD marker: the final segment
	kindTail    = 2 // AAD marker: a resume tail record
)

// dataKeyInfo is the HKDF info of data keys, in both versions (the version is in the header,
// and the header is in every segment's AAD).
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
	Version     byte         // format version: 1 or 2; 0 means the current one (2)
	Generation  uint32       // root key generation the data key is derived from
	SegmentSize uint32       // plaintext bytes in every segment but the last
	ObjectID    [IDSize]byte // random per object; the HKDF salt of its data key
}

// Marshal encodes h as HeaderSize bytes.
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b, magic)
	b[6] = h.version()
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
	if b[6] != version1 && b[6] != version2 {
		return h, fmt.Errorf("%w: format version %d (this build reads versions %d and %d)", ErrFormat, b[6], version1, version2)
	}
	h.Version = b[6]
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

func (h Header) version() byte {
	if h.Version == 0 {
		return version2
	}
	return h.Version
}

// Bound tells whether the object's final segment binds its name (version 2).
func (h Header) Bound() bool { return h.version() >= version2 }

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
	aad    []byte // scratch: header || index || kind [|| name, for a bound final segment]
	bound  bool   // version 2: the final segment's AAD ends with name
	// name is the object's identity, bound into its final segment (version 2): the path the
	// object is read under. A writer's may change (Bind) until the final segment is sealed.
	name []byte
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
	return &objectCipher{header: hb, aead: aead, aad: aad, bound: h.Bound()}, nil
}

func (c *objectCipher) setAAD(index uint64, kind byte) []byte {
	aad := c.aad[:HeaderSize+9]
	binary.BigEndian.PutUint64(aad[HeaderSize:], index)
	aad[HeaderSize+8] = kind
	if kind == kindFinal && c.bound {
		aad = append(aad, c.name...)
		c.aad = aad
	}
	return aad
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
	if err != nil && kind == kindFinal && c.bound {
		return nil, fmt.Errorf("%w: final segment %d does not authenticate as %q (damaged, another object put in its place, or sealed under another key)", ErrAuth, index, c.name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d", ErrAuth, index)
	}
	return out, nil
}

// Seal encrypts a whole object in memory in format version 1, which binds no name: the
// reference encoder of the version 1 test vectors and of the tests that read version 1
// objects. New objects are written in version 2 (SealNamed, and the driver).
func Seal(rand io.Reader, root []byte, gen uint32, segmentSize int, plaintext []byte) ([]byte, error) {
	return sealWhole(rand, root, Header{Version: version1, Generation: gen, SegmentSize: uint32(segmentSize)}, "", plaintext)
}

// SealNamed encrypts a whole object in memory in format version 2, bound to name (the
// name it will be opened under): the reference encoder used by tests, records and the
// format's test vectors. rand supplies the object id and the nonces.
func SealNamed(rand io.Reader, root []byte, gen uint32, segmentSize int, name string, plaintext []byte) ([]byte, error) {
	return sealWhole(rand, root, Header{Version: version2, Generation: gen, SegmentSize: uint32(segmentSize)}, name, plaintext)
}

func sealWhole(rand io.Reader, root []byte, h Header, name string, plaintext []byte) ([]byte, error) {
	if h.SegmentSize == 0 || h.SegmentSize > MaxSegmentSize {
		return nil, fmt.Errorf("seal: segment size %d out of range", h.SegmentSize)
	}
	segmentSize := int(h.SegmentSize)
	if _, err := io.ReadFull(rand, h.ObjectID[:]); err != nil {
		return nil, fmt.Errorf("seal: object id: %w", err)
	}
	c, err := newObjectCipher(root, h)
	if err != nil {
		return nil, err
	}
	c.name = []byte(name)
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

// Open authenticates and decrypts a whole sealed object in memory that is bound to the
// empty name (or is of version 1, which binds none): OpenNamed with name "".
func Open(sealed []byte, keyFor func(gen uint32) ([]byte, error)) ([]byte, error) {
	return OpenNamed(sealed, "", keyFor)
}

// OpenNamed authenticates and decrypts a whole sealed object in memory. keyFor returns the
// root key of a generation. A version 2 object opens only under the name it was sealed
// with; version 1 objects bind no name and open under any. Every tampering case, another
// object's bytes (another name) and a wrong key give an error wrapping ErrAuth (or
// ErrFormat for a malformed header); OpenNamed never panics on bad input.
func OpenNamed(sealed []byte, name string, keyFor func(gen uint32) ([]byte, error)) ([]byte, error) {
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
	c.name = []byte(name)
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
