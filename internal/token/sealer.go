package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealer seals the token service's key material for the database: AES-256-GCM under a
// key derived (HKDF-SHA256) from the vault root key, with the row's name as authenticated
// data, so a row cannot be moved to another name. Every replica is given the same root
// key, so every replica opens what another sealed; a copy of the database alone opens
// nothing.
type Sealer struct{ aead cipher.AEAD }

const sealerLabel = "coffer token secrets v1"

// NewSealer derives the sealing key from the vault root key (32 bytes).
func NewSealer(root []byte) (*Sealer, error) {
	if len(root) != 32 {
		return nil, fmt.Errorf("token secrets: the root key must be 32 bytes, it is %d", len(root))
	}
	k, err := hkdf.Key(sha256.New, root, nil, sealerLabel, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// seal returns nonce ‖ ciphertext of plain, bound to name.
func (s *Sealer) seal(plain []byte, name string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(name))
}

// errWrongRootKey is what a row sealed under another root key (or altered) gives.
var errWrongRootKey = errors.New("cannot be opened: it was sealed under another vault root key or altered (every replica must be given the same root key)")

func (s *Sealer) open(sealed []byte, name string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errWrongRootKey
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return nil, errWrongRootKey
	}
	return plain, nil
}
